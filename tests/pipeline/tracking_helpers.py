"""A tracker fed by a regular clock, for tests about what it does with boxes."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.types import Detections
from pipeline.tracking import Tracker


class Regular:
    """Feeds ``tracker`` one frame per call at ``fps``: frame k at k / fps
    seconds; everything else (config, tracks, reset, ...) is the tracker's."""

    def __init__(self, tracker: Tracker, fps: float = 30.0) -> None:
        self.tracker, self.fps, self.frames = tracker, fps, 0

    def _next(self) -> float:
        self.frames += 1
        return (self.frames - 1) / self.fps

    def update(self, detections: Detections, image: np.ndarray | None = None
               ) -> Detections:
        return self.tracker.update(detections, timestamp=self._next(), image=image)

    def predict(self, image: np.ndarray | None = None) -> Detections:
        return self.tracker.predict(timestamp=self._next(), image=image)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracker, name)


def regular(tracker: Tracker | None, fps: float | None = None) -> Regular:
    """``tracker`` fed at its own frame rate (or ``fps``)."""
    assert tracker is not None
    return Regular(tracker, fps or getattr(tracker, "frame_rate", 30.0))
