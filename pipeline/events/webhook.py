"""HTTP(S) POST of each event to a receiver the user runs.

The standard library's ``urllib.request`` is enough for one small POST per
event and adds no dependency. The receiver is treated as hostile: redirects are
not followed (a POST turned into a GET, or sent on to another host, is not a
delivery), at most :data:`MAX_RESPONSE_BYTES` of a reply are read, and nothing
from the reply is logged but its status.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import time
import urllib.error
import urllib.request
from urllib.parse import urlunsplit

from core.events import Event
from pipeline.events.fanout import EventTarget, EventTargetError
from pipeline.events.urls import check_url

SIGNATURE_HEADER = "X-Streamdet-Signature"
TIMESTAMP_HEADER = "X-Streamdet-Timestamp"
MAX_RESPONSE_BYTES = 64 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises the 3xx as an HTTPError


def sign(secret: str | bytes, body: bytes) -> str:
    """The signature header's value: ``sha256=`` + HMAC-SHA256 hex of ``body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


class WebhookTarget(EventTarget):
    """POSTs ``Event.to_json()`` with ``Content-Type: application/json``.

    With ``secret``, each request carries ``X-Streamdet-Signature:
    sha256=HEX`` (HMAC-SHA256 of the exact body bytes) and
    ``X-Streamdet-Timestamp`` (Unix seconds of this attempt). A try that gets no
    answer within ``timeout_s``, a connection error or a 5xx is tried again up
    to ``retries`` times, after ``backoff_s``, then twice that, and so on; a
    4xx (or a redirect) is final. Every try of one event carries the same body,
    so the same ``event_id``. User and password in the URL are sent as HTTP
    Basic auth and never logged.
    """

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        timeout_s: float = 2.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        queue_size: int = 1000,
    ) -> None:
        checked = check_url(url, ("http", "https"), "webhook")
        if not timeout_s > 0:
            raise EventTargetError(f"webhook timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise EventTargetError(f"webhook retries must be >= 0, got {retries}")
        if not backoff_s >= 0:
            raise EventTargetError(f"webhook backoff_s must be >= 0, got {backoff_s}")
        if queue_size < 1:
            raise EventTargetError(f"webhook queue_size must be >= 1, got {queue_size}")
        if secret is not None and not secret:
            # An unset ${WEBHOOK_SECRET} expands to "": unsigned posts to a
            # receiver that expects signatures would all be refused.
            raise EventTargetError("webhook secret is empty")
        netloc = checked.host if ":" not in checked.host else f"[{checked.host}]"
        if checked.port is not None:
            netloc = f"{netloc}:{checked.port}"
        self._url = urlunsplit(
            (checked.scheme, netloc, checked.path or "/", checked.query, "")
        )
        self._safe = checked.safe
        self._auth: str | None = None
        if checked.username is not None:
            pair = f"{checked.username}:{checked.password or ''}".encode()
            self._auth = "Basic " + base64.b64encode(pair).decode("ascii")
        self._secret = None if secret is None else secret.encode()
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.queue_size = int(queue_size)
        self._opener = urllib.request.build_opener(_NoRedirect)

    @property
    def name(self) -> str:
        return f"webhook:{self._safe}"

    def request(self, event: Event) -> urllib.request.Request:
        """The request for one event (a fresh timestamp per try)."""
        body = event.to_json().encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "streamdet"}
        if self._auth is not None:
            headers["Authorization"] = self._auth
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
            headers[TIMESTAMP_HEADER] = str(int(time.time()))
        return urllib.request.Request(
            self._url, data=body, headers=headers, method="POST"
        )

    def deliver(self, event: Event) -> None:
        with self._opener.open(self.request(event), timeout=self.timeout_s) as reply:
            reply.read(MAX_RESPONSE_BYTES)  # let the connection finish cleanly

    def retry_delay(self, attempt: int, error: Exception) -> float | None:
        if attempt > self.retries:
            return None
        if isinstance(error, urllib.error.HTTPError):
            if error.code < 500:
                return None
        elif not isinstance(error, OSError | http.client.HTTPException):
            return None  # a fault in the request itself: trying again won't help
        return self.backoff_s * 2 ** (attempt - 1)
