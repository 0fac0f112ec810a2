"""Analytics in the pipeline: the typed ``AnalyticsConfig``, the per-source
``Analyze`` stage between track and overlay, and ``EventLog``, the place its
events go (one JSON line per event in ``OUT/SOURCE.events.jsonl``, then the
Python API's callbacks).

``Analyze`` only sees a ``publish(event)`` function, so where events go is
decided by the builder alone.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TypeVar

from core.events import Event
from core.types import Result, SceneCounts
from pipeline.analytics.geometry import (
    ShapeSpec,
    check_anchor,
    parse_line_spec,
    parse_zone_spec,
)
from pipeline.analytics.lines import LineCounter
from pipeline.analytics.zones import INERTIA, Zone
from pipeline.metrics import Metrics
from pipeline.tracking import RECOMMENDED_TRACKER

log = logging.getLogger(__name__)

Publish = Callable[[Event], None]
EventCallback = Callable[[Event], None]
LineSpec = str | ShapeSpec | LineCounter
ZoneSpec = str | ShapeSpec | Zone
T = TypeVar("T")


def _line(spec: LineSpec) -> ShapeSpec | LineCounter:
    return parse_line_spec(spec) if isinstance(spec, str) else spec


def _zone(spec: ZoneSpec) -> ShapeSpec | Zone:
    return parse_zone_spec(spec) if isinstance(spec, str) else spec


@dataclass(frozen=True)
class AnalyticsConfig:
    """Lines and zones of every source (the flags are the one-source shorthand).

    ``lines`` / ``zones``: shorthand strings (``"X1,Y1,X2,Y2:NAME"``), parsed
    ``ShapeSpec``s, or ready ``LineCounter`` / ``Zone`` objects, which serve as
    templates: each source gets its own copy, so the state of one camera never
    leaks into another's counts. ``anchor``, ``zone_inertia``, ``loiter_s``,
    ``line_classes`` and ``zone_classes`` (ids or names, resolved with the
    detector's class names) apply to the lines and zones given as specs.
    """

    lines: tuple[ShapeSpec | LineCounter, ...] = ()
    zones: tuple[ShapeSpec | Zone, ...] = ()
    anchor: str = "bottom"
    zone_inertia: int = INERTIA
    loiter_s: float | None = None
    line_classes: tuple[int | str, ...] | None = None
    zone_classes: tuple[int | str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(_line(s) for s in self.lines))
        object.__setattr__(self, "zones", tuple(_zone(s) for s in self.zones))
        check_anchor(self.anchor)
        if isinstance(self.zone_inertia, bool) or not (
                isinstance(self.zone_inertia, int) and self.zone_inertia >= 1):
            raise ValueError(f"--zone-inertia must be an integer >= 1, got "
                             f"{self.zone_inertia!r}")
        if self.loiter_s is not None and not (
                math.isfinite(self.loiter_s) and self.loiter_s > 0):
            raise ValueError(f"--loiter must be > 0 seconds, got {self.loiter_s!r}")
        for flag, names in (("--line", [s.name for s in self.lines]),
                            ("--zone", [s.name for s in self.zones])):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{flag} name {twice[0]!r} is given twice; "
                                 "name each one (X,Y,...:NAME)")

    @classmethod
    def of(cls, lines: Sequence[LineSpec] | None = None,
           zones: Sequence[ZoneSpec] | None = None, **options: object
           ) -> AnalyticsConfig:
        """From lists of specs; shapes left unnamed are numbered (``line``,
        ``line_2``, ...) so several of them stay apart in events and metrics."""
        return cls(lines=tuple(_numbered([_line(s) for s in lines or ()], "line")),
                   zones=tuple(_numbered([_zone(s) for s in zones or ()], "zone")),
                   **options)  # type: ignore[arg-type]

    @property
    def enabled(self) -> bool:
        return bool(self.lines or self.zones)

    def shapes(self) -> tuple[list[ShapeSpec], list[ShapeSpec]]:
        """Names and points of the lines and of the zones, for drawing."""
        return ([ShapeSpec(s.name, s.points) for s in self.lines],
                [ShapeSpec(s.name, s.points) for s in self.zones])

    def build(self, source_id: str, class_names: Sequence[str]
              ) -> tuple[list[LineCounter], list[Zone]]:
        """Fresh line counters and zones for one source."""
        names = list(class_names)
        lines = [_copy_for(s, source_id) if isinstance(s, LineCounter) else
                 LineCounter(s.points, s.name, anchor=s.anchor or self.anchor,
                             classes=_either(s.classes, self.line_classes),
                             class_names=names, source=source_id)
                 for s in self.lines]
        zones = [_copy_for(s, source_id) if isinstance(s, Zone) else
                 Zone(s.points, s.name, anchor=s.anchor or self.anchor,
                      inertia=_either(s.inertia, self.zone_inertia),
                      loiter_s=_either(s.loiter_s, self.loiter_s),
                      classes=_either(s.classes, self.zone_classes),
                      class_names=names, source=source_id)
                 for s in self.zones]
        return lines, zones


def _either(own: T | None, default: T) -> T:
    """A shape's own option, else the config's."""
    return default if own is None else own


def _numbered(specs: list, base: str) -> list:
    """Default-named specs renamed ``base``, ``base_2``, ... in order."""
    taken = {s.name for s in specs if s.name != base}
    out, n = [], 0
    for spec in specs:
        if isinstance(spec, ShapeSpec) and spec.name == base:
            n += 1
            name = base if n == 1 else f"{base}_{n}"
            while name in taken:
                n += 1
                name = f"{base}_{n}"
            taken.add(name)
            spec = replace(spec, name=name)
        out.append(spec)
    return out


def _copy_for(template: LineCounter | Zone, source_id: str) -> LineCounter | Zone:
    shape = copy.deepcopy(template)
    shape.reset()
    shape.source = source_id
    return shape


def choose_tracker(tracker: str | None, analytics: AnalyticsConfig) -> str:
    """The tracker a run uses: the one named, else the recommended one when
    lines or zones need identities, else none. ``"none"`` with lines or zones
    is a ValueError naming both."""
    if tracker is None:
        if not analytics.enabled:
            return "none"
        log.info("lines and zones count tracked objects: using the recommended "
                 "tracker %s (--tracker to choose another)", RECOMMENDED_TRACKER)
        return RECOMMENDED_TRACKER
    if tracker.lower() == "none" and analytics.enabled:
        raise ValueError("--tracker none cannot be used with --line/--zone: lines "
                         "and zones count tracked objects (leave --tracker out for "
                         f"{RECOMMENDED_TRACKER})")
    return tracker


class Analyze:
    """Runs one source's lines and zones on every processed frame (frames the
    detector skipped included: their boxes are the tracks' predictions, so a
    crossing in a detection gap counts once), publishes their events, keeps
    the counts in ``metrics`` and puts them on the ``Result`` for the overlay.
    Touched by one thread only, as the tracker is."""

    def __init__(self, source_id: str, lines: Sequence[LineCounter],
                 zones: Sequence[Zone], publish: Publish, metrics: Metrics,
                 close: Callable[[], None] | None = None) -> None:
        self.source_id = source_id
        self.lines, self.zones = list(lines), list(zones)
        self.publish, self.metrics = publish, metrics
        self._close = close

    def __call__(self, result: Result) -> Result:
        started = time.perf_counter()
        frame = result.frame
        size = (frame.image.shape[1], frame.image.shape[0])
        dets, t, index = result.detections, frame.timestamp, frame.index
        events: list[Event] = []
        for line in self.lines:
            events += line.update(dets, t, size, frame=index)
        for zone in self.zones:
            events += zone.update(dets, t, size, frame=index)
        scene = SceneCounts({line.name: line.counts for line in self.lines},
                            {zone.name: zone.occupancy for zone in self.zones})
        self.metrics.record_scene(self.source_id, scene)
        for event in events:
            self.publish(event)
        elapsed = time.perf_counter() - started
        self.metrics.record("analytics", elapsed)
        return replace(result, scene=scene,
                       timings={**result.timings, "analytics": elapsed})

    def close(self) -> None:
        """Release where the events went (once the source has ended)."""
        if self._close is not None:
            close, self._close = self._close, None
            close()


class EventLog:
    """Where one source's events go until the shared event fan-out takes over:
    each event as one JSON line in ``file`` (flushed, so a kill loses none) and
    then to every callback. A callback that raises stops the run with its
    traceback, as a failing sink does."""

    def __init__(self, file: IO[str] | None,
                 callbacks: Collection[EventCallback] = ()) -> None:
        self.file, self.callbacks = file, callbacks
        self._lock = threading.Lock()  # a stop may close while a frame publishes

    @classmethod
    def open(cls, path: Path | None, callbacks: Collection[EventCallback] = ()
             ) -> EventLog:
        """Writes ``path`` afresh, as the run's other outputs are (None:
        callbacks only)."""
        if path is None:
            return cls(None, callbacks)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("w", encoding="utf-8"), callbacks)

    def publish(self, event: Event) -> None:
        with self._lock:
            if self.file is not None:
                self.file.write(event.to_json() + "\n")
                self.file.flush()
        for callback in self.callbacks:
            callback(event)

    def close(self) -> None:
        with self._lock:
            if self.file is not None:
                self.file.close()
                self.file = None
