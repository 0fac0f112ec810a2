"""URL checks shared by the network targets: scheme, host and port validated
before anything connects, credentials split off and never put in a message."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit

from pipeline.events.fanout import EventTargetError
from pipeline.sources import redact_url


@dataclass(frozen=True)
class TargetUrl:
    """A checked URL: ``safe`` is what logs and errors show (no credentials)."""

    scheme: str
    host: str
    port: int | None
    path: str
    query: str
    safe: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def _shown(parts: SplitResult) -> str:
    """The URL as far as it can be shown when it did not parse: no userinfo."""
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}"


def check_url(url: str, schemes: tuple[str, ...], what: str) -> TargetUrl:
    """``url`` split and checked for one of ``schemes``; an
    :class:`EventTargetError` naming ``what`` and the URL (without its
    credentials) otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise EventTargetError(f"{what} URL is empty")
    url = url.strip()
    if any(ord(ch) < 0x20 or ch == "\x7f" or ch.isspace() for ch in url):
        raise EventTargetError(
            f"{what} URL contains spaces or control characters (escape them)"
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        shown = _shown(parts) if parts.netloc else repr(url.split("@")[-1])
        raise EventTargetError(f"{what} URL {shown} is not supported; use {allowed}")
    try:
        port = parts.port
    except ValueError:
        raise EventTargetError(
            f"{what} URL {_shown(parts)} has an invalid port"
        ) from None
    if not parts.hostname:
        raise EventTargetError(f"{what} URL {_shown(parts)} has no host")
    return TargetUrl(
        scheme=scheme,
        host=parts.hostname,
        port=port,
        path=parts.path,
        query=parts.query,
        safe=redact_url(url),
        username=None if parts.username is None else unquote(parts.username),
        password=None if parts.password is None else unquote(parts.password),
    )
