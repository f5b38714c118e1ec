"""Who may use the engine: the engine key, ephemeral ``ek_`` secrets, or loopback.

* An ``ek_…`` token is always checked as a secret, whatever else is
  configured: a forged, tampered, expired or already used secret is refused.
* With an engine key configured, any other token must equal it.
* With no engine key, only loopback clients are accepted (any token), so a
  key-less engine can never be used from another machine by accident.

Secrets are self-contained and signed, so any node that shares the node key
(``PARLEY_NODE_KEY``) accepts a secret another node minted, with no shared
store: ``ek_<payload>.<mac>``, where the payload (deflated JSON, base64url)
carries a random id, the expiry and the session config it was minted with,
and the mac is HMAC-SHA256 over the payload with a key derived from the node
key (truncated to 128 bits). A secret is signed, not encrypted: its holder
can read the session config, which the ``client_secrets`` answer and
``session.created`` show it anyway. Single use is enforced per node (each
node remembers the ids it has let in until they expire): behind a load
balancer a secret could open one session on each node within its lifetime,
which is short (``parley serve`` mints for 60 s).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets as _random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from parley.httpapi import is_loopback

PREFIX = "ek_"
_MAC_BYTES = 16
_LABEL = b"parley ek_ secrets v1"
# A secret bigger than this is not ours (and inflating it could cost memory).
MAX_SECRET_CHARS = 32 * 1024
_MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass
class ClientSecret:
    value: str
    expires_at: float
    session: dict[str, Any]  # the session config the secret was minted with
    id: str = ""  # the random id single use is tracked by
    used: bool = False  # a secret opens one session or call (on this node): a replay is refused


@dataclass
class AuthResult:
    ok: bool
    status: int = 200
    message: str = ""
    code: str | None = None
    secret: ClientSecret | None = None
    is_engine_key: bool = False  # full rights (minting, sideband), not an ephemeral secret


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac_key(node_key: str | bytes) -> bytes:
    raw = node_key.encode() if isinstance(node_key, str) else node_key
    return hmac.new(raw, _LABEL, hashlib.sha256).digest()


@dataclass
class SecretStore:
    """Mints and checks signed ``ek_`` secrets; remembers the ids used on this node."""

    node_key: str | bytes | None = None
    clock: Callable[[], float] = time.time  # tests move time forward here
    _used: dict[str, float] = field(default_factory=dict)  # secret id → expiry
    minted: int = 0  # secrets minted by this process (a count: there is no store)

    def __post_init__(self) -> None:
        # Without a shared key, a random one: secrets are then good on this process only.
        self._key = _mac_key(self.node_key if self.node_key else _random.token_bytes(32))

    def mint(self, ttl_seconds: int, session: dict[str, Any]) -> ClientSecret:
        self._purge()
        secret_id = _b64encode(_random.token_bytes(12))
        expires_at = int(self.clock() + ttl_seconds)
        claims = {"v": 1, "id": secret_id, "exp": expires_at, "session": session}
        payload = _b64encode(zlib.compress(json.dumps(claims, separators=(",", ":")).encode(), 9))
        value = f"{PREFIX}{payload}.{self._sign(payload)}"
        self.minted += 1
        return ClientSecret(value, expires_at, session, secret_id)

    def get(self, value: str) -> ClientSecret | None:
        """The secret if it is ours, intact and not expired (``used`` says if it opened a session here)."""
        claims = self._verify(value)
        if claims is None or float(claims["exp"]) <= self.clock():
            return None
        secret_id = str(claims["id"])
        return ClientSecret(
            value, float(claims["exp"]), claims["session"], secret_id, used=secret_id in self._used
        )

    def consume(self, secret: ClientSecret) -> None:
        """Mark ``secret`` as having opened a session on this node."""
        self._purge()
        secret.used = True
        self._used[secret.id] = secret.expires_at

    def _sign(self, payload: str) -> str:
        return _b64encode(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()[:_MAC_BYTES])

    def _verify(self, value: str) -> dict[str, Any] | None:
        if not value.startswith(PREFIX) or len(value) > MAX_SECRET_CHARS:
            return None
        payload, dot, mac = value[len(PREFIX) :].rpartition(".")
        if not dot or not payload.isascii() or not mac.isascii():
            return None
        if not hmac.compare_digest(self._sign(payload), mac):
            return None
        try:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(_b64decode(payload), _MAX_PAYLOAD_BYTES)
            claims = json.loads(raw)
        except (ValueError, binascii.Error, zlib.error):
            return None
        if not isinstance(claims, dict) or claims.get("v") != 1:
            return None
        if not isinstance(claims.get("session"), dict) or not isinstance(claims.get("exp"), int | float):
            return None
        return claims

    def _purge(self) -> None:
        now = self.clock()
        for secret_id in [i for i, exp in self._used.items() if exp <= now]:
            del self._used[secret_id]


class Authenticator:
    def __init__(self, api_key: str | None, secrets: SecretStore) -> None:
        self.api_key = api_key
        self.secrets = secrets

    def check(self, token: str | None, client_host: str | None) -> AuthResult:
        if token and token.startswith(PREFIX):
            secret = self.secrets.get(token)
            if secret is None:
                return AuthResult(
                    False, 401, "The ephemeral key is invalid or has expired.", "invalid_api_key"
                )
            if secret.used:
                return AuthResult(
                    False,
                    401,
                    "The ephemeral key has already opened a session; mint a new one for each connection.",
                    "invalid_api_key",
                )
            return AuthResult(True, secret=secret)
        if self.api_key:
            if token and hmac.compare_digest(token.encode(), self.api_key.encode()):
                return AuthResult(True, is_engine_key=True)
            if not token:
                return AuthResult(
                    False,
                    401,
                    "Missing bearer authentication (Authorization: Bearer <key>).",
                    "missing_api_key",
                )
            return AuthResult(False, 401, "Incorrect API key provided.", "invalid_api_key")
        if is_loopback(client_host):
            return AuthResult(True, is_engine_key=True)
        return AuthResult(
            False,
            403,
            "This engine has no API key configured, so it only accepts connections from this machine. "
            "Set PARLEY_ENGINE_KEY (or --api-key) to accept remote clients.",
            "forbidden",
        )
