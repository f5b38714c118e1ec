"""The relay's frame codec against websockets' own: same frames out of any stream, cut anywhere."""

from __future__ import annotations

import random

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from parley.server.frames import (
    BINARY,
    RAW,
    REST,
    TEXT,
    FrameSplitter,
    client_text_frame,
    server_text_frame,
)


def _open(protocol: ClientProtocol | ServerProtocol) -> ClientProtocol | ServerProtocol:
    protocol.state = State.OPEN
    protocol.parser = protocol.parse()  # skip the handshake: parse frames from the first byte
    next(protocol.parser)
    return protocol


def _reader(masked: bool, max_size: int | None = None) -> ClientProtocol | ServerProtocol:
    """websockets' parser for frames sent by a client (masked) or a server."""
    if masked:
        return _open(ServerProtocol(max_size=max_size))
    return _open(ClientProtocol(parse_uri("ws://relay.test/"), max_size=max_size))


def _frames(rng: random.Random) -> list[Frame]:
    frames: list[Frame] = []
    for _ in range(60):
        roll = rng.random()
        size = rng.choice([0, 1, 125, 126, 127, 1300, 65535, 65536, 70000])
        data = bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1)
        data = data[:size]
        if roll < 0.55:
            frames.append(Frame(Opcode.TEXT, ("é" * (size // 2)).encode()))
        elif roll < 0.7:
            frames.append(Frame(Opcode.BINARY, data))
        elif roll < 0.8:
            frames.append(Frame(rng.choice([Opcode.PING, Opcode.PONG]), data[:100]))
        else:  # a fragmented message, a ping in the middle
            frames += [
                Frame(Opcode.TEXT, b"frag-", fin=False),
                Frame(Opcode.PING, b"p"),
                Frame(Opcode.CONT, b"ment", fin=False),
                Frame(Opcode.CONT, b"ed", fin=True),
            ]
    return frames


def _cut(stream: bytes, rng: random.Random) -> list[bytes]:
    chunks, pos = [], 0
    while pos < len(stream):
        step = rng.choice([1, 2, 3, 7, 100, 1400, 70000])
        chunks.append(stream[pos : pos + step])
        pos += step
    return chunks


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_splitter_matches_websockets(masked: bool, seed: int) -> None:
    rng = random.Random(seed)
    frames = _frames(rng)
    stream = b"".join(f.serialize(mask=masked, extensions=[]) for f in frames)

    expected = _reader(masked)
    expected.receive_data(stream)
    want = [(e.opcode, e.data, e.fin) for e in expected.events_received()]

    # What the relay sees: simple frames from the splitter, the rest from websockets' parser.
    splitter = FrameSplitter(masked=masked, max_size=None)
    behind = _reader(masked)
    got: list[tuple[Opcode, bytes, bool]] = []
    simple = 0
    for chunk in _cut(stream, rng):
        for kind, data in splitter.feed(chunk):
            if kind in (TEXT, BINARY):
                simple += 1
                got.append((Opcode.TEXT if kind == TEXT else Opcode.BINARY, bytes(data), True))
            else:
                assert kind == RAW
                behind.receive_data(data)
                got += [(e.opcode, bytes(e.data), e.fin) for e in behind.events_received()]
    assert not splitter.dead
    assert got == want
    assert simple > 20  # the fast path did the bulk


@pytest.mark.parametrize("masked", [True, False])
def test_splitter_hands_malformed_streams_to_websockets(masked: bool) -> None:
    good = Frame(Opcode.TEXT, b"ok").serialize(mask=masked, extensions=[])
    wrong_mask = Frame(Opcode.TEXT, b"bad").serialize(mask=not masked, extensions=[])
    rsv = bytearray(good)
    rsv[0] |= 0x40  # RSV1 without a negotiated extension
    too_big = Frame(Opcode.TEXT, b"x" * 2000).serialize(mask=masked, extensions=[])
    for bad in (wrong_mask, bytes(rsv), too_big):
        splitter = FrameSplitter(masked=masked, max_size=1000)
        out = splitter.feed(good + bad + good)
        assert out[0] == (TEXT, b"ok")
        assert out[1] == (REST, bad + good) and len(out) == 2 and splitter.dead
        assert splitter.feed(b"more") == [(REST, b"more")]
        # websockets refuses it, with the close code it always used.
        reader = _reader(masked, max_size=1000)
        reader.receive_data(bad)
        assert reader.parser_exc is not None and reader.close_sent is not None
        assert reader.close_sent.code == (1009 if bad is too_big else 1002)


def test_data_frame_inside_a_fragmented_message_is_websockets_error() -> None:
    splitter = FrameSplitter(masked=False, max_size=None)
    stream = b"".join(
        f.serialize(mask=False, extensions=[])
        for f in (Frame(Opcode.TEXT, b"a", fin=False), Frame(Opcode.TEXT, b"b"))
    )
    assert [kind for kind, _ in splitter.feed(stream)] == [RAW, RAW]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_built_frames_parse_back(size: int) -> None:
    text = "aé"[: size % 2] + "z" * size
    for build, masked in ((client_text_frame, True), (server_text_frame, False)):
        reader = _reader(masked)
        reader.receive_data(build(text))
        (frame,) = reader.events_received()
        assert frame.opcode is Opcode.TEXT and frame.fin and frame.data.decode() == text


def test_client_masks_differ() -> None:
    masks = {client_text_frame("x")[2:6] for _ in range(2000)}  # 2 header bytes, then the key
    assert len(masks) > 1990
