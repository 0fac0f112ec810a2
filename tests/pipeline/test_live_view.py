"""The live view: a running pipeline's annotated streams (MJPEG) and metrics in a
real headless Chromium, and ``/metrics`` as Prometheus text. Everything on
127.0.0.1; the browser is skipped with a reason when Debian's ``chromium`` is
absent (.ci/run installs it). The screenshot is kept under the test's tmp dir."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.analytics.stage import AnalyticsConfig
from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.live_view import LiveView, parse_address
from pipeline.metrics import Metrics
from pipeline.runner import Pipeline
from pipeline.server_config import ServerAuth
from pipeline.sinks import OutputConfig, SinkError
from pipeline.sources import SourceConfig
from tests.conftest import StubDetector, write_video

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


TOKEN = "live-view-test-token-0123456789"


@pytest.fixture
def running(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pipeline]:
    """Two looping clips paced as cameras, served on a free port of 127.0.0.1,
    with a zone over the whole frame (the stub's box is always in it). A test
    that parametrizes it indirectly with a token gets a server that needs it."""
    token = getattr(request, "param", None)
    clips = [str(write_video(tmp_path / f"cam{i}.mp4", frames=40, fps=20.0))
             for i in range(2)]
    cfg = PipelineConfig(
        sources=SourceConfig(realtime=True, loop=True, max_frames=2000),
        outputs=OutputConfig(out_dir=tmp_path / "out", video=False,
                             serve="127.0.0.1:0",
                             serve_auth=ServerAuth(token=token)),
        analytics=AnalyticsConfig.of([], ["0,0,1,0,1,1,0,1:all"]),
        progress=False)
    pipeline = build_pipeline(clips, StubDetector(), cfg)
    thread = threading.Thread(target=pipeline.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
            pipeline.live_view is None
            or any(pipeline.live_view.latest(s) is None for s in ("cam0", "cam1"))):
        time.sleep(0.05)
    assert pipeline.live_view is not None, "live view did not start"
    yield pipeline
    pipeline.request_stop()
    thread.join(10)
    assert not thread.is_alive()


def get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def mjpeg_parts(url: str, count: int, timeout: float = 10) -> list[bytes]:
    """The first ``count`` JPEG parts of a multipart stream (strictly parsed)."""
    parts: list[bytes] = []
    with urllib.request.urlopen(url, timeout=timeout) as response:
        ctype = response.headers["Content-Type"]
        assert ctype.startswith("multipart/x-mixed-replace; boundary=")
        boundary = ctype.split("boundary=")[1].encode()
        while len(parts) < count:
            assert response.readline().strip() == b"--" + boundary
            headers = {}
            while (line := response.readline().strip()):
                key, _, value = line.decode().partition(":")
                headers[key.lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            body = response.read(int(headers["content-length"]))
            assert body[:2] == b"\xff\xd8" and body[-2:] == b"\xff\xd9"
            assert response.readline() == b"\r\n"
            parts.append(body)
    return parts


def parse_prometheus(text: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_mjpeg_parts_change_and_metrics_rise(running: Pipeline) -> None:
    url = running.live_view.url
    first, second = mjpeg_parts(f"{url}stream/cam0.mjpg", 2)
    assert first != second  # the square moves from frame to frame
    scrape1 = parse_prometheus(get(f"{url}metrics").decode())
    time.sleep(1.0)
    scrape2 = parse_prometheus(get(f"{url}metrics").decode())
    key = ("streamdet_frames_written_total", (("source", "cam0"),))
    assert scrape2[key] > scrape1[key] > 0
    assert scrape2[("streamdet_fps", (("source", "cam1"),))] > 0
    assert ("streamdet_stage_latency_seconds",
            (("stage", "infer"), ("stat", "p95"))) in scrape2
    assert any(name == "streamdet_reconnects_total" for name, _ in scrape2)
    stats = json.loads(get(f"{url}stats.json"))
    assert set(stats["live_fps"]) == {"cam0", "cam1"}
    assert get(f"{url}frame/cam1.jpg")[:2] == b"\xff\xd8"
    with pytest.raises(urllib.error.HTTPError, match="404"):
        get(f"{url}stream/nope.mjpg")


def _above_9(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe
    (``--remote-debugging-pipe``: JSON messages ending in NUL on fds 3 and 4), so
    the test needs no WebSocket client and no port of its own."""

    def __init__(self, profile: str) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the child's ends above 9, so redirecting them onto 3 and 4 cannot
        # overwrite one with the other
        to_browser_r, from_browser_w = (_above_9(to_browser_r),
                                        _above_9(from_browser_w))
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 "--window-size=1400,900", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}',
             str(CHROMIUM), *flags],
            pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._id = 0

    def call(self, method: str, params: dict | None = None,
             session: str | None = None, timeout: float = 20) -> dict:
        self._id += 1
        message: dict = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    assert "error" not in reply, f"{method}: {reply['error']}"
                    return reply["result"]
            ready, _, _ = select.select([self._from_browser], [], [], 0.5)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                assert chunk, "chromium closed the DevTools pipe"
                self._buffer += chunk
        raise TimeoutError(f"chromium did not answer {method} within {timeout} s")

    def open(self, url: str) -> str:
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        return self.call("Target.attachToTarget",
                         {"targetId": target, "flatten": True})["sessionId"]

    def evaluate(self, session: str, expression: str):
        result = self.call("Runtime.evaluate",
                           {"expression": expression, "returnByValue": True},
                           session)
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (AssertionError, OSError, TimeoutError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.mark.skipif(CHROMIUM is None,
                    reason="chromium not installed (Debian package chromium)")
def test_page_in_headless_chromium(running: Pipeline, tmp_path: Path) -> None:
    url = running.live_view.url
    with tempfile.TemporaryDirectory() as profile:
        browser = Chromium(profile)
        try:
            session = browser.open(url)
            fps_js = "document.getElementById('fps').textContent"
            values: list[str] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (
                    not values or values[0] == "-"):
                values = [browser.evaluate(session, fps_js) or "-"]
                time.sleep(0.1)
            first_at = time.monotonic()
            while time.monotonic() - first_at < 3.0 and len(set(values)) < 2:
                time.sleep(0.25)
                values.append(browser.evaluate(session, fps_js))
            changed_after = time.monotonic() - first_at
            images = browser.evaluate(
                session, "[...document.images].map(i => [i.getAttribute('src'), "
                         "i.complete ? 0 : 1, i.naturalWidth])")
            table = browser.evaluate(
                session, "document.getElementById('sources').innerText")
            scene = browser.evaluate(
                session, "document.getElementById('scene').innerText")
            shot = browser.call("Page.captureScreenshot", {"format": "png"}, session)
        finally:
            browser.close()
    assert values[0] != "-", "the page never showed an FPS value"
    assert len(set(values)) >= 2, f"FPS text did not change in 3 s: {values}"
    assert changed_after <= 3.0
    assert [src for src, _, _ in images] == ["/stream/cam0.mjpg", "/stream/cam1.mjpg"]
    assert all(width == 160 for _, _, width in images)  # the MJPEG frames render
    assert "cam0" in table and "cam1" in table
    assert "zone all" in scene and "thing 1 inside" in scene, scene
    path = tmp_path / "live_view.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    print(f"screenshot kept: {path}")


@pytest.mark.parametrize("running", [TOKEN], indirect=True)
@pytest.mark.skipif(CHROMIUM is None,
                    reason="chromium not installed (Debian package chromium)")
def test_sign_in_then_page_in_headless_chromium(running: Pipeline) -> None:
    """Without the token the page is a sign-in form; the form's POST sets the
    HttpOnly cookie, and the page, its streams and its metrics then load."""
    url = running.live_view.url
    with tempfile.TemporaryDirectory() as profile:
        browser = Chromium(profile)
        try:
            session = browser.open(url)
            form = None
            deadline = time.monotonic() + 10
            while form is None and time.monotonic() < deadline:
                form = browser.evaluate(
                    session, "document.querySelector('form[action=\"/login\"]') "
                             "? 'form' : null")
                time.sleep(0.1)
            assert form == "form", "no sign-in form"
            browser.evaluate(session, "document.querySelector('input[name=token]')"
                                      f".value = {json.dumps(TOKEN)}; "
                                      "document.querySelector('form').submit()")
            fps = "-"
            deadline = time.monotonic() + 10
            while fps in ("-", None) and time.monotonic() < deadline:
                time.sleep(0.2)
                fps = browser.evaluate(
                    session, "(document.getElementById('fps') || {}).textContent")
            images: list[int] = []
            while time.monotonic() < deadline and images != [160, 160]:
                images = browser.evaluate(  # each stream shows its first frame
                    session, "[...document.images].map(i => i.naturalWidth)")
                time.sleep(0.1)
            cookie_js = browser.evaluate(session, "document.cookie")
        finally:
            browser.close()
    assert fps not in ("-", None), "the page did not load its metrics after sign-in"
    assert images == [160, 160]
    assert cookie_js == ""  # HttpOnly: not readable by scripts


def test_address_parsing_and_busy_port() -> None:
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address(":9000") == ("127.0.0.1", 9000)
    assert parse_address("0.0.0.0:81") == ("0.0.0.0", 81)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address("localhost:http")
    with LiveView("127.0.0.1:0", Metrics()) as view:
        with pytest.raises(SinkError, match="cannot listen"):
            LiveView(f"127.0.0.1:{view.port}", Metrics()).start()
