"""Source health: a camera that goes down gives one ``source_down``, is retried
with backoff for as long as a server runs, and gives one ``source_up`` when its
frames come back; events go to the source's events file and callbacks."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from core.events import Event
from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.health import HealthLog, health_reporter
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig
from tests.conftest import StubDetector
from tests.pipeline.test_network import MjpegServer, free_port


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="ffmpeg program not installed (CI installs it)")
def test_a_camera_killed_and_restarted_gives_one_down_and_one_up(
        tmp_path: Path) -> None:
    server = MjpegServer(free_port()).start()
    received: list[Event] = []
    # reconnect_attempts=0 would give up at once: the server retries forever.
    cfg = PipelineConfig(
        sources=SourceConfig(timeout_s=1.0, reconnect_attempts=0, backoff_s=0.2,
                             max_backoff_s=1.0),
        outputs=OutputConfig(out_dir=tmp_path, video=False), progress=False)
    pipeline = build_pipeline([server.url], StubDetector(), cfg, keep_alive=True,
                              on_event=[received.append])
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: pipeline.metrics.sources
                 and next(iter(pipeline.metrics.sources.values())).written > 5,
                 20, "first frames")
        [sid] = pipeline.metrics.sources
        server.kill()
        wait_for(lambda: any(e.event == "source_down" for e in received), 10,
                 "source_down")
        time.sleep(3.0)  # down for a while: several reconnect attempts fail
        assert runner.is_alive()
        before = pipeline.metrics.sources[sid].written
        server.start()
        wait_for(lambda: any(e.event == "source_up" for e in received), 15,
                 "source_up")
        wait_for(lambda: pipeline.metrics.sources[sid].written > before + 5, 15,
                 "frames after the restart")
        assert runner.is_alive()  # the run did not end
    finally:
        pipeline.request_stop()
        runner.join(30)
        server.kill()
    assert not runner.is_alive()
    kinds = [e.event for e in received]
    assert kinds == ["source_down", "source_up"]
    assert all(e.source == sid for e in received)
    assert received[1].frame > received[0].frame
    lines = (tmp_path / f"{sid}.events.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == kinds


def test_health_log_opens_its_file_only_at_the_first_event(tmp_path: Path) -> None:
    path = tmp_path / "cam.events.jsonl"
    seen: list[Event] = []
    log = HealthLog(path, [seen.append])
    report = health_reporter("cam", log.publish)
    log.write(None)  # type: ignore[arg-type]  # frames are ignored
    assert not path.exists()
    report("source_down", 12)
    report("source_up", 40)
    log.close()
    report("source_down", 50)  # after close: callbacks only, no reopen
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["event"], r["source"], r["frame"]) for r in records] == [
        ("source_down", "cam", 12), ("source_up", "cam", 40)]
    assert [e.event for e in seen] == ["source_down", "source_up", "source_down"]
