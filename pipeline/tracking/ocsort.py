"""OC-SORT (Cao et al., CVPR 2023): SORT made robust to gaps by trusting observations.

Per frame, after the Kalman prediction (and camera-motion compensation, if on):

1. high-score detections are matched to every track on IoU plus
   *observation-centric momentum* (OCM): the direction from the track's
   observation ``delta_t`` frames back to the detection should agree with the
   direction its observations have been moving in;
2. optionally (``use_byte``) low-score detections to the tracks still unmatched,
   as ByteTrack does;
3. *observation-centric recovery* (OCR): the detections still unmatched are
   compared with the unmatched tracks' *last observed* boxes rather than their
   (possibly drifted) predictions;
4. a track re-found after a gap gets an *observation-centric re-update* (ORU): its
   filter is rewound to the last observation and run along a straight virtual
   path to the new one, so the error it accumulated while coasting is undone;
5. unmatched confident detections start tentative tracks, confirmed after
   ``min_hits`` consecutive matches; tracks unseen for longer than ``max_age``
   frames at 30 FPS (``max_age / 30`` seconds, however many frames come) are
   dropped.

Unlike the reference implementation, a confirmed track is reported again as soon
as it is re-found (the reference waits for ``min_hits`` new consecutive matches).
"""

from __future__ import annotations

import math
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
from pipeline.tracking.matching import direction_cost, iou_cost, linear_assignment


@dataclass(frozen=True)
class OCSortConfig:
    """OC-SORT parameters (defaults: the best across the benchmark families; the
    paper's values in brackets where they differ).

    ``det_thresh``: detections scoring at least this are "high"; only they start
    tracks (0.3) [0.6]. ``low_thresh``: below this a detection is ignored; between the
    two it is "low", used only by ``use_byte`` (0.1).
    ``iou_threshold``: smallest IoU accepted in every association (0.3); below
    30 FPS multiplied by sqrt(fps / 30).
    ``inertia``: weight of the momentum (direction) term in the cost (0.2).
    ``delta_t``: frame periods back to the observation directions are measured
    from (3).
    ``max_age``: frames a track is kept without a match, at 30 FPS, scaled by the
    frame rate (30). ``min_hits``: consecutive matches before a track is
    reported; during the first ``min_hits`` frames of a source tracks are
    reported at once (3).
    ``use_byte``: second association with low-score detections (True) [False].
    ``oru``: observation-centric re-update after a gap (True).
    ``lost_buffer``: as ByteTrack's: buffered IoU growing per frame lost [0].
    ``report_lost``: frame periods a confirmed track is still reported at its
    predicted box after losing its detection (8) [0].
    ``smooth_boxes``: report the Kalman filter's corrected box instead of the
    matched detection's, which removes much of a detector's jitter (True) [False].
    ``kalman_position_noise`` / ``kalman_velocity_noise``: process noise per frame
    as fractions of the box height [1/20, 1/160].
    ``cmc``: camera-motion compensation, one of ``CMC_METHODS`` ("none").
    """

    det_thresh: float = 0.3
    low_thresh: float = 0.1
    iou_threshold: float = 0.3
    inertia: float = 0.2
    delta_t: int = 3
    max_age: int = 30
    min_hits: int = 3
    use_byte: bool = True
    oru: bool = True
    lost_buffer: float = 0.0
    report_lost: int = 8
    smooth_boxes: bool = True
    kalman_position_noise: float = 1.0 / 20
    kalman_velocity_noise: float = 1.0 / 160
    cmc: str = "none"

    def __post_init__(self) -> None:
        for name in ("det_thresh", "low_thresh", "iou_threshold"):
            check_fraction(name, getattr(self, name))
        if self.low_thresh >= self.det_thresh:
            raise ValueError(f"low_thresh ({self.low_thresh!r}) must be below "
                             f"det_thresh ({self.det_thresh!r})")
        if not 0 <= self.inertia <= 1:
            raise ValueError(f"inertia must be in [0, 1], got {self.inertia!r}")
        for name in ("max_age", "min_hits", "report_lost"):
            check_non_negative_int(name, getattr(self, name))
        check_non_negative_int("delta_t", self.delta_t)
        if self.delta_t < 1:
            raise ValueError(f"delta_t must be >= 1, got {self.delta_t!r}")
        if not 0 <= self.lost_buffer <= 1:
            raise ValueError(f"lost_buffer must be in [0, 1], got {self.lost_buffer!r}")
        check_positive("kalman_position_noise", self.kalman_position_noise)
        check_positive("kalman_velocity_noise", self.kalman_velocity_noise)
        check_choice("cmc", self.cmc, CMC_METHODS)


