"""The tracker interface, and the track table and clock the Kalman-filter
trackers (ByteTrack, OC-SORT, SORT) share."""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import numpy as np

from core.types import Detections
from pipeline.tracking.kalman import (
    KalmanFilterXYAH,
    warp_state,
    xyah_to_xyxy,
    xyxy_to_xyah,
)

log = logging.getLogger(__name__)

# Track states (ByteTrack's): a tentative track waits for a second hit before it is
# reported; a lost one is kept, unreported, for a while so it can be re-found.
TENTATIVE, TRACKED, LOST = 0, 1, 2

# An interval within this fraction of a frame period of a whole number of periods
# counts as exactly that many: container clocks round (1 ms is 3% of a 30 FPS
# period) and wall clocks jitter, and a regular stream should track exactly as a
# frame counter would.
SNAP_PERIODS = 0.1


class Tracker(ABC):
    """Gives objects identities across the frames of one source.

    One instance per source, used from one thread. ``update`` takes the frame's
    detections (xyxy pixels) and returns a NEW ``Detections`` of the objects
    tracked in this frame, with ``track_ids`` >= 1; the input is never modified.
    ``timestamp`` is the frame's time in seconds on the source's clock: motion is
    predicted, and lost tracks age, by the time that really passed, so frames a
    live source dropped or an outage do not slow the tracks down. ``image``
    (H x W x 3 BGR) is used by trackers built with camera-motion compensation and
    ignored by the others.
    """

    @abstractmethod
    def update(self, detections: Detections, *, timestamp: float,
               image: np.ndarray | None = None) -> Detections:
        """Advance to the frame at ``timestamp`` and match its detections; call
        once per frame, also when nothing was detected."""

    @abstractmethod
    def predict(self, *, timestamp: float, image: np.ndarray | None = None
                ) -> Detections:
        """Advance to the frame at ``timestamp`` without detections (a frame the
        detector skipped): the tracks move on with their motion model and their
        predicted boxes come back with ``track_ids`` set (scores and classes from
        their last match). The next ``update`` continues from there."""

    @abstractmethod
    def reset(self) -> None:
        """Forget every track and restart ids at 1 (e.g. before a new source)."""


@dataclass
class TrackTable:
    """All live tracks as parallel arrays (one row per track), so Kalman predict and
    update run once per frame over every track instead of once per object.

    ``mean`` (T, 8) / ``cov`` (T, 8, 8): Kalman state over (cx, cy, aspect w/h, h)
    and their velocities. ``boxes`` (T, 4) xyxy of the last matched detection;
    ``scores``/``class_ids`` from it too. ``last_frame``: frame number of the last
    match; ``hits``: matches so far; ``streak``: consecutive matched frames.
    """

    ids: np.ndarray
    state: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    start_frame: np.ndarray
    last_frame: np.ndarray
    hits: np.ndarray
    streak: np.ndarray
    hist: np.ndarray
    hist_frame: np.ndarray
    saved_mean: np.ndarray
    saved_cov: np.ndarray

    @classmethod
    def empty(cls, history: int = 1) -> TrackTable:
        return cls(
            ids=np.zeros(0, np.int64),
            state=np.zeros(0, np.int8),
            mean=np.zeros((0, 8)),
            cov=np.zeros((0, 8, 8)),
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros(0, np.float32),
            class_ids=np.zeros(0, np.int32),
            start_frame=np.zeros(0),
            last_frame=np.zeros(0),
            hits=np.zeros(0, np.int32),
            streak=np.zeros(0, np.int32),
            hist=np.zeros((0, history, 4)),
            hist_frame=np.zeros((0, history)),
            saved_mean=np.zeros((0, 8)),
            saved_cov=np.zeros((0, 8, 8)),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray) -> TrackTable:
        """Rows selected by a boolean mask or index array (a new table)."""
        return TrackTable(
            **{f.name: getattr(self, f.name)[index] for f in fields(self)}
        )

    def extend(self, other: TrackTable) -> TrackTable:
        return TrackTable(
            **{
                f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)])
                for f in fields(self)
            }
        )

    def match(
        self, rows: np.ndarray, dets: Detections, cols: np.ndarray, frame: float
    ) -> None:
        """Record that tracks ``rows`` were matched to detections ``cols`` this frame
        (box, score and class come from the detection; Kalman update is separate)."""
        self.boxes[rows] = dets.xyxy[cols]
        self.scores[rows] = dets.scores[cols]
        self.class_ids[rows] = dets.class_ids[cols]
        self.last_frame[rows] = frame
        self.hits[rows] += 1
        self.streak[rows] += 1
        self.hist[rows, :-1] = self.hist[rows, 1:]
        self.hist_frame[rows, :-1] = self.hist_frame[rows, 1:]
        self.hist[rows, -1] = dets.xyxy[cols]
        self.hist_frame[rows, -1] = frame

    def save_state(self, rows: np.ndarray) -> None:
        """Remember the Kalman state of ``rows`` (just corrected by a match)."""
        self.saved_mean[rows] = self.mean[rows]
        self.saved_cov[rows] = self.cov[rows]

    def to_detections(self, rows: np.ndarray, predicted: bool = False) -> Detections:
        """Detections of ``rows``: their last matched boxes, or with ``predicted``
        the Kalman filter's current boxes (predicted, or corrected after a match)."""
        boxes = xyah_to_xyxy(self.mean[rows]).astype(np.float32) if predicted \
            else self.boxes[rows]
        return Detections(
            boxes,
            self.scores[rows],
            self.class_ids[rows],
            self.ids[rows].astype(np.int32),
        )


