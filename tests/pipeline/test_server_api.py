"""The control API against the real server on 127.0.0.1, over a ``keep_alive``
pipeline (``streamdet serve`` style) with the stub detector: a camera with a
password in its URL (an MJPEG stream served by ffmpeg on 127.0.0.1; skipped
without ffmpeg) added over the API shows frames within 5 s, never shows its
password, and leaves again with the other source still running; hostile requests
get 4xx and change nothing."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.runner import Pipeline
from pipeline.server_config import ServerAuth
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig
from tests.conftest import StubDetector, write_video
from tests.pipeline.test_network import MjpegServer, free_port

TOKEN = "api-test-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "hunter2-camera-pass"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Pipeline]:
    clip = str(write_video(tmp_path / "cam0.mp4", frames=40, fps=20.0))
    cfg = PipelineConfig(
        sources=SourceConfig(realtime=True, loop=True, max_frames=100_000,
                             timeout_s=5.0),
        outputs=OutputConfig(out_dir=tmp_path / "out", video=False,
                             serve="127.0.0.1:0",
                             serve_auth=ServerAuth(token=TOKEN)),
        progress=False)
    pipeline = build_pipeline([clip], StubDetector(), cfg, keep_alive=True)
    thread = threading.Thread(target=pipeline.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
            pipeline.live_view is None or pipeline.live_view.latest("cam0") is None):
        time.sleep(0.05)
    assert pipeline.live_view is not None and pipeline.live_view.latest("cam0")
    yield pipeline
    pipeline.request_stop()
    thread.join(10)
    assert not thread.is_alive()


def call(pipeline: Pipeline, method: str, path: str, body: object = None,
         headers: dict | None = None, raw: bytes | None = None
         ) -> tuple[int, bytes]:
    assert pipeline.live_view is not None
    conn = http.client.HTTPConnection("127.0.0.1", pipeline.live_view.port,
                                      timeout=10)
    try:
        data = raw if raw is not None else (
            None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data,
                     headers={**BEARER, "Content-Type": "application/json",
                              **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def written(pipeline: Pipeline, name: str) -> int:
    status, body = call(pipeline, "GET", "/api/sources")
    assert status == 200
    counts = {s["name"]: s["counts"]["written"] for s in json.loads(body)["sources"]}
    return counts[name]


class EventStream:
    """``GET /api/events`` read on a thread into a list of (kind, data)."""

    def __init__(self, port: int) -> None:
        self.events: list[tuple[str, dict]] = []
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.request("GET", "/api/events", headers=BEARER)
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type").startswith(
            "text/event-stream")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        kind = ""
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                line = self.response.readline()
                if not line:
                    return
                text = line.decode().rstrip("\n")
                if text.startswith("event: "):
                    kind = text[len("event: "):]
                elif text.startswith("data: "):
                    self.events.append((kind, json.loads(text[len("data: "):])))
        except (OSError, ValueError, AttributeError):
            return  # closed by close(): http.client drops its file mid-read

    def wait_for(self, kind: str, source: str, count: int = 1,
                 timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(k == kind and d.get("source") == source
                   for k, d in self.events) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"no {kind} for {source}: {self.events}")

    def close(self) -> None:
        self.conn.close()
        self.thread.join(5)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_camera_added_shows_frames_and_leaves(running: Pipeline) -> None:
    assert running.live_view is not None
    camera = MjpegServer(free_port()).start()
    events = EventStream(running.live_view.port)
    try:
        url = camera.url.replace("http://", f"http://viewer:{PASSWORD}@")
        added_at = time.monotonic()
        status, body = call(running, "POST", "/api/sources",
                            {"name": "netcam", "url": url})
        assert status == 201, body
        assert json.loads(body) == {"name": "netcam"}
        while (running.live_view.latest("netcam") is None
               and time.monotonic() - added_at < 5.0):
            time.sleep(0.05)
        assert running.live_view.latest("netcam") is not None, "no frame in 5 s"
        status, frame = call(running, "GET", "/frame/netcam.jpg")
        assert status == 200 and frame[:2] == b"\xff\xd8"
        status, listing = call(running, "GET", "/api/sources")
        assert status == 200 and PASSWORD.encode() not in listing
        assert b"viewer" not in listing
        names = {s["name"]: s for s in json.loads(listing)["sources"]}
        assert set(names) == {"cam0", "netcam"}
        assert names["netcam"]["url"] == camera.url
        for path in ("/", "/stats.json", "/metrics", "/openapi.json"):
            assert PASSWORD.encode() not in call(running, "GET", path)[1], path
        events.wait_for("source_added", "netcam")
        # the same name again is a conflict, and changes nothing
        assert call(running, "POST", "/api/sources",
                    {"name": "netcam", "url": url})[0] == 409
        # PATCH: the same name, another camera; frames come from the new one
        second = MjpegServer(free_port()).start()
        try:
            status, body = call(running, "PATCH", "/api/sources/netcam",
                                {"name": "netcam", "url": second.url})
            assert status == 200, body
            status, listing = call(running, "GET", "/api/sources")
            urls = {s["name"]: s["url"] for s in json.loads(listing)["sources"]}
            assert urls == {"cam0": urls["cam0"], "netcam": second.url}
            events.wait_for("source_removed", "netcam")
            sequence = running.live_view.latest("netcam")[0]
            deadline = time.monotonic() + 5
            while (running.live_view.latest("netcam")[0] <= sequence
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            assert running.live_view.latest("netcam")[0] > sequence
        finally:
            camera.kill()
            camera = second
        before = written(running, "cam0")
        status, _ = call(running, "DELETE", "/api/sources/netcam")
        assert status == 204
        events.wait_for("source_removed", "netcam", count=2)  # PATCH, DELETE
        assert call(running, "DELETE", "/api/sources/netcam")[0] == 404
        time.sleep(1.0)
        assert written(running, "cam0") > before  # the other source goes on
        status, listing = call(running, "GET", "/api/sources")
        assert [s["name"] for s in json.loads(listing)["sources"]] == ["cam0"]
        assert all(PASSWORD not in json.dumps(d) for _, d in events.events)
        assert [k for k, d in events.events if d.get("source") == "netcam"] == [
            "source_added", "source_removed", "source_added", "source_removed"]
    finally:
        events.close()
        camera.kill()


@pytest.mark.parametrize("method,path,body,raw,status", [
    ("POST", "/api/sources", None, b"{not json", 400),
    ("POST", "/api/sources", None, b"\xff\xfe", 400),
    ("POST", "/api/sources", None, b"[" * 60_000, 400),
    ("POST", "/api/sources", None, b"x" * (64 * 1024 + 1), 413),
    ("POST", "/api/sources", ["a", "list"], None, 400),
    ("POST", "/api/sources", {"name": "x", "url": "http://127.0.0.1:9/a",
                              "colour": "red"}, None, 400),
    ("POST", "/api/sources", {"name": "x"}, None, 400),
    ("POST", "/api/sources", {"name": "x", "url": "file:///etc/passwd"}, None, 400),
    ("POST", "/api/sources", {"name": "x", "url": "/etc/passwd"}, None, 400),
    ("POST", "/api/sources", {"name": "x", "url": "../cam0.mp4"}, None, 400),
    ("POST", "/api/sources", {"name": "x", "url": "0"}, None, 400),
    ("POST", "/api/sources", {"name": "../etc", "url": "http://127.0.0.1:9/"},
     None, 400),
    ("POST", "/api/sources", {"name": "cam0", "url": "http://127.0.0.1:9/"},
     None, 409),
    ("PATCH", "/api/sources/cam0", {"name": "other", "url": "http://127.0.0.1:9/"},
     None, 400),
    ("PATCH", "/api/sources/nope", {"name": "nope", "url": "http://127.0.0.1:9/"},
     None, 404),
    ("POST", "/api/sources", {"name": "dead", "url": f"http://u:{PASSWORD}@"
                              "127.0.0.1:9/x"}, None, 422),
    ("DELETE", "/api/sources/nope", None, None, 404),
    ("DELETE", "/api/sources/..%2F..%2Fetc", None, None, 404),
    ("POST", "/api/sources?token=" + TOKEN, {"name": "x", "url": "http://a/"},
     None, 400),
])
def test_hostile_requests_change_nothing(running: Pipeline, method: str, path: str,
                                         body: object, raw: bytes | None,
                                         status: int) -> None:
    before = written(running, "cam0")
    got, answer = call(running, method, path, body, raw=raw)
    assert got == status, answer
    assert TOKEN.encode() not in answer and PASSWORD.encode() not in answer
    time.sleep(0.3)
    _, listing = call(running, "GET", "/api/sources")
    assert [s["name"] for s in json.loads(listing)["sources"]] == ["cam0"]
    assert written(running, "cam0") > before  # the run keeps going


def test_state_changes_need_the_header(running: Pipeline) -> None:
    status, _ = call(running, "DELETE", "/api/sources/cam0",
                     headers={"Authorization": ""})
    assert status == 401
    status, body = call(running, "GET", "/openapi.json")
    paths = json.loads(body)["paths"]
    assert {"/api/sources", "/api/sources/{name}", "/api/events"} <= set(paths)
    assert written(running, "cam0") > 0
