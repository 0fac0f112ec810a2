"""Who may use the live view's server, and how much they may send it.

The setting, ``ServerAuth``, is in ``pipeline.server_config``. ``require_auth``
is the one FastAPI dependency that every route runs (``pipeline.server_app``
gives it to the app itself):

- with a token, a request needs ``Authorization: Bearer TOKEN``, compared with
  ``secrets.compare_digest``; a GET may instead carry the cookie that
  ``POST /login`` sets (HttpOnly, SameSite=Strict), so the page's images and
  fetches work in a browser; POST/PATCH/DELETE always need the header;
- a token in the query string is refused (400): URLs end up in logs and history;
- the token never appears in a response or a log line; the cookie holds an HMAC
  of it, not the token.

``BodyLimit`` answers 413 to a body over ``MAX_BODY`` (64 KiB: a camera entry is
well under 1 KiB), whether announced by ``Content-Length`` or streamed.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from pipeline.server_config import ServerAuth

log = logging.getLogger(__name__)

COOKIE = "streamdet_session"
MAX_BODY = 64 * 1024
QUERY_TOKEN_NAMES = {"token", "access_token", "auth", "auth_token", "bearer"}
SAFE_METHODS = {"GET", "HEAD"}
LOGIN_FORM = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    "<title>streamdet: sign in</title></head><body>"
    '<form method="post" action="/login"><label>token '
    '<input type="password" name="token" autocomplete="current-password">'
    '</label> <button>sign in</button></form></body></html>')


class AuthError(Exception):
    """A request refused before its route runs: ``status`` and a short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def require_auth(request: Request) -> None:
    """The dependency of every route; raises ``AuthError`` (400/401)."""
    if any(key.lower() in QUERY_TOKEN_NAMES for key in request.query_params):
        raise AuthError(400, "credentials are not accepted in the query string")
    auth: ServerAuth = request.app.state.auth
    if auth.token is None:
        return
    token = auth.token.encode()
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and secrets.compare_digest(
            given.strip().encode(), token):
        return
    if request.url.path == "/login" and request.method == "POST":
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        if secrets.compare_digest(form.get("token", [""])[0].encode(), token):
            return
    cookie = request.cookies.get(COOKIE, "")
    if request.method in SAFE_METHODS and cookie and secrets.compare_digest(
            cookie.encode(), auth.cookie_value().encode()):
        return
    raise AuthError(401, "authentication required")


async def auth_error_response(request: Request, exc: AuthError) -> Response:
    """401 and 400 answers: a sign-in form for a browser asking for the page."""
    headers = {"Cache-Control": "no-store"}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
        if (request.method == "GET"
                and "text/html" in request.headers.get("accept", "")):
            return HTMLResponse(LOGIN_FORM, status_code=401, headers=headers)
    return JSONResponse({"detail": exc.reason}, status_code=exc.status,
                        headers=headers)


def login_response(request: Request) -> Response:
    """After ``require_auth`` let ``POST /login`` through: the session cookie, and
    a redirect to the page (a form) or 204 (a script)."""
    auth: ServerAuth = request.app.state.auth
    wants_page = "application/x-www-form-urlencoded" in request.headers.get(
        "content-type", "")
    response: Response = (RedirectResponse("/", status_code=303) if wants_page
                          else Response(status_code=204))
    if auth.token is not None:
        response.set_cookie(COOKIE, auth.cookie_value(), httponly=True,
                            samesite="strict", secure=auth.tls, path="/")
    return response


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``MAX_BODY`` bytes."""

    def __init__(self, app: Any, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith("//"):  # as http.server does: "//x" is "/x"
            scope = {**scope, "path": "/" + scope["path"].lstrip("/")}
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not length.isdigit():
            await _refuse(send, 400, b'{"detail":"bad Content-Length"}')
            return
        if int(length) > self.limit:
            await _too_large(send)
            return
        # read the whole (bounded) body first, then replay it to the app: a
        # route never sees a body that is too large, and nothing is half-answered
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await _too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Any) -> None:
    await _refuse(send, 413, b'{"detail":"request body over 64 KiB"}')


async def _refuse(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
