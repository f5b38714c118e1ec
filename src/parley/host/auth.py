"""Who may use the engine: the engine key, ephemeral ``ek_`` secrets, or loopback.

* An ``ek_…`` token is always checked against the secret store, whatever else
  is configured: an unknown or expired secret is refused.
* With an engine key configured, any other token must equal it.
* With no engine key, only loopback clients are accepted (any token), so a
  key-less engine can never be used from another machine by accident.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from typing import Any

from parley.httpapi import is_loopback
from parley.protocol import ids


@dataclass
class ClientSecret:
    value: str
    expires_at: float
    session: dict[str, Any]  # the session config the secret was minted with
    used: bool = False  # a secret opens one session or call: a replay is refused


@dataclass
class AuthResult:
    ok: bool
    status: int = 200
    message: str = ""
    code: str | None = None
    secret: ClientSecret | None = None
    is_engine_key: bool = False  # full rights (minting, sideband), not an ephemeral secret


@dataclass
class SecretStore:
    _secrets: dict[str, ClientSecret] = field(default_factory=dict)

    def mint(self, ttl_seconds: int, session: dict[str, Any]) -> ClientSecret:
        self._purge()
        secret = ClientSecret(ids.client_secret(), time.time() + ttl_seconds, session)
        self._secrets[secret.value] = secret
        return secret

    def get(self, value: str) -> ClientSecret | None:
        secret = self._secrets.get(value)
        if secret is None or secret.expires_at <= time.time():
            return None
        return secret

    def _purge(self) -> None:
        now = time.time()
        for value in [v for v, s in self._secrets.items() if s.expires_at <= now]:
            del self._secrets[value]


class Authenticator:
    def __init__(self, api_key: str | None, secrets: SecretStore) -> None:
        self.api_key = api_key
        self.secrets = secrets

    def check(self, token: str | None, client_host: str | None) -> AuthResult:
        if token and token.startswith("ek_"):
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
