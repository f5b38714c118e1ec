"""The relay's two sockets as frame endpoints: frames handed over in the read callback, no task hop.

A relayed audio frame used to cross two queues and two task switches per
direction (uvicorn's receive queue → a pump task → websockets' send lock;
websockets' recv queue → a pump task → Starlette → uvicorn), and the Python
around them cost more than the frame itself (profile: ~60 µs of relay CPU per
event, a third of it in queue, task and context-manager machinery). Here each
side exposes the same small interface, :class:`FrameEndpoint`: ``attach`` a
callback that gets every text message inside the transport's
``data_received``, and ``send_now`` that frames and writes one synchronously.
The relay wires the two together (see ``ws_relay``), so a frame is read,
checked and written in one callback. Flow control stays: when one side's
write buffer passes its high-water mark, the other side stops reading until
it drains.

* :class:`RemoteSocket` wraps websockets' client connection (the handshake,
  TLS, proxies and errors stay websockets'); it is also an ordinary
  ``send``/``recv`` socket for the tool-injection handshake and the server tools.
* :class:`RelayWebSocketProtocol` is uvicorn's sans-I/O WebSocket protocol
  with the browser side's endpoint offered to the app as the ASGI scope
  extension ``parley.frames``; everything else (handshake, accept/deny, close)
  is ASGI as before. Under another server the extension is missing and the
  relay falls back to ASGI pumps.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

from parley.server.asgi_ws import WebSocketClosed

log = logging.getLogger(__name__)

FRAMES_EXTENSION = "parley.frames"
# Messages buffered for recv() before the socket stops reading (only before a sink is attached,
# or on the ASGI fallback path): enough for a burst, bounded so a stalled reader applies backpressure.
_INBOX_HIGH, _INBOX_LOW = 64, 16

TextSink = Callable[[str], None]


class FrameEndpoint(Protocol):
    def attach(self, sink: TextSink) -> None:
        """Deliver every later text message (and those already buffered, first) to ``sink``."""

    def send_now(self, text: str) -> None:
        """Frame and write one text message now; raises :class:`WebSocketClosed` if this side is closed."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def on_write_pressure(self, paused: Callable[[], None], resumed: Callable[[], None]) -> None:
        """Call ``paused``/``resumed`` when this side's write buffer passes its high/low-water marks."""


# --- the frame codec for the common case ----------------------------------------------------
#
# websockets' sans-I/O parser is a chain of generators: ~6 µs to take one 1.3 kB audio frame
# apart, ~3 µs to build one, plus a getrandom() system call per client frame for its mask.
# The relay's frames are nearly all the simplest kind (one unfragmented text frame), so those
# are split and built here in ~1 µs; every other frame (control frames, fragments, anything
# malformed or too large) still goes to websockets' parser whole, which keeps its closing
# handshake, limits and error handling.

TEXT, BINARY, RAW, REST = 1, 2, 0, -1


class FrameSplitter:
    """Cuts a WebSocket byte stream, from a frame boundary on, into frames.

    ``feed`` returns, in stream order, ``(TEXT|BINARY, payload)`` for complete
    unfragmented data frames (unmasked already), ``(RAW, frame)`` for any other
    complete frame, and ``(REST, bytes)`` once the stream stops making sense
    here (reserved bits or opcodes, wrong masking, a frame over ``max_size``):
    from then on the splitter is ``dead`` and every byte belongs to websockets,
    which reports the error properly.
    """

    def __init__(self, *, masked: bool, max_size: int | None) -> None:
        self.masked = masked  # frames from a client are masked, frames from a server are not
        self.max_size = max_size
        self.dead = False
        self._pending = b""
        self._fragmented = False  # inside a fragmented message: its frames all go to websockets

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self.dead:
            return [(REST, data)] if data else []
        buf = self._pending + data if self._pending else data
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if (
                bool(b1 & 0x80) != self.masked
                or b0 & 0x70
                or (b0 & 0x0F) not in (0, 1, 2, 8, 9, 10)
                or (self.max_size is not None and length > self.max_size)
            ):
                self.dead = True
                self._pending = b""
                out.append((REST, buf[pos:]))
                return out
            if self.masked:
                head += 4
            stop = pos + head + length
            if stop > end:
                break
            if (b0 == 0x81 or b0 == 0x82) and not self._fragmented:
                payload = buf[pos + head : stop]
                if self.masked:
                    payload = apply_mask(payload, buf[pos + head - 4 : pos + head])
                out.append((TEXT if b0 == 0x81 else BINARY, payload))
            else:
                if b0 in (0x01, 0x02):
                    self._fragmented = True
                elif b0 == 0x80:
                    self._fragmented = False
                out.append((RAW, buf[pos:stop]))
            pos = stop
        self._pending = buf[pos:]
        return out


