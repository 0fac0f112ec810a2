"""ByteTrack (Zhang et al., ECCV 2022): associate every detection box, low scores too.

Per frame: split detections by score; predict every track with the Kalman filter
(after camera-motion compensation, if enabled); first match high-score detections
to tracked and lost tracks; then match low-score detections (often occluded
objects) to the tracks still unmatched; then give tentative tracks a chance with
the leftover high-score detections; start tentative tracks from what is left;
forget tracks lost for too long.

Beyond the paper (each measured by ``benchmarks/tracking_bench.py``, see
``docs/tracking.md``): a lost track's box is matched with a buffer that grows
with the time it has been lost, its velocity is damped and its size frozen while
lost, low-score boxes may re-find lost tracks, and a confirmed track may go on
being reported at its predicted box for a few frames without a detection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.types import Detections
from pipeline.tracking.base import (
    LOST,
    TENTATIVE,
    TRACKED,
    KalmanTracker,
    check_choice,
    check_fraction,
    check_non_negative_int,
    check_positive,
    new_tracks,
    valid_boxes,
)
from pipeline.tracking.cmc import CMC_METHODS
from pipeline.tracking.kalman import KalmanFilterXYAH, xyah_to_xyxy, xyxy_to_xyah
from pipeline.tracking.matching import fuse_score, iou_cost, linear_assignment


@dataclass(frozen=True)
class ByteTrackConfig:
    """ByteTrack parameters (defaults: the best across the benchmark families; the
    paper's MOT17 values in brackets where they differ).

    ``track_high_thresh``: detections scoring at least this are "high" (0.3)
    [0.5].
    ``track_low_thresh``: detections below this are ignored; those between the two
    thresholds are "low" and only continue existing tracks (0.1).
    ``new_track_thresh``: an unmatched high detection starts a track only if it
    scores at least this (0.3) [0.6].
    ``match_thresh``: largest 1 - IoU cost accepted in the first association (0.8).
    ``second_match_thresh``: the same for low detections (0.5, i.e. IoU >= 0.5).
    ``unconfirmed_match_thresh``: the same for tentative tracks (0.6) [0.7].
    ``track_buffer``: frames a lost track is kept at 30 FPS, scaled by the actual
    frame rate (30), i.e. ``track_buffer / 30`` seconds, however many frames come.
    ``fuse_score``: multiply IoU by detection score in the high-score costs (True).
    ``min_hits``: matches (in consecutive frames) before a tentative track is
    confirmed and reported (3) [2].
    ``lost_low_match``: low-score detections may also re-find lost tracks (True)
    [False].
    ``lost_buffer``: a lost track and the detections it is compared with are
    grown by this fraction of the track's (w + h) / 2 per frame lost, on each side,
    before IoU (buffered IoU) (0.05) [0].
    ``lost_velocity_decay``: a lost track's velocity is multiplied by this every
    frame period [1].
    ``report_lost``: frame periods a confirmed track that lost its detection is
    still reported, at its predicted box (8) [0].
    ``smooth_boxes``: report the Kalman filter's corrected box instead of the
    matched detection's, which removes much of a detector's jitter (True) [False].
    ``kalman_position_noise`` / ``kalman_velocity_noise``: process noise per frame
    as fractions of the box height [1/20, 1/160].
    ``cmc``: camera-motion compensation, one of ``CMC_METHODS`` ("none").
    """

    track_high_thresh: float = 0.3
    track_low_thresh: float = 0.1
    new_track_thresh: float = 0.3
    match_thresh: float = 0.8
    second_match_thresh: float = 0.5
    unconfirmed_match_thresh: float = 0.6
    track_buffer: int = 30
    fuse_score: bool = True
    min_hits: int = 3
    lost_low_match: bool = True
    lost_buffer: float = 0.05
    lost_velocity_decay: float = 1.0
    report_lost: int = 8
    smooth_boxes: bool = True
    kalman_position_noise: float = 1.0 / 20
    kalman_velocity_noise: float = 1.0 / 160
    cmc: str = "none"

    def __post_init__(self) -> None:
        for name in (
            "track_high_thresh",
            "track_low_thresh",
            "new_track_thresh",
            "match_thresh",
            "second_match_thresh",
            "unconfirmed_match_thresh",
            "lost_velocity_decay",
        ):
            check_fraction(name, getattr(self, name))
        if self.track_low_thresh >= self.track_high_thresh:
            raise ValueError(
                f"track_low_thresh ({self.track_low_thresh!r}) must be "
                f"below track_high_thresh ({self.track_high_thresh!r})"
            )
        check_non_negative_int("track_buffer", self.track_buffer)
        check_non_negative_int("report_lost", self.report_lost)
        check_non_negative_int("min_hits", self.min_hits)
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {self.min_hits!r}")
        if not 0 <= self.lost_buffer <= 1:
            raise ValueError(f"lost_buffer must be in [0, 1], got {self.lost_buffer!r}")
        check_positive("kalman_position_noise", self.kalman_position_noise)
        check_positive("kalman_velocity_noise", self.kalman_velocity_noise)
        check_choice("cmc", self.cmc, CMC_METHODS)


class ByteTracker(KalmanTracker):
    """ByteTrack over ``Detections``; see the module docstring for the steps."""

    def __init__(
        self,
        config: ByteTrackConfig | None = None,
        frame_rate: float = 30.0,
        kalman: KalmanFilterXYAH | None = None,
    ) -> None:
        self.config = config or ByteTrackConfig()
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be > 0, got {frame_rate!r}")
        self.max_time_lost = int(frame_rate / 30.0 * self.config.track_buffer)
        self._setup(frame_rate, kalman)

    def _before_predict(self, dt: float) -> None:
        # A lost track keeps drifting with a damped velocity but stops growing or
        # shrinking: its last motion is less and less likely to still hold.
        t = self.tracks
        lost = t.state == LOST
        t.mean[lost, 7] = 0.0
        t.mean[lost, 4:7] *= self.config.lost_velocity_decay ** dt

    def update(self, detections: Detections, *, timestamp: float,
               image: np.ndarray | None = None) -> Detections:
        cfg = self.config
        dets = detections
        frame = self._advance(timestamp, image, dets.xyxy)
        t = self.tracks
        scores = dets.scores
        valid = valid_boxes(dets.xyxy)
        high = np.flatnonzero(valid & (scores >= cfg.track_high_thresh))
        low = np.flatnonzero(
            valid & (scores >= cfg.track_low_thresh) & (scores < cfg.track_high_thresh)
        )
        predicted = xyah_to_xyxy(t.mean)
        matched_rows: list[np.ndarray] = []
        matched_cols: list[np.ndarray] = []

        def accept(rows: np.ndarray, cols: np.ndarray) -> None:
            t.match(rows, dets, cols, frame)
            matched_rows.append(rows)
            matched_cols.append(cols)

        # First association: high-score detections with tracked and lost tracks.
        pool = np.flatnonzero(t.state != TENTATIVE)
        cost = iou_cost(predicted[pool], dets.xyxy[high],
                        self._margins(pool, predicted, frame))
        if cfg.fuse_score:
            cost = fuse_score(cost, scores[high])
        matches, free_pool, free_high = linear_assignment(cost, cfg.match_thresh)
        accept(pool[matches[:, 0]], high[matches[:, 1]])

        # Second association: low-score detections with the still-unmatched
        # tracked tracks (and lost ones, if allowed).
        remain = pool[free_pool]
        if not cfg.lost_low_match:
            remain = remain[t.state[remain] == TRACKED]
        cost = iou_cost(predicted[remain], dets.xyxy[low],
                        self._margins(remain, predicted, frame))
        matches, _, _ = linear_assignment(cost, cfg.second_match_thresh)
        accept(remain[matches[:, 0]], low[matches[:, 1]])
        unmatched = pool[free_pool]  # those matched just now are re-set below
        t.state[unmatched[t.state[unmatched] == TRACKED]] = LOST

        # Tentative tracks (seen in too few frames) with the leftover high ones.
        tentative = np.flatnonzero(t.state == TENTATIVE)
        left = high[free_high]
        # (a margin only after frames the detector skipped: --detect-every)
        cost = iou_cost(predicted[tentative], dets.xyxy[left],
                        self._margins(tentative, predicted, frame))
        if cfg.fuse_score:
            cost = fuse_score(cost, scores[left])
        matches, free_tentative, free_left = linear_assignment(
            cost, cfg.unconfirmed_match_thresh
        )
        accept(tentative[matches[:, 0]], left[matches[:, 1]])

        # Kalman correction of every matched track at once; states follow.
        rows = np.concatenate(matched_rows)
        cols = np.concatenate(matched_cols)
        t.mean[rows], t.cov[rows] = self.kalman.multi_update(
            t.mean[rows], t.cov[rows], xyxy_to_xyah(dets.xyxy[cols])
        )
        t.save_state(rows)
        confirmed = (t.state[rows] != TENTATIVE) | (t.hits[rows] >= cfg.min_hits)
        t.state[rows[confirmed]] = TRACKED

        # Forget tentative tracks that missed, and tracks lost for too long.
        keep = np.ones(len(t), dtype=bool)
        keep[tentative[free_tentative]] = False
        keep &= ~((t.state == LOST) & (frame - t.last_frame > self.max_time_lost))
        t.streak[t.last_frame != frame] = 0
        t = t.take(keep)

        # New tentative tracks from confident unmatched detections. On the first
        # update they are confirmed at once (there was nothing to match them to).
        new = left[free_left]
        new = new[scores[new] >= cfg.new_track_thresh]
        first = self.updates == 1 or cfg.min_hits <= 1
        t = t.extend(
            new_tracks(self.kalman, dets, new, self.next_id, frame,
                       TRACKED if first else TENTATIVE, self.history)
        )
        self.next_id += len(new)
        self.tracks = t
        return self._report(frame)
