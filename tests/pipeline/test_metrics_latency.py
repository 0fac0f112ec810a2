"""The metrics a live-latency benchmark needs: inference call times (stage
``infer_call``, a batched call counts once) and capture-to-sink latency per
source."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.sinks import OutputConfig
from tests.conftest import StubDetector, write_video


def test_call_times_and_per_source_latency(tmp_path: Path) -> None:
    clips = [write_video(tmp_path / f"c{i}.mp4", frames=12 + 4 * i) for i in range(2)]
    detector = StubDetector(delay=0.02, max_batch=4)
    config = PipelineConfig(batch=4, max_wait_ms=20, progress=False,
                            outputs=OutputConfig(out_dir=tmp_path / "out",
                                                 video=False, jsonl=False))
    metrics = build_pipeline([str(c) for c in clips], detector, config).run()
    summary = metrics.summary()
    # one sample per call, however many frames it carried
    assert summary["stages_ms"]["infer_call"]["n"] == len(detector.batch_sizes)
    assert max(detector.batch_sizes) > 1
    assert summary["stages_ms"]["infer_call"]["p50"] >= 20.0
    per_frame = summary["stages_ms"]["infer"]["mean"]
    # batched calls are shared by their frames
    assert per_frame < summary["stages_ms"]["infer_call"]["mean"]
    for sid, frames in (("c0", 12), ("c1", 16)):
        latency = summary["sources"][sid]["latency_ms"]
        assert latency["n"] == frames
        assert latency["p95"] >= latency["p50"] >= 20.0
    pooled = summary["end_to_end_ms"]["n"]
    assert pooled == 28 == sum(len(v) for v in metrics.source_latencies.values())


def test_an_idle_source_reports_empty_latency() -> None:
    from pipeline.metrics import Metrics

    metrics = Metrics()
    metrics.source("cam")
    summary = metrics.summary()
    assert summary["sources"]["cam"]["latency_ms"] == pytest.approx(
        {"mean": 0.0, "p50": 0.0, "p95": 0.0, "n": 0})
