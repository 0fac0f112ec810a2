"""--detect-every N: the detector runs on every Nth processed frame; the frames
between get the tracker's predicted boxes and are marked in JSON Lines."""

from __future__ import annotations

import json

import pytest

from core.types import Detections
from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.metrics import Metrics
from pipeline.policy import DetectEvery
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig
from tests.conftest import StubDetector, write_video


def test_schedule_every_n_and_auto():
    fixed = DetectEvery(3, 30.0, Metrics())
    assert [fixed.detect_now() for _ in range(7)] == [True, False, False, True,
                                                      False, False, True]
    metrics = Metrics()
    auto = DetectEvery(None, 30.0, metrics)
    assert auto.detect_now()  # nothing measured yet: detect
    for _ in range(5):
        metrics.record("infer", 0.1)  # 100 ms per frame at 30 fps -> every 3rd
    assert [auto.detect_now() for _ in range(6)] == [True, False, False, True,
                                                     False, False]


def test_config_needs_a_tracker_and_a_valid_n():
    with pytest.raises(ValueError, match="needs a tracker"):
        PipelineConfig(detect_every=3)
    with pytest.raises(ValueError, match="integer >= 1 or 'auto'"):
        PipelineConfig(detect_every=0, tracker="bytetrack")


@pytest.mark.parametrize("tracker", ["bytetrack", "sort"])
def test_frames_between_detections_are_predicted_and_marked(tmp_path, tracker):
    video = write_video(tmp_path / "clip.mp4", frames=12)
    detector = StubDetector(max_batch=4)
    config = PipelineConfig(tracker=tracker, detect_every=3, progress=False,
                            outputs=OutputConfig(out_dir=tmp_path / "out",
                                                 video=False))
    metrics = build_pipeline([str(video)], detector, config).run()
    counts = metrics.source("clip")
    assert counts.read == counts.processed == counts.written == 12
    assert detector.calls == 4  # frames 0, 3, 6, 9 were prepared and detected
    records = [json.loads(line) for line in
               (tmp_path / "out" / "clip.jsonl").read_text().splitlines()]
    predicted = [r["frame"] for r in records if r.get("predicted")]
    assert predicted == [1, 2, 4, 5, 7, 8, 10, 11]
    # the stub's box is tracked through the frames between detections
    later = [r for r in records if r["frame"] >= 4]
    assert all(len(r["detections"]) == 1 for r in later)
    assert len({r["detections"][0]["track_id"] for r in later}) == 1
    assert isinstance(Detections.empty(), Detections)


def test_live_source_holds_its_rate_when_n_covers_the_detector(tmp_path):
    """A 20 fps camera and a 120 ms detector: every frame would wait behind it
    at N = 1 (2 of 3 dropped); at N = 3 the frames between detections wait
    only for the tracker, so nearly every frame is shown, with latency still
    about one detector call plus the two frames before it."""
    clip = write_video(tmp_path / "cam.mp4", frames=60, fps=20.0)
    call_s = 0.12
    shown = {}
    for every in (1, 3):
        config = PipelineConfig(tracker="bytetrack", detect_every=every,
                                sources=SourceConfig(realtime=True), progress=False,
                                outputs=OutputConfig(out_dir=tmp_path / f"out{every}",
                                                     video=False))
        summary = build_pipeline([str(clip)], StubDetector(delay=call_s), config
                           ).run().summary()
        counts = summary["sources"]["cam"]
        assert counts["read"] == counts["dropped"] + counts["written"] == 60
        shown[every] = counts["written"]
        if every == 3:
            assert summary["end_to_end_ms"]["p95"] < (call_s + 3 / 20.0) * 1000 * 1.5
    assert shown[1] < 30 and shown[3] > 50
