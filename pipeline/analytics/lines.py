"""Counting tracked objects that cross a line segment, by class and direction."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np

from core.events import Event
from core.types import Detections
from pipeline.analytics.geometry import (
    FrameSize,
    Points,
    anchor_points,
    check_anchor,
    check_frame_size,
    check_name,
    check_timestamp,
    class_mask,
    parse_points,
    resolve_classes,
)
from pipeline.analytics.tracks import TrackTable, first_per_track

MARGIN_FRACTION = 0.01
"""Default hysteresis margin as a fraction of the frame diagonal (about 8 px at
640×480, 22 px at 1920×1080): wider than a detector's frame-to-frame jitter of
a standing person's feet, narrower than any real step across the line."""

FORGET_AFTER_S = 10.0
"""Seconds after which a track not seen is forgotten. Long enough to bridge the
gaps trackers keep tracks alive through, short enough to bound the memory."""


class LineCounter:
    """Counts tracked objects whose anchor crosses the segment A→B.

    Directions: turn the arrow A→B by 90° clockwise *on the screen* (y pointing
    down); that arrow points to the ``in`` side. A line drawn left to right
    counts objects moving down the image as ``in``; one drawn top to bottom
    counts objects moving right to left as ``in``. Swap A and B to swap them.

    What counts, and why:

    - only tracked boxes (``track_id >= 0``): an untracked box has no past, so
      counting it counts every frame it appears in (supervision#2578);
    - hysteresis: a track's side only changes once its anchor is seen beyond
      ``margin`` pixels from the line; it counts when it is seen clearly on one
      side and later clearly on the other, so an anchor jittering on the line
      counts nothing, and a track that really goes back counts ``out`` after
      ``in``;
    - the segment, not the infinite line: the straight path from the last
      position clearly on the old side to the first clearly on the new side must
      meet the line between A and B (ends included). Walking round an end of the
      segment counts nothing;
    - gaps: the same path test bridges frames where the track was not detected,
      whether the tracker sent predicted boxes meanwhile or nothing at all, so a
      crossing during a gap counts once;
    - ``classes`` (ids, or names looked up in ``class_names``): boxes of other
      classes are ignored.

    State is per track id in NumPy arrays; tracks not seen for
    ``forget_after_s`` seconds are forgotten, so memory stays bounded on a
    camera that runs for months.
    """

    def __init__(
        self,
        points: Sequence[Sequence[float]] | Points,
        name: str = "line",
        *,
        anchor: str = "bottom",
        classes: Collection[int | str] | None = None,
        class_names: Sequence[str] | None = None,
        margin: float | None = None,
        forget_after_s: float = FORGET_AFTER_S,
        source: str | None = None,
    ) -> None:
        self.name = check_name(name, "line")
        what = f"line {name!r}"
        self.points = (
            points
            if isinstance(points, Points)
            else parse_points(points, min_points=2, max_points=2, what=what)
        )
        if len(self.points) != 2:
            raise ValueError(f"{what}: takes 2 points, got {len(self.points)}")
        self.anchor = check_anchor(anchor)
        self.class_names = list(class_names) if class_names is not None else None
        self.classes = resolve_classes(classes, class_names, what)
        if margin is not None and not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"{what}: margin must be >= 0 pixels, got {margin!r}")
        self.margin = margin
        if not (math.isfinite(forget_after_s) and forget_after_s > 0):
            raise ValueError(
                f"{what}: forget_after_s must be > 0 seconds, got {forget_after_s!r}"
            )
        self.forget_after_s = float(forget_after_s)
        self.source = source
        self._geometry_cache: tuple[FrameSize, tuple] | None = None
        # side: -1 / +1 once seen clearly on a side, 0 before; ref: the anchor's
        # latest position clearly on that side (where a crossing path starts).
        self._tracks = TrackTable(
            {
                "side": (np.int8, 0),
                "ref_x": (np.float64, np.nan),
                "ref_y": (np.float64, np.nan),
                "last_seen": (np.float64, np.nan),
            }
        )
        self.reset()

    def reset(self) -> None:
        """Forget every track and zero the counts (a new video, a restarted clock)."""
        self._tracks.reset()
        self._counts: dict[tuple[int, str], int] = {}
        self._last_t: float | None = None

    @property
    def counts(self) -> dict[tuple[int, str], int]:
        """Crossings so far as ``{(class_id, direction): n}`` (a copy)."""
        return dict(self._counts)

    def count(self, direction: str | None = None, class_id: int | None = None) -> int:
        """Crossings so far, optionally of one direction and/or one class."""
        return sum(
            n
            for (c, d), n in self._counts.items()
            if (direction is None or d == direction)
            and (class_id is None or c == class_id)
        )

    def geometry(self, frame_size: FrameSize) -> tuple[np.ndarray, np.ndarray, float]:
        """``(A, B, margin)`` in pixels for a frame of ``(width, height)``."""
        return self._geometry(check_frame_size(frame_size))[:3]

    def _geometry(self, frame_size: FrameSize) -> tuple:
        cached = self._geometry_cache
        if cached is not None and cached[0] == frame_size:
            return cached[1]
        a, b = self.points.to_pixels(frame_size)
        length = float(np.hypot(*(b - a)))
        if length == 0:
            raise ValueError(
                f"line {self.name!r}: both ends are the same point {a.tolist()} "
                f"in a {frame_size[0]}x{frame_size[1]} frame"
            )
        margin = (
            self.margin
            if self.margin is not None
            else MARGIN_FRACTION * math.hypot(*frame_size)
        )
        geom = (a, b, margin, length)
        self._geometry_cache = (frame_size, geom)
        return geom

    def update(
        self,
        detections: Detections,
        timestamp: float,
        frame_size: FrameSize,
        *,
        frame: int | None = None,
    ) -> list[Event]:
        """Take one frame's tracked detections; return the crossings it completed.

        ``detections.xyxy`` are (N, 4) pixel boxes of a ``frame_size`` =
        ``(width, height)`` frame; ``timestamp`` is seconds on the source's clock
        (it must not go back); ``frame`` is the frame index the events carry.
        Call it for every processed frame, with or without detections, so tracks
        that left are forgotten on time.
        """
        t = check_timestamp(timestamp, self._last_t, f"line {self.name!r}")
        self._last_t = t
        a, b, margin, length = self._geometry(check_frame_size(frame_size))
        keep = (detections.track_ids >= 0) & class_mask(
            detections.class_ids, self.classes
        )
        events: list[Event] = []
        if keep.any():
            ids, first = first_per_track(detections.track_ids[keep])
            xy = anchor_points(detections.xyxy[keep][first], self.anchor)
            cls = detections.class_ids[keep][first]
            events = self._step(ids, xy, cls, t, frame, a, b, margin, length)
        table = self._tracks
        table.drop(table.col["last_seen"] < t - self.forget_after_s)
        return events

    def _step(self, ids, xy, cls, t, frame, a, b, margin, length) -> list[Event]:
        table = self._tracks
        col = table.col
        ab = b - a
        # Signed distance to the line, positive on the `in` side (the side the
        # clockwise-turned arrow points to, with y down).
        dist = (ab[0] * (xy[:, 1] - a[1]) - ab[1] * (xy[:, 0] - a[0])) / length
        side_now = np.where(dist > margin, 1, np.where(dist < -margin, -1, 0))
        rows = table.add(ids)
        side_old = col["side"][rows]
        flipped = (side_now != 0) & (side_old != 0) & (side_now != side_old)
        events: list[Event] = []
        if flipped.any():
            p0 = np.stack([col["ref_x"][rows[flipped]], col["ref_y"][rows[flipped]]], 1)
            p1 = xy[flipped]
            d0 = (ab[0] * (p0[:, 1] - a[1]) - ab[1] * (p0[:, 0] - a[0])) / length
            d1 = dist[flipped]
            # Where the straight path p0 -> p1 meets the infinite line, as a
            # position along A->B (0 at A, 1 at B); d0 and d1 have opposite signs.
            w = d0 / (d0 - d1)
            meet = p0 + w[:, None] * (p1 - p0)
            along = ((meet - a) @ ab) / (length * length)
            on_segment = (along >= 0) & (along <= 1)
            for i in np.flatnonzero(flipped)[on_segment]:
                direction = "in" if side_now[i] > 0 else "out"
                class_id = int(cls[i])
                key = (class_id, direction)
                self._counts[key] = self._counts.get(key, 0) + 1
                events.append(
                    Event(
                        event="line_cross",
                        source=self.source,
                        frame=frame,
                        timestamp=t,
                        track_id=int(ids[i]),
                        class_id=class_id,
                        class_name=self._class_name(class_id),
                        line=self.name,
                        direction=direction,
                    )
                )
        clear = side_now != 0
        col["side"][rows[clear]] = side_now[clear]
        col["ref_x"][rows[clear]] = xy[clear, 0]
        col["ref_y"][rows[clear]] = xy[clear, 1]
        col["last_seen"][rows] = t
        return events

    def _class_name(self, class_id: int) -> str | None:
        names = self.class_names
        return names[class_id] if names is not None and class_id < len(names) else None

    def __repr__(self) -> str:
        return (
            f"LineCounter({self.points.xy.tolist()}, {self.name!r}, "
            f"anchor={self.anchor!r}, counts={self._counts})"
        )
