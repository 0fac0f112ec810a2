"""The tracker interface and the track table both trackers keep their state in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import numpy as np

from core.types import Detections
from pipeline.tracking.kalman import KalmanFilterXYAH, xyxy_to_xyah

# Track states (ByteTrack's): a tentative track waits for a second hit before it is
# reported; a lost one is kept, unreported, for a while so it can be re-found.
TENTATIVE, TRACKED, LOST = 0, 1, 2


class Tracker(ABC):
    """Gives objects identities across the frames of one source.

    One instance per source, used from one thread. ``update`` takes the frame's
    detections (xyxy pixels) and returns a NEW ``Detections`` of the objects
    tracked in this frame, with ``track_ids`` >= 1; the input is never modified.
    """

    @abstractmethod
    def update(self, detections: Detections) -> Detections:
        """Advance one frame; call once per frame, also when nothing was detected."""

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

    @classmethod
    def empty(cls) -> TrackTable:
        return cls(
            ids=np.zeros(0, np.int64),
            state=np.zeros(0, np.int8),
            mean=np.zeros((0, 8)),
            cov=np.zeros((0, 8, 8)),
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros(0, np.float32),
            class_ids=np.zeros(0, np.int32),
            start_frame=np.zeros(0, np.int64),
            last_frame=np.zeros(0, np.int64),
            hits=np.zeros(0, np.int32),
            streak=np.zeros(0, np.int32),
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
        self, rows: np.ndarray, dets: Detections, cols: np.ndarray, frame: int
    ) -> None:
        """Record that tracks ``rows`` were matched to detections ``cols`` this frame
        (box, score and class come from the detection; Kalman update is separate)."""
        self.boxes[rows] = dets.xyxy[cols]
        self.scores[rows] = dets.scores[cols]
        self.class_ids[rows] = dets.class_ids[cols]
        self.last_frame[rows] = frame
        self.hits[rows] += 1
        self.streak[rows] += 1

    def to_detections(self, rows: np.ndarray) -> Detections:
        return Detections(
            self.boxes[rows],
            self.scores[rows],
            self.class_ids[rows],
            self.ids[rows].astype(np.int32),
        )


def valid_boxes(xyxy: np.ndarray) -> np.ndarray:
    """(N,) bool: finite boxes with positive width and height (others can't be
    expressed as the Kalman filter's aspect/height measurement)."""
    wh = xyxy[:, 2:] - xyxy[:, :2]
    return np.isfinite(xyxy).all(1) & (wh > 0).all(1)


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
    frame: int,
    state: int,
) -> TrackTable:
    """Tracks started from detections ``cols``, ids ``first_id, first_id + 1, ...``."""
    n = len(cols)
    mean, cov = kalman.initiate(xyxy_to_xyah(dets.xyxy[cols]))
    frames = np.full(n, frame, np.int64)
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
    )
