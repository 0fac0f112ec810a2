"""SORT (Bewley et al., 2016): Kalman prediction + one Hungarian match on IoU.

Simpler and faster than ByteTrack, but a track survives only ``max_age`` missed
frames and low-score boxes are never used, so occlusions break identities more.
The Kalman filter is the (cx, cy, aspect, h) one shared with ByteTrack.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.types import Detections
from pipeline.tracking.base import (
    TRACKED,
    KalmanTracker,
    check_choice,
    check_fraction,
    check_non_negative_int,
    new_tracks,
    valid_boxes,
)
from pipeline.tracking.cmc import CMC_METHODS
from pipeline.tracking.kalman import KalmanFilterXYAH, xyah_to_xyxy, xyxy_to_xyah
from pipeline.tracking.matching import iou_cost, linear_assignment


@dataclass(frozen=True)
class SortConfig:
    """SORT parameters (defaults: the reference implementation's).

    ``max_age``: missed frame periods after which a track is deleted (1).
    ``min_hits``: consecutive matches before a track is reported; during the
    first ``min_hits`` frames of a source tracks are reported at once (3).
    ``iou_threshold``: smallest IoU accepted as a match (0.3).
    ``min_score``: detections scoring below this are ignored (0.0).
    ``cmc``: camera-motion compensation, one of ``CMC_METHODS`` ("none").
    """

    max_age: int = 1
    min_hits: int = 3
    iou_threshold: float = 0.3
    min_score: float = 0.0
    cmc: str = "none"

    def __post_init__(self) -> None:
        check_choice("cmc", self.cmc, CMC_METHODS)
        check_non_negative_int("max_age", self.max_age)
        check_non_negative_int("min_hits", self.min_hits)
        check_fraction("iou_threshold", self.iou_threshold)
        check_fraction("min_score", self.min_score)


class SortTracker(KalmanTracker):
    """SORT over ``Detections``. Reported boxes are the matched detections' (as
    ByteTrack's), not the filter's estimate. ``max_age`` counts periods of
    ``frame_rate``, not scaled from 30 FPS as the reference counts frames."""

    def __init__(
        self,
        config: SortConfig | None = None,
        frame_rate: float = 30.0,
        kalman: KalmanFilterXYAH | None = None,
    ) -> None:
        self.config = config or SortConfig()
        self.max_time_lost = self.config.max_age
        self._setup(frame_rate, kalman)

    def update(self, detections: Detections, *, timestamp: float,
               image: np.ndarray | None = None) -> Detections:
        cfg, dets = self.config, detections
        frame = self._advance(timestamp, image, dets.xyxy)
        t = self.tracks
        usable = np.flatnonzero(valid_boxes(dets.xyxy) & (dets.scores >= cfg.min_score))
        cost = iou_cost(xyah_to_xyxy(t.mean), dets.xyxy[usable])
        matches, _, free = linear_assignment(cost, 1.0 - cfg.iou_threshold)
        rows, cols = matches[:, 0], usable[matches[:, 1]]
        t.streak[self._streak_broken()] = 0  # missed last update: streak broken
        t.match(rows, dets, cols, frame)
        t.mean[rows], t.cov[rows] = self.kalman.multi_update(
            t.mean[rows], t.cov[rows], xyxy_to_xyah(dets.xyxy[cols])
        )

        t = t.take(frame - t.last_frame <= cfg.max_age)
        t = t.extend(
            new_tracks(self.kalman, dets, usable[free], self.next_id, frame, TRACKED)
        )
        self.next_id += len(free)
        self.tracks = t
        shown = (t.last_frame == frame) & (
            (t.streak >= cfg.min_hits) | (self.updates <= cfg.min_hits)
        )
        return t.to_detections(np.flatnonzero(shown))