def _header(first: int, length: int, mask_bit: int) -> bytes:
    if length < 126:
        return bytes((first, mask_bit | length))
    if length < 65536:
        return bytes((first, mask_bit | 126)) + length.to_bytes(2, "big")
    return bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")


class _Masks:
    """Client masking keys from the OS CSPRNG, 1024 per system call instead of one per frame.

    RFC 6455 wants them unpredictable to the page (they stop a script from
    choosing the bytes on the wire); bytes from ``os.urandom`` are, in
    whatever batch size they are drawn.
    """

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def next(self) -> bytes:
        if self._pos >= len(self._pool):
            self._pool, self._pos = os.urandom(4096), 0
        mask = self._pool[self._pos : self._pos + 4]
        self._pos += 4
        return mask


_masks = _Masks()


def client_text_frame(text: str) -> bytes:
    """One masked, unfragmented text frame, as a client sends it."""
    payload = text.encode()
    mask = _masks.next()
    return _header(0x81, len(payload), 0x80) + mask + apply_mask(payload, mask)


def server_text_frame(text: str) -> bytes:
    """One unmasked, unfragmented text frame, as a server sends it."""
    payload = text.encode()
    return _header(0x81, len(payload), 0) + payload


def _head_end(head: bytes) -> int:
    """Where an HTTP head ends (after the blank line), or -1."""
    end = head.find(b"\r\n\r\n")
    return end + 4 if end >= 0 else -1


_MAX_HEAD = 65536  # an HTTP head larger than this is not split here (websockets refuses it anyway)


def _text(data: Any) -> str:
    # Binary messages are relayed as text, as before; a Realtime client sends JSON only.
    return str(data, "utf-8", "replace")


