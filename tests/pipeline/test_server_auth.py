"""The server's authentication on a real uvicorn on 127.0.0.1: every route of
the app's route table refuses a request without the token; the token is taken
only from the header (or, for GETs, the cookie of ``POST /login``), never from
the query string; bodies are bounded; TLS with a self-signed certificate made by
``openssl`` (skipped without it); and the CLI refuses a network bind without a
token, in one line."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.live_view import LiveView
from pipeline.metrics import Metrics
from pipeline.server_config import ServerAuth
from tests.conftest import ROOT, free_port

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture
def view() -> Iterator[LiveView]:
    with LiveView("127.0.0.1:0", Metrics(), auth=ServerAuth(token=TOKEN)) as live:
        live.sink("cam0")
        live.publish("cam0", np.zeros((48, 64, 3), np.uint8))
        yield live


def request(view: LiveView, method: str, path: str, headers: dict | None = None,
            body: bytes | None = None) -> tuple[int, dict, bytes]:
    """One request; a streaming answer is read only up to its headers."""
    conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        multipart = response.getheader("Content-Type", "").startswith("multipart/")
        data = b"" if multipart else response.read()
        return response.status, dict(response.getheaders()), data
    finally:
        conn.close()


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "cam0", path)


def routes(view: LiveView) -> list[tuple[str, str]]:
    found = [(method, concrete(route.path)) for route in view.asgi.app.routes
             for method in sorted(getattr(route, "methods", None) or {"GET"})
             if method != "HEAD"]
    assert len(found) >= 7, found  # page, login, stats, metrics, frame, stream, openapi
    return found


def test_every_route_needs_the_token(view: LiveView) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for method, path in routes(view):
        status, headers, body = request(view, method, path)
        assert status == 401, (method, path, status)
        assert headers.get("www-authenticate") == "Bearer"
        status, _, body = request(view, method, path,
                                  {"Authorization": "Bearer wrong-token-xxxxxxxx"})
        assert status == 401, (method, path, status)
        status, headers, body = request(view, method, path, bearer)
        assert status not in (401, 403), (method, path, status)
        assert TOKEN.encode() not in body and TOKEN not in str(headers)
    status, _, body = request(view, "GET", "/openapi.json", bearer)
    assert status == 200 and b'"/stream/{source_id}.mjpg"' in body


def test_query_string_token_is_refused(view: LiveView) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for query in (f"token={TOKEN}", f"access_token={TOKEN}", "Token=x"):
        status, _, body = request(view, "GET", f"/stats.json?{query}", bearer)
        assert status == 400, query
        assert TOKEN.encode() not in body


def test_login_cookie_authorises_gets_only(view: LiveView) -> None:
    status, _, _ = request(view, "POST", "/login", {
        "Content-Type": "application/x-www-form-urlencoded"},
        b"token=not-the-token-at-all")
    assert status == 401
    status, headers, _ = request(view, "POST", "/login", {
        "Content-Type": "application/x-www-form-urlencoded"},
        f"token={TOKEN}".encode())
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace(
        "Strict", "strict")
    assert TOKEN not in cookie
    session = {"Cookie": cookie.split(";", 1)[0]}
    for path in ("/", "/stats.json", "/metrics", "/frame/cam0.jpg",
                 "/stream/cam0.mjpg"):
        assert request(view, "GET", path, session)[0] == 200, path
    # a state-changing request needs the header, whatever the cookie
    assert request(view, "POST", "/login", session)[0] == 401
    # a browser without the cookie gets the sign-in form
    status, _, body = request(view, "GET", "/", {"Accept": "text/html"})
    assert status == 401 and b'action="/login"' in body


def test_bodies_over_64_kib_get_413(view: LiveView) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    big = b"x" * (64 * 1024 + 1)
    assert request(view, "POST", "/login", bearer, big)[0] == 413
    # streamed without a length: counted as it arrives
    conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=5)
    try:
        conn.request("POST", "/login", body=iter([b"y" * 40_000] * 3),
                     headers=bearer, encode_chunked=True)
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    assert request(view, "POST", "/login", bearer, b"x" * 1000)[0] == 204
    assert request(view, "GET", "/stats.json", bearer)[0] == 200  # still serving


def test_loopback_without_token_is_open() -> None:
    with LiveView("127.0.0.1:0", Metrics()) as live:
        assert request(live, "GET", "/stats.json")[0] == 200
        assert request(live, "GET", "/stats.json?token=x")[0] == 400


def test_network_bind_needs_a_token() -> None:
    with pytest.raises(ValueError, match="STREAMDET_AUTH_TOKEN"):
        LiveView("0.0.0.0:0", Metrics())
    with pytest.raises(ValueError, match="at least 16"):
        ServerAuth(token="short")
    assert TOKEN not in repr(ServerAuth(token=TOKEN))


def test_cli_refuses_network_bind_without_token(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_stream.py"), "serve", "--model", "hog",
         "--serve", "0.0.0.0:0", "--out", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "STREAMDET_AUTH_TOKEN" in lines[0], proc.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    auth = ServerAuth(token=TOKEN, tls_cert=cert, tls_key=key)
    with LiveView("127.0.0.1:0", Metrics(), auth=auth) as live:
        assert live.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", live.port, timeout=5,
                                           context=context)
        try:
            conn.request("GET", "/stats.json",
                         headers={"Authorization": f"Bearer {TOKEN}"})
            response = conn.getresponse()
            assert response.status == 200 and b'"sources"' in response.read()
            conn.request("GET", "/stats.json")
            assert conn.getresponse().status == 401
        finally:
            conn.close()
    with pytest.raises(ValueError, match="go together"):
        ServerAuth(token=TOKEN, tls_cert=cert)


def test_serve_with_token_from_env_never_logs_it(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "STREAMDET_AUTH_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_stream.py"), "serve", "--model", "hog",
         "--serve", f"127.0.0.1:{port}", "--out", str(tmp_path),
         "--log-level", "DEBUG"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env)
    try:
        statuses: list[int] = []
        deadline = time.monotonic() + 30
        while not statuses and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/stats.json")
                statuses.append(conn.getresponse().status)
                conn.close()
            except OSError:
                time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/stats.json", headers={
            "Authorization": f"Bearer {TOKEN}"})
        statuses.append(conn.getresponse().status)
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert statuses == [401, 200]
    assert TOKEN not in out and TOKEN not in err
    assert "live view at http://127.0.0.1" in err


def test_close_within_a_second_with_a_stream_open() -> None:
    live = LiveView("127.0.0.1:0", Metrics()).start()
    live.sink("cam0")
    live.publish("cam0", np.zeros((48, 64, 3), np.uint8))
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=5)
    try:
        conn.request("GET", "/stream/cam0.mjpg")
        response = conn.getresponse()
        assert response.status == 200
        assert response.readline().startswith(b"--streamdet-frame")
        started = time.monotonic()
        live.close()
        assert time.monotonic() - started < 1.5
    finally:
        conn.close()
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", live.port, timeout=2).request(
            "GET", "/stats.json")