class OCSortTracker(KalmanTracker):
    """OC-SORT over ``Detections``; see the module docstring for the steps."""

    def __init__(
        self,
        config: OCSortConfig | None = None,
        frame_rate: float = 30.0,
        kalman: KalmanFilterXYAH | None = None,
    ) -> None:
        self.config = config or OCSortConfig()
        self.history = self.config.delta_t + 1
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be > 0, got {frame_rate!r}")
        self.max_time_lost = int(frame_rate / 30.0 * self.config.max_age)
        self._setup(frame_rate, kalman)

    def _reference(self, rows: np.ndarray, frame: float | np.ndarray,
                   skip_last: bool) -> np.ndarray:
        """(len(rows), 4): each track's observation from ``delta_t`` frames before
        ``frame`` (one per row, or one for all): the oldest kept one within that
        window, else the last one."""
        t = self.tracks
        hist, when = t.hist[rows], t.hist_frame[rows]
        if skip_last:  # measure from before the newest observation
            hist, when = hist[:, :-1], when[:, :-1]
        if hist.shape[1] == 0:
            return t.boxes[rows].astype(np.float64)
        frame = np.broadcast_to(np.asarray(frame), (len(rows),))[:, None]
        inside = (when >= 0) & (when >= frame - self.config.delta_t) & (when < frame)
        first = np.argmax(inside, axis=1)
        ref = hist[np.arange(len(rows)), first]
        none = ~inside.any(axis=1)
        ref[none] = t.boxes[rows][none]
        return ref

    def _directions(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 2) unit direction of each track's recent observed motion
        (zeros for a track seen once)."""
        t = self.tracks
        last = t.boxes[rows].astype(np.float64)
        ref = self._reference(rows, t.last_frame[rows], skip_last=True)
        delta = (last[:, :2] + last[:, 2:] - ref[:, :2] - ref[:, 2:]) / 2
        norm = np.linalg.norm(delta, axis=1, keepdims=True)
        return np.where(norm > 1e-6, delta / np.maximum(norm, 1e-6), 0.0)

    def _re_update(self, rows: np.ndarray, cols: np.ndarray, dets: Detections,
                   frame: float) -> None:
        """ORU: rewind tracks re-found after a gap to their last observation and
        run the filter along a straight path of virtual observations, one per
        frame period, to the new one (the final real update happens with the
        others)."""
        t, kf = self.tracks, self.kalman
        for r, c in zip(rows, cols, strict=True):
            gap = float(frame - t.last_frame[r])
            steps = math.ceil(gap) - 1  # virtual observations strictly inside
            start = xyxy_to_xyah(t.boxes[r:r + 1])[0]
            end = xyxy_to_xyah(dets.xyxy[c:c + 1])[0]
            mean, cov = t.saved_mean[r:r + 1], t.saved_cov[r:r + 1]
            for k in range(1, steps + 1):
                mean, cov = kf.multi_predict(mean, cov)
                virtual = start + (end - start) * k / gap
                mean, cov = kf.multi_update(mean, cov, virtual[None])
            t.mean[r:r + 1], t.cov[r:r + 1] = kf.multi_predict(mean, cov,
                                                               gap - steps)

    def update(self, detections: Detections, *, timestamp: float,
               image: np.ndarray | None = None) -> Detections:
        cfg, dets = self.config, detections
        frame = self._advance(timestamp, image, dets.xyxy)
        t = self.tracks
        scores = dets.scores
        valid = valid_boxes(dets.xyxy)
        high = np.flatnonzero(valid & (scores >= cfg.det_thresh))
        low = np.flatnonzero(valid & (scores >= cfg.low_thresh)
                             & (scores < cfg.det_thresh))
        predicted = xyah_to_xyxy(t.mean)
        gate = 1.0 - cfg.iou_threshold * self.gate_scale
        all_rows = np.arange(len(t))
        matched_rows: list[np.ndarray] = []
        matched_cols: list[np.ndarray] = []

        # 1. High-score detections: IoU with the prediction + momentum agreement.
        iou = iou_cost(predicted, dets.xyxy[high],
                       self._margins(all_rows, predicted, frame))
        cost = iou
        if cfg.inertia and len(t) and len(high):
            ref = self._reference(all_rows, frame, skip_last=False)
            direction = direction_cost(self._directions(all_rows), ref,
                                       dets.xyxy[high])
            cost = iou + cfg.inertia * direction * scores[high][None, :]
        cost = np.where(iou <= gate, cost, 2.0)  # the gate is on IoU alone
        matches, free_rows, free_high = linear_assignment(cost, 1.5)
        matched_rows.append(matches[:, 0])
        matched_cols.append(high[matches[:, 1]])

        # 2. BYTE: low-score detections with the confirmed tracks still unmatched.
        if cfg.use_byte:
            rows = free_rows[t.state[free_rows] != TENTATIVE]
            cost = iou_cost(predicted[rows], dets.xyxy[low],
                            self._margins(rows, predicted, frame))
            matches, _, _ = linear_assignment(cost, gate)
            matched_rows.append(rows[matches[:, 0]])
            matched_cols.append(low[matches[:, 1]])
            free_rows = np.setdiff1d(free_rows, rows[matches[:, 0]])

        # 3. OCR: leftover high detections against the last observed boxes.
        left = high[free_high]
        cost = iou_cost(t.boxes[free_rows], dets.xyxy[left])
        matches, _, free_left = linear_assignment(cost, gate)
        matched_rows.append(free_rows[matches[:, 0]])
        matched_cols.append(left[matches[:, 1]])

        rows = np.concatenate(matched_rows)
        cols = np.concatenate(matched_cols)
        if cfg.oru:
            gap = frame - t.last_frame[rows] > 1
            self._re_update(rows[gap], cols[gap], dets, frame)
        t.mean[rows], t.cov[rows] = self.kalman.multi_update(
            t.mean[rows], t.cov[rows], xyxy_to_xyah(dets.xyxy[cols]))
        t.streak[self._streak_broken()] = 0  # missed last update: streak broken
        t.match(rows, dets, cols, frame)
        t.save_state(rows)
        confirm = (t.state[rows] != TENTATIVE) | (t.streak[rows] >= cfg.min_hits)
        t.state[rows[confirm]] = TRACKED
        unmatched = t.last_frame != frame
        t.state[unmatched & (t.state == TRACKED)] = LOST

        # Drop tentative tracks that missed and tracks unseen for too long.
        keep = ~(unmatched & (t.state == TENTATIVE))
        keep &= frame - t.last_frame <= self.max_time_lost
        t = t.take(keep)
        new = left[free_left]
        first = self.updates <= cfg.min_hits or cfg.min_hits <= 1
        t = t.extend(new_tracks(self.kalman, dets, new, self.next_id, frame,
                                TRACKED if first else TENTATIVE, self.history))
        self.next_id += len(new)
        self.tracks = t
        return self._report(frame)