class _FrameConnection(ClientConnection):
    """websockets' client connection, handing data frames to its :class:`RemoteSocket`.

    The handshake, control frames, the closing handshake and timeouts are
    websockets' own. Data frames skip websockets' recv() queue: the owner
    either buffers them for its own ``recv()`` or hands them straight to the
    relay. Once the handshake is done, :class:`FrameSplitter` takes the simple
    data frames out of the stream before websockets' parser sees it.
    """

    def __init__(self, owner: RemoteSocket, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        self._head: bytes | None = b""  # the handshake response so far; None once past it
        self._splitter: FrameSplitter | None = None

    def data_received(self, data: bytes) -> None:
        if self._splitter is not None:
            self._split(data)
        elif self._head is not None:
            self._handshake_bytes(data)
        else:
            super().data_received(data)

    def _handshake_bytes(self, data: bytes) -> None:
        # Give websockets exactly the response head, so its parser is at a frame boundary
        # when the splitter starts on whatever came after it in the same read.
        assert self._head is not None
        head = self._head + data
        end = _head_end(head)
        if end < 0 and len(head) <= _MAX_HEAD:
            self._head = head
            return
        self._head = None
        if end < 0:
            super().data_received(head)
            return
        super().data_received(head[:end])
        if self.protocol.state is State.OPEN:
            self._splitter = FrameSplitter(masked=False, max_size=self.protocol.max_size)
            self._split(head[end:])
        elif end < len(head):
            super().data_received(head[end:])

    def _split(self, data: bytes) -> None:
        splitter = self._splitter
        assert splitter is not None
        for kind, chunk in splitter.feed(data):
            if kind > 0 and self.protocol.state is State.OPEN:
                self.owner._message(chunk)
            elif kind <= 0:
                super().data_received(chunk)
            # else: a data frame after the peer's close frame, which websockets would drop too
        if splitter.dead:
            self._splitter = None

    def eof_received(self) -> None:
        if self._head:
            head, self._head = self._head, None
            super().data_received(head)
        super().eof_received()

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self.owner._frame(event)
        else:
            super().process_event(event)  # the handshake response, pings and pongs

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.owner._lost()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.owner._write_pressure(True)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.owner._write_pressure(False)


class RemoteSocket:
    """A client WebSocket to the upstream: ``send``/``recv``/``close``, and a :class:`FrameEndpoint`."""

    def __init__(self) -> None:
        self.conn: _FrameConnection | None = None
        self.subprotocol: str | None = None
        self._inbox: collections.deque[str] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._sink: TextSink | None = None
        self._parts: list[bytes | bytearray | memoryview] = []
        self._closed: tuple[int, str] | None = None
        self._on_closed: Callable[[int, str], None] | None = None
        self._pressure: tuple[Callable[[], None], Callable[[], None]] | None = None
        self._reading_paused = False  # by this socket's own inbox limit or by the relay
        self._write_paused = False
        self._drained: asyncio.Event | None = None

    def connection_factory(self, *args: Any, **kwargs: Any) -> _FrameConnection:
        """``create_connection`` for :func:`websockets.connect`: binds the connection to this socket
        before the handshake, so no frame can reach websockets' own queue."""
        return _FrameConnection(self, *args, **kwargs)

    def opened(self, conn: ClientConnection) -> RemoteSocket:
        assert isinstance(conn, _FrameConnection) and conn.owner is self
        self.conn = conn
        self.subprotocol = conn.subprotocol
        return self

    # --- from the connection ---

    def _frame(self, frame: Frame) -> None:
        """A data frame that went through websockets' parser (a fragment, or before the splitter)."""
        if frame.opcode is Opcode.CONT:
            self._parts.append(frame.data)
            if not frame.fin:
                return
            data: Any = b"".join(self._parts)
            self._parts = []
        elif not frame.fin:
            self._parts = [frame.data]
            return
        else:
            data = frame.data
        self._message(data)

    def _message(self, data: Any) -> None:
        text = _text(data)
        if self._sink is not None:
            self._sink(text)
            return
        self._inbox.append(text)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if len(self._inbox) >= _INBOX_HIGH and not self._reading_paused:
            self.pause_reading()

    def _lost(self) -> None:
        if self.conn is None:  # lost during the opening handshake (the upstream died or refused)
            self._closed = (1006, "connection lost")
        else:
            exc = self.conn.protocol.close_exc
            frame = exc.rcvd or exc.sent
            self._closed = (frame.code, frame.reason) if frame else (1006, "connection lost")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._drained is not None:
            self._drained.set()
        if self._on_closed is not None:
            self._on_closed(*self._closed)

    def _write_pressure(self, paused: bool) -> None:
        self._write_paused = paused
        if not paused and self._drained is not None:
            self._drained.set()
        if self._pressure is not None:
            self._pressure[0 if paused else 1]()

    def _closed_error(self) -> WebSocketClosed:
        if self._closed is not None:
            return WebSocketClosed(*self._closed)
        assert self.conn is not None
        frame = self.conn.protocol.close_rcvd or self.conn.protocol.close_sent
        return (
            WebSocketClosed(frame.code, frame.reason) if frame else WebSocketClosed(1006, "connection lost")
        )

    # --- FrameEndpoint ---

    def attach(self, sink: TextSink) -> None:
        while self._inbox:
            sink(self._inbox.popleft())
        self._sink = sink
        if self._reading_paused:
            self.resume_reading()

    def send_now(self, text: str) -> None:
        conn = self.conn
        assert conn is not None
        if conn.protocol.state is not State.OPEN:
            raise self._closed_error()
        # Written past websockets' protocol object, which keeps no state about sent data frames
        # (the relay never sends fragmented messages, the one thing it would need to know of).
        try:
            conn.transport.write(client_text_frame(text))
        except OSError:
            raise self._closed_error() from None

    def pause_reading(self) -> None:
        self._reading_paused = True
        if self.conn is not None and not self.conn.transport.is_closing():
            self.conn.transport.pause_reading()

    def resume_reading(self) -> None:
        self._reading_paused = False
        if self.conn is not None and not self.conn.transport.is_closing():
            self.conn.transport.resume_reading()

    def on_write_pressure(self, paused: Callable[[], None], resumed: Callable[[], None]) -> None:
        self._pressure = (paused, resumed)

    def on_closed(self, callback: Callable[[int, str], None]) -> None:
        """``callback(code, reason)`` once the connection is gone (at once if it already is)."""
        self._on_closed = callback
        if self._closed is not None:
            callback(*self._closed)

    # --- the plain socket interface (tool injection, server tools, the ASGI fallback) ---

    async def send(self, text: str) -> None:
        self.send_now(text)
        while self._write_paused and self._closed is None:
            self._drained = self._drained or asyncio.Event()
            self._drained.clear()
            await self._drained.wait()

    async def recv(self) -> str:
        while not self._inbox:
            if self._closed is not None:
                raise WebSocketClosed(*self._closed)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        text = self._inbox.popleft()
        if self._reading_paused and self._sink is None and len(self._inbox) <= _INBOX_LOW:
            self.resume_reading()
        return text

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close(code, reason)


# --- the browser side: uvicorn's sans-I/O WebSocket protocol with a frame endpoint --------------

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # an older uvicorn: the relay uses its ASGI pumps
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]


def relay_ws_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's ``ws=`` setting for ``parley serve``."""
    return RelayWebSocketProtocol if WebSocketsSansIOProtocol is not None else "auto"