def valid_boxes(xyxy: np.ndarray) -> np.ndarray:
    """(N,) bool: finite boxes with positive width and height (others can't be
    expressed as the Kalman filter's aspect/height measurement)."""
    wh = xyxy[:, 2:] - xyxy[:, :2]
    return np.isfinite(xyxy).all(1) & (wh > 0).all(1)


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def check_positive(name: str, value: float) -> None:
    if not float(value) > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_fraction(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def check_non_negative_int(name: str, value: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def new_tracks(
    kalman: KalmanFilterXYAH,
    dets: Detections,
    cols: np.ndarray,
    first_id: int,
    frame: float,
    state: int,
    history: int = 1,
) -> TrackTable:
    """Tracks started from detections ``cols``, ids ``first_id, first_id + 1, ...``,
    at clock time ``frame``."""
    n = len(cols)
    mean, cov = kalman.initiate(xyxy_to_xyah(dets.xyxy[cols]))
    frames = np.full(n, float(frame))
    hist = np.zeros((n, history, 4))
    hist[:, -1] = dets.xyxy[cols]
    hist_frame = np.full((n, history), -1.0)
    hist_frame[:, -1] = frame
    return TrackTable(
        ids=np.arange(first_id, first_id + n, dtype=np.int64),
        state=np.full(n, state, np.int8),
        mean=mean,
        cov=cov,
        boxes=dets.xyxy[cols],
        scores=dets.scores[cols],
        class_ids=dets.class_ids[cols],
        start_frame=frames,
        last_frame=frames.copy(),
        hits=np.ones(n, np.int32),
        streak=np.ones(n, np.int32),
        hist=hist,
        hist_frame=hist_frame,
        saved_mean=mean.copy(),
        saved_cov=cov.copy(),
    )


class KalmanTracker(Tracker):
    """What the Kalman-filter trackers share: the track table, the clock and the id
    counter, camera-motion compensation and the predict step.

    The clock ``now`` counts nominal frame periods (1 / ``frame_rate``) from 1 on
    the first frame, advanced by each frame's timestamp: on a regular stream it
    is the frame number, and the frame counts in the configs (lost-track buffers,
    coasting, OC-SORT's ``delta_t``) are times at the nominal rate.

    Subclasses set ``config`` (with a ``cmc`` field) and ``max_time_lost`` (clock
    periods a track may go unmatched) before calling ``_setup``, and implement
    ``update`` by calling ``_advance`` first. A track whose ``state`` is TRACKED is
    reported by ``predict``.
    """

    history = 1  # observations kept per track (OC-SORT needs more)
    max_time_lost: float

    def _setup(self, frame_rate: float, kalman: KalmanFilterXYAH | None) -> None:
        from pipeline.tracking.cmc import CameraMotion

        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be > 0, got {frame_rate!r}")
        self.frame_rate = float(frame_rate)
        # Below 30 FPS objects move further between frames, so a prediction
        # overlaps its detection less: OC-SORT relaxes its IoU gate by this
        # (benchmark low_fps family; at 30 FPS and above nothing changes).
        self.gate_scale = min(self.frame_rate / 30.0, 1.0) ** 0.5
        # Velocity noise is given per frame at 30 FPS: at a lower frame rate more
        # acceleration happens between two frames (benchmark low_fps family).
        self.kalman = kalman or KalmanFilterXYAH(
            getattr(self.config, "kalman_position_noise", 1.0 / 20),
            getattr(self.config, "kalman_velocity_noise", 1.0 / 160)
            * max(30.0 / self.frame_rate, 1.0),
        )
        cmc = getattr(self.config, "cmc", "none")
        self.camera = None if cmc == "none" else CameraMotion(cmc)
        self.reset()

    def reset(self) -> None:
        self.tracks = TrackTable.empty(self.history)
        self.now = 0.0
        self.last_timestamp: float | None = None
        self.clock_warned = False
        self.next_id = 1
        self.updates = 0  # update calls so far (predict-only frames not counted)
        self.frames_since_update = 0
        self.previous_update = 0.0  # clock time of the last update call
        if self.camera is not None:
            self.camera.reset()

    def _elapsed(self, timestamp: float) -> float:
        """Nominal frame periods since the previous frame: 1 on the first frame,
        and when the clock did not move forward (a camera clock reset or a
        repeated timestamp), so the tracker still advances."""
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be a finite number of seconds, "
                             f"got {timestamp!r}")
        last, self.last_timestamp = self.last_timestamp, float(timestamp)
        if last is None:
            return 1.0
        periods = (timestamp - last) * self.frame_rate
        if periods <= 0:
            if not self.clock_warned:
                log.warning("tracker: timestamp %.6f s is not after the previous "
                            "one (%.6f s); counting one frame period", timestamp,
                            last)
                self.clock_warned = True
            return 1.0
        whole = round(periods)
        if whole >= 1 and abs(periods - whole) <= SNAP_PERIODS:
            return float(whole)
        return periods

    def _advance(self, timestamp: float, image: np.ndarray | None,
                 boxes: np.ndarray | None) -> float:
        """Next frame: move the clock by the frame's timestamp, forget tracks a
        gap in time made too old (on an update), compensate camera motion, then
        predict every track to this frame (``_before_predict`` may adjust lost
        tracks first). Returns the new clock time. ``boxes`` is None for a
        predict-only frame."""
        dt = self._elapsed(timestamp)
        self.now += dt
        self.frames_since_update += 1
        if boxes is not None:
            self.updates += 1
            self._forget_after_gap()
            self.frames_since_update = 0
        t = self.tracks
        if self.camera is not None:
            affine = self.camera.estimate(image, boxes)
            if not np.allclose(affine, np.eye(2, 3)):
                t.mean, t.cov = warp_state(t.mean, t.cov, affine)
                t.saved_mean, t.saved_cov = warp_state(t.saved_mean, t.saved_cov,
                                                       affine)
                corners = t.hist.reshape(-1, 2, 2)
                t.hist = (corners @ affine[:, :2].T + affine[:, 2]).reshape(
                    t.hist.shape)
                b = t.boxes.astype(np.float64).reshape(-1, 2, 2)
                t.boxes = (b @ affine[:, :2].T + affine[:, 2]).reshape(-1, 4).astype(
                    np.float32)
        self._before_predict(dt)
        t.mean, t.cov = self.kalman.multi_predict(t.mean, t.cov, dt)
        return self.now

    def _forget_after_gap(self) -> None:
        """Before matching: drop tracks that a gap in time took past their lost
        time. The previous update kept tracks lost for at most ``max_time_lost``;
        time beyond one period per frame since then (an outage, frames a live
        source dropped) is lost time too. On a regular stream there is none, and
        frames the detector skipped count as they always did."""
        t = self.tracks
        lost = self.now - t.last_frame - self.frames_since_update
        expired = lost > self.max_time_lost
        if expired.any():
            self.tracks = t.take(~expired)

    def _before_predict(self, dt: float) -> None:
        """Hook: change track states before a prediction ``dt`` periods ahead."""

    def _margins(self, rows: np.ndarray, predicted: np.ndarray, frame: float
                 ) -> np.ndarray | None:
        """Buffered-IoU margins (px) of tracks ``rows``: grow with time lost."""
        if not getattr(self.config, "lost_buffer", 0.0):
            return None
        t = self.tracks
        missed = np.maximum(frame - t.last_frame[rows] - 1, 0)
        size = (predicted[rows, 2:] - predicted[rows, :2]).sum(1) / 2
        return self.config.lost_buffer * missed * size

    def _report(self, frame: float) -> Detections:
        """Tracks matched this frame (their detection boxes, or the filter's
        corrected ones with ``smooth_boxes``), then confirmed tracks missing for at
        most ``report_lost`` periods (their predicted boxes)."""
        t = self.tracks
        shown = np.flatnonzero((t.state == TRACKED) & (t.last_frame == frame))
        smooth = getattr(self.config, "smooth_boxes", False)
        if not getattr(self.config, "report_lost", 0):
            return t.to_detections(shown, predicted=smooth)
        coasting = np.flatnonzero(
            (t.state == LOST) & (frame - t.last_frame <= self.config.report_lost))
        a = t.to_detections(shown, predicted=smooth)
        b = t.to_detections(coasting, predicted=True)
        return Detections(
            np.concatenate([a.xyxy, b.xyxy]), np.concatenate([a.scores, b.scores]),
            np.concatenate([a.class_ids, b.class_ids]),
            np.concatenate([a.track_ids, b.track_ids]))

    def _streak_broken(self) -> np.ndarray:
        """(T,) bool: tracks not matched in the previous update (predict-only frames
        in between do not break a streak)."""
        broken = self.tracks.last_frame != self.previous_update
        self.previous_update = self.now
        return broken

    def predict(self, *, timestamp: float, image: np.ndarray | None = None
                ) -> Detections:
        """The tracks ``update`` would report (tracked, and confirmed ones coasting
        for at most ``report_lost`` periods), all at their predicted boxes, so a
        track does not flicker off on the frames the detector skips."""
        frame = self._advance(timestamp, image, None)
        t = self.tracks
        keep = t.state == TRACKED
        report_lost = getattr(self.config, "report_lost", 0)
        if report_lost:
            keep |= (t.state == LOST) & (frame - t.last_frame <= report_lost)
        return t.to_detections(np.flatnonzero(keep), predicted=True)
