"""Network sources against a real MJPEG-over-HTTP server on 127.0.0.1 (FFmpeg in
listen mode): stalls, outages, reconnects with backoff, giving up, other sources
carrying on. Skipped when the ffmpeg program is not installed."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig, SourceError, make_source
from tests.conftest import ROOT, StubDetector, write_video

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                reason="ffmpeg program not installed (CI installs it)")
CLIP = ROOT / "samples" / "demo.mp4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MjpegServer:
    """FFmpeg serving a looping clip as multipart JPEG on 127.0.0.1 only."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/feed.mjpg"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MjpegServer:
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "quiet", "-re", "-stream_loop",
             "-1", "-i", str(CLIP), "-c:v", "mjpeg", "-q:v", "8", "-f", "mpjpeg",
             "-listen", "1", self.url], stdin=subprocess.DEVNULL)
        time.sleep(0.5)  # let it bind
        return self

    def pause(self) -> None:  # a stall: connection stays up, no data flows
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def server():
    srv = MjpegServer(free_port())
    yield srv
    srv.kill()


def test_reads_stream_and_survives_restart(server: MjpegServer) -> None:
    server.start()
    cfg = SourceConfig(timeout_s=1.0, reconnect_attempts=6, backoff_s=0.3)
    source = make_source(server.url, cfg)
    assert source.live and "127.0.0.1" in source.source_id
    indices: list[int] = []
    with source:
        frames = source.frames()
        for _ in range(10):
            indices.append(next(frames).index)
        server.kill()
        threading.Timer(1.0, server.start).start()
        started = time.perf_counter()
        for _ in range(10):
            indices.append(next(frames).index)
        outage = time.perf_counter() - started
    assert source.stats.reconnects >= 1
    assert source.stats.lost > 0  # counted, not replaced by fake frames
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert indices[10] - indices[9] > 1  # the gap shows in the frame numbers
    assert outage < 10


def test_stall_detected_within_read_timeout(server: MjpegServer) -> None:
    server.start()
    cfg = SourceConfig(timeout_s=1.0, reconnect_attempts=1, backoff_s=0.2)
    with make_source(server.url, cfg) as source:
        frames = source.frames()
        next(frames)
        server.pause()
        started = time.perf_counter()
        with pytest.raises(SourceError, match="reconnect attempts failed"):
            for _ in range(1000):
                next(frames)
        # read timeout 1 s + one reconnect try (backoff 0.2 s + open timeout 1 s)
        assert time.perf_counter() - started < 4.5


def test_dead_stream_gives_up_while_file_source_continues(
        server: MjpegServer, tmp_path: Path) -> None:
    server.start()
    video = write_video(tmp_path / "steady.mp4", frames=60)
    cfg = PipelineConfig(
        sources=SourceConfig(timeout_s=1.0, reconnect_attempts=2, backoff_s=0.2,
                             realtime=True),
        outputs=OutputConfig(out_dir=tmp_path / "out"), progress=False)
    threading.Timer(1.5, server.kill).start()
    metrics = build_pipeline([server.url, str(video)], StubDetector(), cfg).run()
    stream = next(c for sid, c in metrics.sources.items() if sid != "steady")
    assert stream.status == "failed"
    assert "reconnect attempts failed" in stream.reason
    assert stream.written > 0
    assert metrics.sources["steady"].written + metrics.sources["steady"].dropped == 60
    assert metrics.sources["steady"].status == "ok"


def test_unreachable_url_fails_within_open_timeout() -> None:
    src = make_source(f"http://127.0.0.1:{free_port()}/none.mjpg",
                      SourceConfig(timeout_s=1.0))
    started = time.perf_counter()
    with pytest.raises(SourceError, match="cannot connect"):
        src.open()
    assert time.perf_counter() - started < 3
