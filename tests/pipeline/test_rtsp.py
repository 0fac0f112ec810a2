"""RTSP against a real server on 127.0.0.1: GStreamer's rtsp-server serving H.264
with basic auth (``tests/pipeline/rtsp_server.py``, run by the system Python that
has the GStreamer bindings). Killed and restarted mid-run, wrong password, a server that
never answers, a stall, frames missing from the stream's own timestamps, UDP,
and ``--rtsp-out`` pushing to the server's RECORD mode.

Skipped when GStreamer's RTSP server is not installed (Debian: python3-gi
gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{good,bad,ugly}; .ci/run
installs them)."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from core.types import Frame
from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig, SourceError, make_source
from tests.conftest import ROOT, StubDetector, write_video

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = ROOT / "tests" / "pipeline" / "rtsp_server.py"
USER, PASSWORD = "viewer", "s3cr3t-pw"
FPS = 25


def _gstreamer_missing() -> str:
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); "
        "gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
        "missing = [e for e in ('x264enc', 'rtph264pay', 'rtph264depay', "
        "'h264parse', 'videotestsrc') if Gst.ElementFactory.find(e) is None]; "
        "print(' '.join(missing))"
    )
    try:
        out = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON} unusable ({exc})"
    if out.returncode != 0:
        return "GStreamer RTSP server bindings not installed (python3-gi, " \
               "gir1.2-gst-rtsp-server-1.0)"
    if out.stdout.strip():
        return f"GStreamer elements missing: {out.stdout.strip()} (plugins-good/" \
               "bad/ugly)"
    return ""


MISSING = _gstreamer_missing()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """``rtsp_server.py`` on one port; ``start`` waits until it listens."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.args = args
        self.proc: subprocess.Popen[str] | None = None

    def url(self, path: str = "/cam", user: str = USER,
            password: str = PASSWORD) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{path}"

    def start(self) -> RtspServer:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), "--port", str(self.port), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # READY, or EOF if it died
        assert line.strip() == "READY", f"RTSP server did not start: {line!r}"
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(sig)
            self.proc.wait(10)
            self.proc.stdout.close()  # type: ignore[union-attr]
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)


@pytest.fixture
def servers():
    started: list[RtspServer] = []

    def make(*args: str) -> RtspServer:
        server = RtspServer(*args)
        started.append(server)
        return server

    yield make
    for server in started:
        server.kill()


def auth_args() -> tuple[str, ...]:
    return ("--path", "/cam", "--user", USER, "--password", PASSWORD,
            "--fps", str(FPS))


def read_to_live_edge(frames: Iterator[Frame], at_least: int = 15) -> list[int]:
    """Indices of ``at_least`` frames, then of every frame already buffered: the
    frames the server sent while the stream was probed at open (up to a GOP on
    a slow machine) arrive at once; a frame that takes over half a frame
    interval to come is live."""
    indices: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        started = time.monotonic()
        indices.append(next(frames).index)
        if len(indices) >= at_least and time.monotonic() - started > 0.5 / FPS:
            return indices
    raise AssertionError(f"no live frame within 10 s ({len(indices)} read)")


def test_h264_with_auth_survives_kill_and_restart(servers, caplog) -> None:
    server = servers(*auth_args()).start()
    cfg = SourceConfig(timeout_s=2.0, reconnect_attempts=8, backoff_s=0.25,
                       max_backoff_s=1.0)
    source = make_source(server.url(), cfg)
    assert source.live and PASSWORD not in source.source_id
    assert PASSWORD not in source.display_name
    indices: list[int] = []
    with caplog.at_level(logging.DEBUG), source:
        assert source.size == (320, 240) and source.fps == pytest.approx(FPS)
        frames = source.frames()
        indices += read_to_live_edge(frames)
        server.kill()
        down = time.monotonic()
        threading.Timer(1.5, server.start).start()
        for _ in range(15):
            indices.append(next(frames).index)
        outage = time.monotonic() - down
    assert source.stats.reconnects >= 1
    # the frames the camera produced while we were away: counted, not faked
    assert 0.5 * outage * FPS <= source.stats.lost <= 1.5 * outage * FPS + FPS
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    # the gap shows in the frame numbers (after what was already buffered)
    assert max(b - a for a, b in pairwise(indices)) > FPS
    assert outage < 10
    assert PASSWORD not in caplog.text


