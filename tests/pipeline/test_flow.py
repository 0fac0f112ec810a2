"""Optical-flow propagation of boxes between detections (--detect-every)."""

from __future__ import annotations

import numpy as np

from core.types import Detections
from pipeline.tracking.flow import FlowRefiner


def textured_frame(x: int, y: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    patch = (rng.random((60, 60, 3)) * 255).astype(np.uint8)
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[y:y + 60, x:x + 60] = patch
    return frame


def test_boxes_follow_a_moving_textured_object():
    refiner = FlowRefiner()
    box = Detections([[100, 80, 160, 140]], [0.4], [2])
    refiner.observe(textured_frame(100, 80), box)
    moved = refiner.propagate(textured_frame(106, 83))
    assert len(moved) == 1
    np.testing.assert_allclose(moved.xyxy[0], [106, 83, 166, 143], atol=1.0)
    assert moved.scores[0] == np.float32(0.4) and moved.class_ids[0] == 2


def test_textureless_box_is_left_out():
    refiner = FlowRefiner()
    refiner.observe(np.zeros((240, 320, 3), np.uint8),
                    Detections([[100, 80, 160, 140]], [0.9], [0]))
    assert len(refiner.propagate(np.zeros((240, 320, 3), np.uint8))) == 0
    assert len(FlowRefiner().propagate(textured_frame(0, 0))) == 0  # no history
