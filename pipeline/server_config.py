"""The server's typed settings: where it listens and who may use it.

``parse_address`` reads ``--serve HOST:PORT``; ``ServerAuth`` holds the bearer
token and the TLS files. Kept apart from ``pipeline.server_auth`` (which enforces
them) so that configuring a run does not import the web framework.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import InputError

TOKEN_ENV = "STREAMDET_AUTH_TOKEN"
MIN_TOKEN_CHARS = 16  # shorter tokens are guessable over a network
DEFAULT_HOST = "127.0.0.1"


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` → (host, port); host defaults to
    127.0.0.1. Raises ``InputError`` (a ``ValueError``) naming the value."""
    host, sep, port_text = address.strip().rpartition(":")
    if not sep:
        host, port_text = "", address.strip()
    host = host.strip("[]") or DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        raise InputError(
            f"--serve expects HOST:PORT (e.g. 127.0.0.1:8080), got {address!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise InputError(f"--serve port must be in 0..65535, got {port}")
    return host, port


@dataclass(frozen=True)
class ServerAuth:
    """``token``: the bearer token (None: no authentication, loopback only).
    ``tls_cert``/``tls_key``: PEM files for HTTPS (both or neither)."""

    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise InputError(f"the auth token must have at least {MIN_TOKEN_CHARS} "
                             "characters")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InputError("--tls-cert and --tls-key go together")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not Path(path).is_file():
                raise InputError(f"TLS file not found: {path}")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def __repr__(self) -> str:  # never show the token
        return (f"ServerAuth(token={'set' if self.token else None}, "
                f"tls_cert={self.tls_cert}, tls_key={self.tls_key})")

    def cookie_value(self) -> str:
        """What the session cookie holds: an HMAC of the token, not the token."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"streamdet-session",
                        hashlib.sha256).hexdigest()

    def check(self, host: str) -> None:
        """Refuse to serve ``host`` beyond loopback without a token."""
        if self.token is None and not is_loopback(host):
            raise InputError(f"--serve {host} is reachable from the network: set a "
                             f"token in {TOKEN_ENV} (or --auth-token)")


def auth_from_env(token: str | None, tls_cert: Path | None = None,
                  tls_key: Path | None = None) -> ServerAuth:
    """``ServerAuth`` from the CLI's values, the token falling back to
    ``STREAMDET_AUTH_TOKEN``."""
    return ServerAuth(token=token or os.environ.get(TOKEN_ENV) or None,
                      tls_cert=tls_cert, tls_key=tls_key)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
