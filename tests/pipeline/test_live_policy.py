"""Live sources keep only their freshest frame waiting for inference, dropped
before any preprocessing; several live sources are served round-robin; file
sources in the same run stay lossless."""

from __future__ import annotations

from pathlib import Path

from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.scheduler import LatestFrames
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig, make_source
from pipeline.stages import EndOfStream
from tests.conftest import StubDetector, write_video


def test_latest_frames_replaces_counts_and_rotates():
    slots = LatestFrames()
    assert slots.put("a", 1) == 0
    assert slots.put("a", 2) == 1  # the waiting frame is replaced: one drop
    assert slots.put("b", 10) == 0
    assert slots.put("c", 20) == 0
    assert slots.take(2) == [2, 10]
    slots.put("a", 3)
    slots.put("b", 11)
    assert slots.take(2) == [11, 20]  # starts one source later: b, c, then a
    slots.end(EndOfStream("a"))
    out = slots.take(4)
    assert out[0] == 3 and isinstance(out[1], EndOfStream)  # marker after frame


def test_latest_frames_keeps_the_frames_the_tracker_alone_needs():
    slots = LatestFrames()  # --detect-every 3: the next detect frame and two before it
    assert [slots.put("a", i, keep=3) for i in range(5)] == [0, 0, 0, 1, 1]
    assert slots.put("b", 10) == 0
    assert slots.take(4) == [2, 10]  # the oldest kept frame of each source
    assert slots.take(4) == [3]
    slots.end(EndOfStream("a"))
    out = slots.take(4)
    assert out[0] == 4 and isinstance(out[1], EndOfStream)


def test_slow_detector_on_live_source_keeps_latency_near_one_call(tmp_path):
    clip = write_video(tmp_path / "cam.mp4", frames=40, fps=20.0)
    call_s = 0.2
    detector = StubDetector(delay=call_s, max_batch=4)
    config = PipelineConfig(sources=SourceConfig(realtime=True),
                            outputs=OutputConfig(out_dir=tmp_path / "out",
                                                 video=False), progress=False)
    summary = build_pipeline([str(clip)], detector, config).run().summary()
    counts = summary["sources"]["cam"]
    assert counts["read"] == 40 and counts["dropped"] > 20
    assert counts["read"] == counts["dropped"] + counts["written"]
    assert detector.calls == counts["processed"]  # no preprocessing on drops
    assert summary["end_to_end_ms"]["p95"] < 2.5 * call_s * 1000
    assert 0 < counts["drop_rate"] < 1


def test_file_source_beside_live_sources_loses_nothing(tmp_path):
    cam = write_video(tmp_path / "cam.mp4", frames=30, fps=30.0)
    file = write_video(tmp_path / "file.mp4", frames=30, fps=30.0)
    live_config = SourceConfig(realtime=True)
    sources = [make_source(str(cam), live_config, "cam1"),
               make_source(str(cam), live_config, "cam2"),
               make_source(str(file), SourceConfig(), "file")]
    config = PipelineConfig(outputs=OutputConfig(out_dir=Path(tmp_path / "out"),
                                                 video=False), progress=False)
    summary = build_pipeline(sources, StubDetector(delay=0.05, max_batch=4),
                       config).run().summary()
    s = summary["sources"]
    assert s["file"]["read"] == s["file"]["written"] == 30
    assert s["file"]["dropped"] == 0
    for cam_id in ("cam1", "cam2"):  # both cameras are served
        assert s[cam_id]["written"] > 3
        assert s[cam_id]["read"] == s[cam_id]["dropped"] + s[cam_id]["written"]
