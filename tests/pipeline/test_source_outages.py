"""End of stream versus outage: a finite video over HTTP ends at its end (it is
not replayed), while a webcam whose read fails is an outage (reopened with
backoff, then a named error and a non-zero exit), never a silent end."""

from __future__ import annotations

import http.server
import os
import re
import threading
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

import pipeline.sources.video as sources
from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig, SourceError, make_source
from tests.conftest import StubDetector, write_video


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with byte ranges, as every real web server serves them (an
    MP4 whose index sits at its end needs them)."""

    def send_head(self):  # type: ignore[override]
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not match or not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        start = int(match[1])
        end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
        if start >= len(data):
            self.send_error(416)
            return None
        self.send_response(206)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        import io

        return io.BytesIO(data[start : end + 1])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_folder(tmp_path: Path):
    folder = tmp_path / "www"
    folder.mkdir()

    def handler(*args, **kwargs):
        return _RangeHandler(*args, directory=str(folder), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_finite_http_video_ends_instead_of_replaying(http_folder) -> None:
    folder, base = http_folder
    write_video(folder / "clip.mp4", frames=30)
    cfg = SourceConfig(timeout_s=2.0, reconnect_attempts=3, backoff_s=0.1)
    source = make_source(f"{base}/clip.mp4", cfg)
    with source:
        indices = [f.index for f in islice(source.frames(), 100)]  # bounded
    assert indices == list(range(30))
    assert source.stats.reconnects == 0
    assert not source.live  # a file over HTTP: every frame processed, none dropped


def test_finite_http_video_in_a_pipeline_is_ok(http_folder, tmp_path: Path) -> None:
    folder, base = http_folder
    write_video(folder / "clip.mp4", frames=25)
    cfg = PipelineConfig(
        sources=SourceConfig(timeout_s=2.0, reconnect_attempts=2, backoff_s=0.1,
                             max_frames=200),  # bounded, should it replay
        outputs=OutputConfig(out_dir=tmp_path / "out", video=False), progress=False)
    metrics = build_pipeline([f"{base}/clip.mp4"], StubDetector(), cfg).run()
    (counts,) = metrics.sources.values()
    assert (counts.status, counts.written, counts.dropped) == ("ok", 25, 0)


class FakeCapture:
    """A webcam: ``good`` frames, then every read fails (unplugged)."""

    opened: list[FakeCapture] = []

    def __init__(self, good: int) -> None:
        self.good = good
        FakeCapture.opened.append(self)

    def isOpened(self) -> bool:  # OpenCV's name
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.good <= 0:
            return False, None
        self.good -= 1
        return True, np.full((48, 64, 3), 90, np.uint8)

    def get(self, prop: int) -> float:
        return 30.0 if prop == sources.cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        pass


@pytest.fixture
def webcam(monkeypatch: pytest.MonkeyPatch):
    """``open_capture`` for device indices gives FakeCaptures with these frame
    counts in turn (the last one repeats)."""
    FakeCapture.opened = []
    plan: list[int] = []

    def fake_open(target, ffmpeg_options=None, params=None):
        assert isinstance(target, int), target
        good = plan.pop(0) if len(plan) > 1 else plan[0]
        return FakeCapture(good)

    monkeypatch.setattr(sources, "open_capture", fake_open)
    return plan


def test_webcam_read_failure_is_an_outage_then_a_named_error(webcam) -> None:
    webcam.extend([5, 0])  # five frames, then the device is gone for good
    cfg = SourceConfig(reconnect_attempts=3, backoff_s=0.01, max_backoff_s=0.02)
    source = make_source("0", cfg)
    got = []
    with source, pytest.raises(SourceError, match=r"^0: device read failed"):
        for frame in islice(source.frames(), 100):
            got.append(frame)
    assert len(got) == 5
    assert len(FakeCapture.opened) == 1 + 3  # the first open, then 3 reopen tries


def test_webcam_that_comes_back_continues(webcam) -> None:
    webcam.extend([5, 0, 4, 0])  # out, one failed reopen, back with 4 frames, gone
    cfg = SourceConfig(reconnect_attempts=2, backoff_s=0.01, max_backoff_s=0.02)
    source = make_source("0", cfg)
    got = []
    with source, pytest.raises(SourceError, match="device read failed"):
        for frame in islice(source.frames(), 100):
            got.append(frame.index)
    assert len(got) == 9 and source.stats.reconnects == 1
    assert got == sorted(got)


def test_webcam_failure_exits_non_zero(webcam, tmp_path: Path) -> None:
    import run_stream

    webcam.extend([3, 0])
    code = run_stream.main(["--source", "0", "--model", "hog", "--reconnect", "1",
                            "--out", str(tmp_path / "out"), "--no-progress",
                            "--no-video"])
    assert code == 1
    assert os.path.getsize(tmp_path / "out" / "webcam0.jsonl") > 0
