"""ByteTrack (Zhang et al., ECCV 2022): associate every detection box, low scores too.

Per frame: split detections by score; predict every track with the Kalman filter;
first match high-score detections to tracked and lost tracks; then match low-score
detections (often occluded objects) to the tracked ones still unmatched; then give
tentative tracks (seen once) a chance with the leftover high-score detections;
start tentative tracks from what is left; forget tracks lost for too long.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.types import Detections
from pipeline.tracking.base import (
    LOST,
    TENTATIVE,
    TRACKED,
    Tracker,
    TrackTable,
    check_fraction,
    check_non_negative_int,
    new_tracks,
    valid_boxes,
)
from pipeline.tracking.kalman import KalmanFilterXYAH, xyah_to_xyxy, xyxy_to_xyah
from pipeline.tracking.matching import fuse_score, iou_cost, linear_assignment


@dataclass(frozen=True)
class ByteTrackConfig:
    """ByteTrack parameters (defaults: the paper's MOT17 settings).

    ``track_high_thresh``: detections scoring at least this are "high" (0.5).
    ``track_low_thresh``: detections below this are ignored; those between the two
    thresholds are "low" and only continue existing tracks (0.1).
    ``new_track_thresh``: an unmatched high detection starts a track only if it
    scores at least this (0.6).
    ``match_thresh``: largest 1 - IoU cost accepted in the first association (0.8).
    ``second_match_thresh``: the same for low detections (0.5, i.e. IoU >= 0.5).
    ``unconfirmed_match_thresh``: the same for tentative tracks (0.7).
    ``track_buffer``: frames a lost track is kept at 30 FPS, scaled by the actual
    frame rate (30).
    ``fuse_score``: multiply IoU by detection score in the high-score costs (True).
    """

    track_high_thresh: float = 0.5
    track_low_thresh: float = 0.1
    new_track_thresh: float = 0.6
    match_thresh: float = 0.8
    second_match_thresh: float = 0.5
    unconfirmed_match_thresh: float = 0.7
    track_buffer: int = 30
    fuse_score: bool = True

    def __post_init__(self) -> None:
        for name in (
            "track_high_thresh",
            "track_low_thresh",
            "new_track_thresh",
            "match_thresh",
            "second_match_thresh",
            "unconfirmed_match_thresh",
        ):
            check_fraction(name, getattr(self, name))
        if self.track_low_thresh >= self.track_high_thresh:
            raise ValueError(
                f"track_low_thresh ({self.track_low_thresh!r}) must be "
                f"below track_high_thresh ({self.track_high_thresh!r})"
            )
        check_non_negative_int("track_buffer", self.track_buffer)


class ByteTracker(Tracker):
    """ByteTrack over ``Detections``; see the module docstring for the steps."""

    def __init__(
        self,
        config: ByteTrackConfig | None = None,
        frame_rate: float = 30.0,
        kalman: KalmanFilterXYAH | None = None,
    ) -> None:
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be > 0, got {frame_rate!r}")
        self.config = config or ByteTrackConfig()
        self.frame_rate = float(frame_rate)
        self.max_time_lost = int(self.frame_rate / 30.0 * self.config.track_buffer)
        self.kalman = kalman or KalmanFilterXYAH()
        self.reset()

    def reset(self) -> None:
        self.tracks = TrackTable.empty()
        self.frame_id = 0
        self.next_id = 1

    def update(self, detections: Detections) -> Detections:
        cfg, t = self.config, self.tracks
        self.frame_id += 1
        frame = self.frame_id
        dets = detections
        scores = dets.scores
        valid = valid_boxes(dets.xyxy)
        high = np.flatnonzero(valid & (scores >= cfg.track_high_thresh))
        low = np.flatnonzero(
            valid & (scores >= cfg.track_low_thresh) & (scores < cfg.track_high_thresh)
        )

        # Predict every track one frame ahead; a lost track keeps drifting with its
        # velocity but stops growing or shrinking.
        t.mean[t.state == LOST, 7] = 0.0
        t.mean, t.cov = self.kalman.multi_predict(t.mean, t.cov)
        predicted = xyah_to_xyxy(t.mean)
        matched_rows: list[np.ndarray] = []
        matched_cols: list[np.ndarray] = []

        def accept(rows: np.ndarray, cols: np.ndarray) -> None:
            t.match(rows, dets, cols, frame)
            t.state[rows] = TRACKED
            matched_rows.append(rows)
            matched_cols.append(cols)

        # First association: high-score detections with tracked and lost tracks.
        pool = np.flatnonzero(t.state != TENTATIVE)
        cost = iou_cost(predicted[pool], dets.xyxy[high])
        if cfg.fuse_score:
            cost = fuse_score(cost, scores[high])
        matches, free_pool, free_high = linear_assignment(cost, cfg.match_thresh)
        accept(pool[matches[:, 0]], high[matches[:, 1]])

        # Second association: low-score detections with still-unmatched tracked
        # tracks (lost ones are not revived by a weak box).
        remain = pool[free_pool]
        remain = remain[t.state[remain] == TRACKED]
        cost = iou_cost(predicted[remain], dets.xyxy[low])
        matches, free_remain, _ = linear_assignment(cost, cfg.second_match_thresh)
        accept(remain[matches[:, 0]], low[matches[:, 1]])
        t.state[remain[free_remain]] = LOST

        # Tentative tracks (seen in one frame) with the leftover high detections.
        tentative = np.flatnonzero(t.state == TENTATIVE)
        left = high[free_high]
        cost = iou_cost(predicted[tentative], dets.xyxy[left])
        if cfg.fuse_score:
            cost = fuse_score(cost, scores[left])
        matches, free_tentative, free_left = linear_assignment(
            cost, cfg.unconfirmed_match_thresh
        )
        accept(tentative[matches[:, 0]], left[matches[:, 1]])

        # Kalman correction of every matched track at once.
        rows = np.concatenate(matched_rows)
        cols = np.concatenate(matched_cols)
        t.mean[rows], t.cov[rows] = self.kalman.multi_update(
            t.mean[rows], t.cov[rows], xyxy_to_xyah(dets.xyxy[cols])
        )

        # Forget tentative tracks that missed, and tracks lost for too long.
        keep = np.ones(len(t), dtype=bool)
        keep[tentative[free_tentative]] = False
        keep &= ~((t.state == LOST) & (frame - t.last_frame > self.max_time_lost))
        t.streak[t.last_frame != frame] = 0
        t = t.take(keep)

        # New tentative tracks from confident unmatched detections. On the first
        # frame they are confirmed at once (there was nothing to match them to).
        new = left[free_left]
        new = new[scores[new] >= cfg.new_track_thresh]
        t = t.extend(
            new_tracks(
                self.kalman,
                dets,
                new,
                self.next_id,
                frame,
                TRACKED if frame == 1 else TENTATIVE,
            )
        )
        self.next_id += len(new)
        self.tracks = t
        return t.to_detections(
            np.flatnonzero((t.state == TRACKED) & (t.last_frame == frame))
        )
