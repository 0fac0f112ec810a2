"""What a new user hits in the first hour (each failed before its fix)."""

from __future__ import annotations

import cv2
import pytest

from pipeline.config import PipelineConfig
from pipeline.lanes import open_lane
from pipeline.metrics import Metrics
from pipeline.runner import Pipeline
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig, make_source
from tests.conftest import StubDetector, write_video


@pytest.mark.parametrize("stride", [1, 3])
def test_stride_writes_video_at_the_processed_rate(tmp_path, stride):
    video = write_video(tmp_path / "clip.mp4", frames=30, fps=30.0)
    config = PipelineConfig(sources=SourceConfig(stride=stride), tracker="bytetrack",
                            outputs=OutputConfig(out_dir=tmp_path / "out"),
                            progress=False)
    Pipeline([str(video)], StubDetector(), config).run()
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    fps, frames = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    cap.release()
    assert fps == pytest.approx(30.0 / stride, rel=0.01)
    assert frames == 30 // stride
    source = make_source(str(video), config.sources)
    source.open()
    lane = open_lane(source, StubDetector(), config, Metrics(), lambda: None)
    try:
        assert lane.track.tracker.frame_rate == pytest.approx(30.0 / stride)
    finally:
        lane.write.close()
        source.close()
