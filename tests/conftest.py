"""Shared fixtures: the bundled sample clip and a small detections factory."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.types import Detections  # noqa: E402

SAMPLE_VIDEO = ROOT / "samples" / "vtest.mp4"


def make_detections(boxes: list[list[float]] | np.ndarray, scores=None, class_ids=None,
                    track_ids=None) -> Detections:
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    n = len(boxes)
    return Detections(
        boxes,
        np.full(n, 0.9, np.float32) if scores is None else scores,
        np.zeros(n, np.int32) if class_ids is None else class_ids,
        track_ids,
    )


@pytest.fixture
def sample_video() -> Path:
    return SAMPLE_VIDEO
