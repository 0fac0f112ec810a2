from __future__ import annotations

import numpy as np

from pipeline.overlay import Overlay, OverlayConfig
from tests.conftest import make_detections


def test_draw_copies_unless_in_place() -> None:
    image = np.zeros((60, 80, 3), np.uint8)
    dets = make_detections([[10, 10, 40, 40]])
    overlay = Overlay(["thing"], OverlayConfig(hud=False))  # HUD shows FPS
    drawn = overlay.draw(image, dets)
    assert drawn is not image and drawn.any() and not image.any()
    same = overlay.draw(image, dets, in_place=True)
    assert same is image and image.any()
    np.testing.assert_array_equal(image, drawn)  # same drawing either way
