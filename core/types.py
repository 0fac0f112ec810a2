"""The data that flows through every stage: Frame, Detections, Result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded image from a source.

    ``index`` is the 0-based frame number in its source (frames lost during an
    outage still advance it); ``timestamp`` is seconds from the source's own
    clock or decoder position; ``image`` is H×W×3 uint8 BGR, as OpenCV gives it.
    ``captured_at`` is ``time.perf_counter()`` when the frame was read, used for
    capture-to-sink latency. ``name``: the file a frame came from when a source
    reads many (image folders), so outputs map back to inputs.
    """

    source_id: str
    index: int
    timestamp: float
    image: np.ndarray
    captured_at: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
            shape = getattr(img, "shape", type(img).__name__)
            raise ValueError(f"Frame.image must be H×W×3, got {shape}")
        if img.dtype != np.uint8:
            raise ValueError(f"Frame.image must be uint8, got {img.dtype}")


@dataclass(frozen=True)
class Detections:
    """Objects found in one frame, as parallel arrays (one row per object).

    ``xyxy``: (N, 4) float32, x1 y1 x2 y2 in pixels of the original frame.
    ``scores``: (N,) float32. ``class_ids``: (N,) int32.
    ``track_ids``: (N,) int32, -1 until a tracker assigns one.
    Immutable in spirit: stages return new objects; ``dets[mask]`` selects rows.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    track_ids: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(xyxy)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        class_ids = np.asarray(self.class_ids, dtype=np.int32).reshape(-1)
        if self.track_ids is None:
            track_ids = np.full(n, -1, dtype=np.int32)
        else:
            track_ids = np.asarray(self.track_ids, dtype=np.int32).reshape(-1)
        for name, arr in (
            ("scores", scores),
            ("class_ids", class_ids),
            ("track_ids", track_ids),
        ):
            if len(arr) != n:
                raise ValueError(f"Detections.{name} has {len(arr)} rows, xyxy has {n}")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)
        object.__setattr__(self, "track_ids", track_ids)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | list[int]) -> Detections:
        """Rows selected by a boolean mask, an index array or a slice."""
        return Detections(
            self.xyxy[index],
            self.scores[index],
            self.class_ids[index],
            self.track_ids[index],
        )

    def with_track_ids(self, track_ids: np.ndarray) -> Detections:
        return Detections(self.xyxy, self.scores, self.class_ids, track_ids)

    @staticmethod
    def concatenate(parts: list[Detections]) -> Detections:
        if not parts:
            return Detections.empty()
        return Detections(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.class_ids for p in parts]),
            np.concatenate([p.track_ids for p in parts]),
        )


@dataclass(frozen=True)
class SceneCounts:
    """A source's line and zone counts as they stood after one frame.

    ``lines``: line name -> ``{(class_id, direction): crossings so far}`` with
    direction ``"in"`` or ``"out"``. ``zones``: zone name -> ``{class_id: objects
    inside now}``. Names in the order the lines and zones were configured.
    """

    lines: Mapping[str, Mapping[tuple[int, str], int]] = field(default_factory=dict)
    zones: Mapping[str, Mapping[int, int]] = field(default_factory=dict)

    def crossings(self, line: str, direction: str | None = None) -> int:
        """Crossings of one line so far, of one direction or both."""
        return sum(n for (_, d), n in self.lines.get(line, {}).items()
                   if direction is None or d == direction)

    def occupancy(self, zone: str) -> int:
        """Objects in one zone now, every class together."""
        return sum(self.zones.get(zone, {}).values())


@dataclass(frozen=True)
class Result:
    """A frame with its detections and what each stage cost (seconds by stage).

    ``image`` is the frame as drawn by the overlay stage (``frame.image`` when no
    overlay ran). ``predicted``: a frame between detections (``--detect-every``)
    whose boxes are the tracks' predictions. ``scene``: the source's line and zone
    counts after this frame (None when no analytics run). Sinks receive these.
    Stages return a new ``Result``
    (``dataclasses.replace``) rather than changing one in place.
    """

    frame: Frame
    detections: Detections
    timings: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = None
    predicted: bool = False  # boxes from the tracker's prediction, no detector run
    scene: SceneCounts | None = None

    @property
    def output_image(self) -> np.ndarray:
        return self.frame.image if self.image is None else self.image