if WebSocketsSansIOProtocol is not None:

    class RelayWebSocketProtocol(WebSocketsSansIOProtocol):  # type: ignore[misc,valid-type]
        """uvicorn's WebSocket protocol, plus the ``parley.frames`` endpoint for the relay.

        Until the app attaches a sink this is exactly uvicorn's protocol (ASGI
        receive/send, per-message read pausing). Once attached, text and binary
        messages go to the sink from ``data_received`` instead of the receive
        queue; the queue still carries ``websocket.disconnect``, and accept and
        close are still ASGI sends.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.frame_sink: TextSink | None = None
            self._pressure: tuple[Callable[[], None], Callable[[], None]] | None = None
            self._sink_paused = False
            self._head: bytes | None = b""  # the request so far; None once it is in
            self._splittable = True
            self._splitter: FrameSplitter | None = None

        async def run_asgi(self) -> None:
            self.scope["extensions"][FRAMES_EXTENSION] = self  # type: ignore[assignment]
            await super().run_asgi()

        def data_received(self, data: bytes) -> None:
            if self._splitter is not None:
                self._split(data)
                return
            if self.handshake_complete:
                if self._splittable and not self.close_sent and self.conn.state is State.OPEN:
                    # The 101 is out and every byte so far was the request: the parser is at a
                    # frame boundary.
                    self._splitter = FrameSplitter(masked=True, max_size=self.conn.max_size)
                    self._split(data)
                    return
            elif self._head is not None:
                self._head += data
                end = _head_end(self._head)
                if end >= 0 or len(self._head) > _MAX_HEAD:
                    # Bytes after the request, before our 101: a client that does not wait for the
                    # handshake. Legal enough for websockets' parser; not split here.
                    self._splittable = 0 <= end == len(self._head)
                    self._head = None
            else:
                self._splittable = False
            super().data_received(data)

        def _split(self, data: bytes) -> None:
            splitter = self._splitter
            assert splitter is not None
            for kind, chunk in splitter.feed(data):
                if kind > 0:
                    if self.conn.state is not State.OPEN or self.transport.is_closing():
                        continue  # after the close frame, as websockets would
                    # uvicorn's own message hand-off (receive queue or sink, UTF-8 check included).
                    self.curr_msg_data_type = "text" if kind == TEXT else "bytes"
                    self.frames = [chunk]
                    self.send_receive_event_to_app()
                else:
                    super().data_received(chunk)
            if splitter.dead:
                self._splitter = None

        def send_receive_event_to_app(self) -> None:
            sink = self.frame_sink
            if sink is None or self.close_sent:
                super().send_receive_event_to_app()
                return
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            self.frames = []
            if self.curr_msg_data_type == "text":
                try:
                    text = data.decode()
                except UnicodeDecodeError:
                    # As uvicorn does: invalid UTF-8 in a text message fails the connection.
                    self.conn.send_close(1007)
                    self.handle_parser_exception()
                    return
            else:
                text = _text(data)
            sink(text)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._pressure is not None:
                self._pressure[0]()

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._pressure is not None:
                self._pressure[1]()

        # --- FrameEndpoint ---

        def attach(self, sink: TextSink) -> None:
            # Messages that arrived before this were queued for ASGI receive(): hand them over first,
            # keeping a disconnect (and whatever follows it) for receive().
            queued: list[Any] = []
            while not self.queue.empty():
                queued.append(self.queue.get_nowait())
            while queued and queued[0]["type"] == "websocket.receive":
                message = queued.pop(0)
                text = message.get("text")
                sink(text if text is not None else _text(message.get("bytes") or b""))
            for message in queued:
                self.queue.put_nowait(message)
            self.frame_sink = sink
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()

        def send_now(self, text: str) -> None:
            if (
                self.close_sent
                or self.disconnected
                or self.conn.state is not State.OPEN
                or self.transport.is_closing()
            ):
                raise WebSocketClosed(1006, "browser connection closed")
            # Past websockets' protocol object, as on the upstream side: it keeps no state about
            # sent data frames.
            self.transport.write(server_text_frame(text))

        def pause_reading(self) -> None:
            if not self._sink_paused and not self.transport.is_closing():
                self._sink_paused = True
                self.transport.pause_reading()

        def resume_reading(self) -> None:
            if self._sink_paused:
                self._sink_paused = False
                if not self.transport.is_closing():
                    self.transport.resume_reading()

        def on_write_pressure(self, paused: Callable[[], None], resumed: Callable[[], None]) -> None:
            self._pressure = (paused, resumed)

else:  # pragma: no cover
    RelayWebSocketProtocol = None  # type: ignore[assignment,misc]
