"""What a new user hits in the first hour (each failed before its fix)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.build import LaneBuilder, build_pipeline
from pipeline.config import PipelineConfig
from pipeline.metrics import Metrics
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig, make_source
from tests.conftest import StubDetector, write_video


@pytest.mark.parametrize("stride", [1, 3])
def test_stride_writes_video_at_the_processed_rate(tmp_path, stride):
    video = write_video(tmp_path / "clip.mp4", frames=30, fps=30.0)
    config = PipelineConfig(sources=SourceConfig(stride=stride), tracker="bytetrack",
                            outputs=OutputConfig(out_dir=tmp_path / "out"),
                            progress=False)
    build_pipeline([str(video)], StubDetector(), config).run()
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    fps, frames = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    cap.release()
    assert fps == pytest.approx(30.0 / stride, rel=0.01)
    assert frames == 30 // stride
    source = make_source(str(video), config.sources)
    source.open()
    lane = LaneBuilder(StubDetector(), config, Metrics())(source, lambda: None)
    try:
        assert lane.track.tracker.frame_rate == pytest.approx(30.0 / stride)
    finally:
        lane.write.close()
        source.close()


def test_image_folder_outputs_keep_the_input_names(tmp_path):
    import json

    folder = tmp_path / "shots"
    folder.mkdir()
    for name in ("beach.jpg", "dog 2.png", "zz.jpg"):
        cv2.imwrite(str(folder / name), (np.random.default_rng(0).random(
            (120, 160, 3)) * 255).astype(np.uint8))
    config = PipelineConfig(outputs=OutputConfig(out_dir=tmp_path / "out"),
                            progress=False)
    build_pipeline([str(folder)], StubDetector(), config).run()
    images = sorted(p.name for p in (tmp_path / "out" / "shots").iterdir())
    assert images == ["beach.jpg", "dog 2.png", "zz.jpg"]
    records = [json.loads(line) for line in
               (tmp_path / "out" / "shots.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == ["beach.jpg", "dog 2.png", "zz.jpg"]


def test_save_txt_writes_ultralytics_labels(tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=3, size=(160, 120))
    config = PipelineConfig(outputs=OutputConfig(out_dir=tmp_path / "out",
                                                 txt=True, txt_conf=True),
                            progress=False)
    build_pipeline([str(video)], StubDetector(), config).run()
    labels = sorted(p.name for p in (tmp_path / "out" / "labels").iterdir())
    assert labels == ["clip_1.txt", "clip_2.txt", "clip_3.txt"]
    # the stub's box: x 40..80 of 160, y 30..60 of 120
    cls, cx, cy, w, h, conf = (tmp_path / "out" / "labels" / "clip_1.txt"
                               ).read_text().split()
    assert cls == "0"
    assert [float(v) for v in (cx, cy, w, h)] == pytest.approx(
        [0.375, 0.375, 0.25, 0.25], abs=1e-4)
    assert 0 < float(conf) <= 1


def test_no_hud_and_line_width(tmp_path):
    from core.types import Detections
    from pipeline.overlay import Overlay, OverlayConfig

    image = np.zeros((240, 320, 3), np.uint8)
    dets = Detections([[100, 100, 200, 200]], [0.9], [0])
    with_hud = Overlay(["thing"], OverlayConfig()).draw(image, dets, latency_ms=12.0)
    no_hud = Overlay(["thing"], OverlayConfig(hud=False)).draw(image, dets, 12.0)
    assert with_hud[:20, :120].any() and not no_hud[:20, :120].any()
    thin = Overlay(["thing"], OverlayConfig(hud=False, labels=False, line_width=1))
    thick = Overlay(["thing"], OverlayConfig(hud=False, labels=False, line_width=6))
    assert (thick.draw(image, dets) > 0).sum() > 2 * (thin.draw(image, dets) > 0).sum()
