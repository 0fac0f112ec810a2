"""Per-source policies that decide which frames need the detector; the
scheduler asks a source's policy for every frame it processes. Frames a
policy skips go to the tracker alone, which predicts them."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

from core.types import Frame
from pipeline.metrics import Metrics


class DetectPolicy(ABC):
    """Decides, frame by frame, whether one source's frame needs the detector;
    frames it skips go to the tracker alone, which predicts them."""

    @property
    def keep(self) -> int:
        """How many frames of a live source may wait for inference: the next
        detect frame and the frames the tracker alone handles before it."""
        return 1

    @abstractmethod
    def detect_now(self, frame: Frame) -> bool:
        """Called once per processed frame, in order."""


class EveryFrame(DetectPolicy):
    """The detector runs on every processed frame."""

    def detect_now(self, frame: Frame) -> bool:
        return True


class DetectEvery(DetectPolicy):
    """The detector runs on every ``every``-th processed frame, or
    (``every=None``) on the N that holds ``fps`` given the measured per-frame
    inference time. Counts only frames that are processed, so a dropped frame
    never shifts the schedule."""

    def __init__(self, every: int | None, fps: float, metrics: Metrics) -> None:
        self.every, self.fps, self.metrics = every, fps, metrics
        self.count = self.next_detect = 0
        self.interval = every or 1  # the N in use now

    @property
    def keep(self) -> int:
        return self.interval

    def detect_now(self, frame: Frame | None = None) -> bool:
        k, self.count = self.count, self.count + 1
        if self.every is not None:
            return k % self.every == 0
        if k < self.next_detect:
            return False
        infer_s = self.metrics.median("infer")
        self.interval = max(1, math.ceil(infer_s * self.fps))
        self.next_detect = k + self.interval
        return True
