"""Polygon zones: occupancy per class, enter/exit with inertia, dwell, loitering."""

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
    points_in_polygon,
    polygon_area,
    resolve_classes,
    self_intersects,
)
from pipeline.analytics.tracks import TrackTable, first_per_track

INERTIA = 3
"""Default updates in a row inside (outside) before an object has entered
(exited), as Frigate's zone ``inertia``: a box on the edge flips in and out."""

EXIT_AFTER_S = 2.0
"""Default seconds a track inside may go unseen before it is taken as gone."""


class Zone:
    """A polygon zone over one source's frames.

    Every :meth:`update` takes one frame's detections and its timestamp and:

    - sets :attr:`occupancy` ``{class_id: n}``: the objects whose anchor lies in
      the polygon now, **tracked and untracked** alike (a count of what is
      there needs no identity), no inertia;
    - returns ``zone_enter`` / ``zone_exit`` / ``loiter`` events, for **tracked
      objects only** (``track_id >= 0``): an enter or a stay needs to know it is
      the same object from frame to frame.

    Enter and exit have inertia: ``inertia`` updates in a row with the track
    seen inside before it has entered, as many seen outside before it has
    exited, so a box on the edge gives one enter and one exit, not a flicker.
    Updates where the track is not detected neither advance nor break a run.

    Dwell is in seconds of the timestamps given, never frame counts, so it is
    the same at 10 fps, with every third frame, or with irregular drops. It runs
    from the timestamp of the first update of the run inside that led to the
    enter: the inertia updates count as time in the zone, because the object was
    there. On exit it runs to the first update of the run outside that led to the
    exit (again, the object was gone from then), so on a clean track it is the
    true stay to within one frame period. :attr:`dwell` gives the current stays.

    ``loiter_s``: one ``loiter`` event per track and zone, at the first update
    inside at which its dwell reaches ``loiter_s``; it carries the dwell.

    A track inside that is not seen for ``exit_after_s`` seconds is exited (its
    ``dwell_s`` then ends at the first update it was no longer seen) and
    forgotten.
    Event ``timestamp``/``frame`` are those of the update that decided the event.
    """

    def __init__(
        self,
        points: Sequence[Sequence[float]] | Sequence[float] | Points,
        name: str = "zone",
        *,
        anchor: str = "bottom",
        inertia: int = INERTIA,
        loiter_s: float | None = None,
        classes: Collection[int | str] | None = None,
        class_names: Sequence[str] | None = None,
        exit_after_s: float = EXIT_AFTER_S,
        source: str | None = None,
    ) -> None:
        self.name = check_name(name, "zone")
        what = f"zone {name!r}"
        self.points = (
            points
            if isinstance(points, Points)
            else parse_points(points, min_points=3, what=what)
        )
        if len(self.points) < 3:
            raise ValueError(f"{what}: needs at least 3 points, got {len(self.points)}")
        if self_intersects(self.points.xy):
            raise ValueError(
                f"{what}: the polygon {self.points.xy.tolist()} crosses itself; "
                "give its points in order around the edge"
            )
        if polygon_area(self.points.xy) == 0:
            raise ValueError(
                f"{what}: the points {self.points.xy.tolist()} enclose no area"
            )
        self.anchor = check_anchor(anchor)
        if (
            isinstance(inertia, bool)
            or not isinstance(inertia, (int, np.integer))
            or (inertia < 1)
        ):
            raise ValueError(f"{what}: inertia must be an int >= 1, got {inertia!r}")
        self.inertia = int(inertia)
        if loiter_s is not None and not (math.isfinite(loiter_s) and loiter_s > 0):
            raise ValueError(f"{what}: loiter_s must be > 0 seconds, got {loiter_s!r}")
        self.loiter_s = None if loiter_s is None else float(loiter_s)
        if not (math.isfinite(exit_after_s) and exit_after_s > 0):
            raise ValueError(
                f"{what}: exit_after_s must be > 0 seconds, got {exit_after_s!r}"
            )
        self.exit_after_s = float(exit_after_s)
        self.class_names = list(class_names) if class_names is not None else None
        self.classes = resolve_classes(classes, class_names, what)
        self.source = source
        self._polygon_cache: tuple[FrameSize, np.ndarray] | None = None
        # A row exists for a track from its first update inside until it has
        # exited, or vanished, or (never entered) is seen outside again.
        self._tracks = TrackTable(
            {
                "entered": (bool, False),
                "run_in": (np.int32, 0),  # updates in a row seen inside
                "run_out": (np.int32, 0),  # updates in a row seen outside
                "first_in": (np.float64, np.nan),  # start of the run inside
                "first_out": (np.float64, np.nan),  # start of the run outside
                "last_in": (np.float64, np.nan),
                "last_seen": (np.float64, np.nan),
                "first_missing": (np.float64, np.nan),  # first update not seen
                "class_id": (np.int32, -1),
            }
        )
        self.reset()

    def reset(self) -> None:
        """Forget every track, stay and loiter mark (a new video, a new clock)."""
        self._tracks.reset()
        # Tracks that loitered here -> when last seen: a track keeps its mark
        # (one loiter event per track and zone) until it has been gone a while.
        self._loitered: dict[int, float] = {}
        self._occupancy: dict[int, int] = {}
        self._last_t: float | None = None

    @property
    def occupancy(self) -> dict[int, int]:
        """``{class_id: n}`` objects inside at the last update (a copy)."""
        return dict(self._occupancy)

    @property
    def dwell(self) -> dict[int, float]:
        """``{track_id: seconds}`` for tracks that have entered and not exited,
        up to the last update's timestamp."""
        col = self._tracks.col
        entered = col["entered"]
        if self._last_t is None or not entered.any():
            return {}
        ids = self._tracks.ids[entered]
        stay = self._last_t - col["first_in"][entered]
        return {int(i): float(s) for i, s in zip(ids, stay, strict=True)}

    def polygon(self, frame_size: FrameSize) -> np.ndarray:
        """(K, 2) float64 pixel vertices for a frame of ``(width, height)``."""
        return self._polygon(check_frame_size(frame_size)).copy()

    def _polygon(self, frame_size: FrameSize) -> np.ndarray:
        cached = self._polygon_cache
        if cached is None or cached[0] != frame_size:
            cached = (frame_size, self.points.to_pixels(frame_size))
            self._polygon_cache = cached
        return cached[1]

    def contains(self, detections: Detections, frame_size: FrameSize) -> np.ndarray:
        """(N,) bool: whose anchor lies in the zone (class filter not applied)."""
        polygon = self._polygon(check_frame_size(frame_size))
        return points_in_polygon(anchor_points(detections.xyxy, self.anchor), polygon)

    def update(
        self,
        detections: Detections,
        timestamp: float,
        frame_size: FrameSize,
        *,
        frame: int | None = None,
    ) -> list[Event]:
        """Take one frame's detections; update occupancy; return its events.

        ``detections.xyxy`` are (N, 4) pixel boxes of a ``frame_size`` =
        ``(width, height)`` frame; ``timestamp`` is seconds on the source's clock
        (it must not go back); ``frame`` is the frame index the events carry.
        Call it for every processed frame, with or without detections, so
        vanished tracks are exited on time.
        """
        t = check_timestamp(timestamp, self._last_t, f"zone {self.name!r}")
        self._last_t = t
        keep = class_mask(detections.class_ids, self.classes)
        inside_all = self.contains(detections[keep], frame_size)
        classes_in = detections.class_ids[keep][inside_all]
        ids_in, counts = np.unique(classes_in, return_counts=True)
        self._occupancy = {int(c): int(n) for c, n in zip(ids_in, counts, strict=True)}

        tracked = detections.track_ids[keep] >= 0
        events: list[Event] = []
        if tracked.any():
            ids, first = first_per_track(detections.track_ids[keep][tracked])
            if self._loitered:
                for track_id in ids[np.isin(ids, list(self._loitered))]:
                    self._loitered[int(track_id)] = t
            inside = inside_all[tracked][first]
            cls = detections.class_ids[keep][tracked][first]
            self._step(ids, inside, cls, t, frame, events)
        self._expire(t, frame, events)
        return events

    def _step(self, ids, inside, cls, t, frame, events: list[Event]) -> None:
        table = self._tracks
        # Rows for every track inside now, and for tracks outside that have one.
        table.add(ids[inside])
        rows = table.find(ids)
        present = rows >= 0
        ids, inside = ids[present], inside[present]
        cls, rows = cls[present], rows[present]
        col = table.col
        col["last_seen"][rows] = t
        col["class_id"][rows] = cls
        entered = col["entered"][rows]

        # Inside: a run inside starts (or goes on); a run outside is broken.
        r_in = rows[inside]
        starts = col["run_in"][r_in] == 0
        col["first_in"][r_in[starts & ~entered[inside]]] = t
        col["run_in"][r_in] += 1
        col["run_out"][r_in] = 0
        col["first_out"][r_in] = np.nan
        col["last_in"][r_in] = t
        now_in = ~entered[inside] & (col["run_in"][r_in] >= self.inertia)
        col["entered"][r_in[now_in]] = True
        for row in r_in[now_in]:
            events.append(self._event("zone_enter", row, t, frame))

        # Outside: a run outside starts (or goes on); a run inside is broken.
        r_out = rows[~inside]
        was_in = entered[~inside]
        col["run_in"][r_out] = 0
        starts = col["run_out"][r_out] == 0
        col["first_out"][r_out[starts]] = t
        col["run_out"][r_out] += 1
        now_out = was_in & (col["run_out"][r_out] >= self.inertia)
        for row in r_out[now_out]:
            dwell = col["first_out"][row] - col["first_in"][row]
            events.append(self._event("zone_exit", row, t, frame, dwell))

        if self.loiter_s is not None:
            r = r_in[col["entered"][r_in]]
            stay = t - col["first_in"][r]
            for row, s in zip(
                r[stay >= self.loiter_s], stay[stay >= self.loiter_s], strict=True
            ):
                track_id = int(table.ids[row])
                if track_id not in self._loitered:
                    self._loitered[track_id] = t
                    events.append(self._event("loiter", row, t, frame, s))

        # Rows no longer needed: exited tracks, and tracks outside that never
        # entered (their run inside is over).
        table.drop(np.concatenate([r_out[now_out], r_out[~was_in]]))

    def _expire(self, t: float, frame: int | None, events: list[Event]) -> None:
        table = self._tracks
        col = table.col
        since = t - self.exit_after_s
        for track_id in [k for k, seen in self._loitered.items() if seen < since]:
            del self._loitered[track_id]
        seen = col["last_seen"] == t
        col["first_missing"][seen] = np.nan
        col["first_missing"][~seen & np.isnan(col["first_missing"])] = t
        gone = col["last_seen"] < since
        if not gone.any():
            return
        for row in np.flatnonzero(gone & col["entered"]):
            # It left at the first update it was seen outside, if it was, else
            # at the first update it was no longer seen: the same rule as a
            # clean exit, so a stay is exact to a frame period either way.
            end = col["first_out"][row]
            end = col["first_missing"][row] if np.isnan(end) else end
            dwell = end - col["first_in"][row]
            events.append(self._event("zone_exit", row, t, frame, dwell))
        table.drop(gone)

    def _event(
        self,
        kind: str,
        row: int,
        t: float,
        frame: int | None,
        dwell: float | None = None,
    ) -> Event:
        class_id = int(self._tracks.col["class_id"][row])
        names = self.class_names or []
        return Event(
            event=kind,
            source=self.source,
            frame=frame,
            timestamp=t,
            track_id=int(self._tracks.ids[row]),
            class_id=class_id,
            class_name=names[class_id] if 0 <= class_id < len(names) else None,
            zone=self.name,
            dwell_s=None if dwell is None else max(0.0, float(dwell)),
        )

    def __repr__(self) -> str:
        return (
            f"Zone({self.points.xy.tolist()}, {self.name!r}, anchor={self.anchor!r}, "
            f"inertia={self.inertia}, loiter_s={self.loiter_s})"
        )