def test_wrong_password_is_a_named_error(servers) -> None:
    server = servers(*auth_args()).start()
    source = make_source(server.url(password="wrong-pw"), SourceConfig(timeout_s=2))
    started = time.monotonic()
    with pytest.raises(SourceError, match="authentication failed") as err:
        source.open()
    assert time.monotonic() - started < 5
    assert "wrong-pw" not in str(err.value)
    assert f"127.0.0.1:{server.port}/cam" in str(err.value)


def test_server_that_never_answers_fails_within_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        accepted: list[socket.socket] = []
        threading.Thread(target=lambda: accepted.append(listener.accept()[0]),
                         daemon=True).start()
        source = make_source(f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{port}/cam",
                             SourceConfig(timeout_s=1.0))
        started = time.monotonic()
        with pytest.raises(SourceError, match="cannot connect") as err:
            source.open()
        elapsed = time.monotonic() - started
        for conn in accepted:
            conn.close()
    assert accepted, "the reader never connected"
    # OpenCV's open timeout, then one diagnosing open with the same timeout
    assert elapsed < 4
    assert PASSWORD not in str(err.value)


def test_stall_is_detected_within_read_timeout(servers) -> None:
    server = servers(*auth_args()).start()
    cfg = SourceConfig(timeout_s=1.0, reconnect_attempts=1, backoff_s=0.2)
    with make_source(server.url(), cfg) as source:
        frames = source.frames()
        next(frames)
        server.pause()  # connection stays up, nothing flows
        started = time.monotonic()
        with pytest.raises(SourceError, match="reconnect attempts failed"):
            for _ in range(1000):
                next(frames)
        # read timeout 1 s + one reconnect (backoff 0.2 s + open timeout 1 s),
        # with room for FFmpeg's own retries and a loaded machine
        assert time.monotonic() - started < 8


def test_frames_missing_from_the_stream_are_counted_from_its_timestamps(
        servers) -> None:
    # the server drops 30 % of frames before encoding: the RTP timestamps jump
    server = servers(*auth_args(), "--drop", "0.3").start()
    with make_source(server.url(), SourceConfig(timeout_s=2.0)) as source:
        frames = source.frames()
        indices = [next(frames).index for _ in range(40)]
    assert source.stats.reconnects == 0
    lost, read = source.stats.lost, source.stats.read
    assert 0.1 * read <= lost <= 0.9 * read, (lost, read)
    assert indices[-1] - indices[0] + 1 == pytest.approx(40 + lost, abs=2)


def test_udp_transport_is_selectable(servers) -> None:
    server = servers(*auth_args()).start()
    cfg = SourceConfig(timeout_s=2.0, rtsp_transport="udp")
    with make_source(server.url(), cfg) as source:
        frames = source.frames()
        got = [next(frames) for _ in range(10)]
    assert got[0].image.shape == (240, 320, 3)


def test_rtsp_transport_is_validated() -> None:
    with pytest.raises(ValueError, match="tcp, udp"):
        SourceConfig(rtsp_transport="http")


def test_rtsp_out_reads_back_as_h264(servers, tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    received = tmp_path / "received.h264"
    server = servers("--path", "/in", "--record", str(received)).start()
    clip = write_video(tmp_path / "clip.mp4", frames=50, size=(160, 120), fps=25.0)
    cfg = PipelineConfig(
        sources=SourceConfig(realtime=True),  # pushed at the clip's own pace
        outputs=OutputConfig(out_dir=tmp_path / "out", jsonl=False,
                             rtsp_out=server.url("/in", user="")),
        progress=False)
    metrics = build_pipeline([str(clip)], StubDetector(), cfg).run()
    written = metrics.sources["clip"].written
    assert written == 50
    time.sleep(0.5)  # the server's jitter buffer drains into the file
    server.kill(signal.SIGTERM)
    with av.open(str(received)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        got = sum(1 for _ in container.decode(video=0))
    assert got >= 0.95 * written, f"{got} of {written} frames arrived"
