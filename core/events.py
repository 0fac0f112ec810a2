"""The one event type every analytics object emits and every receiver takes.

Line crossings, zone entries and exits, loitering and source state changes all
travel as :class:`Event`, so one fan-out (JSON Lines file, webhook, MQTT, Python
callbacks, the API's event stream) handles them all without a type switch.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

EVENT_KINDS = frozenset(
    {
        "line_cross",
        "zone_enter",
        "zone_exit",
        "loiter",
        "source_down",
        "source_up",
        "source_added",
        "source_removed",
    }
)
DIRECTIONS = ("in", "out")

# The place an event needs, by kind: a crossing names its line, the zone kinds
# their zone; receivers route on these, so an event without one is a bug.
_NEEDS = {
    "line_cross": ("line", "direction"),
    "zone_enter": ("zone",),
    "zone_exit": ("zone",),
    "loiter": ("zone",),
}


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class Event:
    """Something that happened in a source, at a time on the source's clock.

    ``event_id``: unique per event (uuid4 hex); receivers de-duplicate retries
    with it. ``event``: one of :data:`EVENT_KINDS`. ``source``: the source's name.
    ``frame``: 0-based frame index in the source; ``timestamp``: seconds on the
    source's clock (what dwell times are computed from); ``wall_time``: Unix time
    when the event was made, for receivers that only know the wall clock.
    ``track_id``, ``class_id``, ``class_name``: the object, when one is involved.
    ``line`` / ``zone``: the name of the line or zone. ``direction``: ``in`` or
    ``out`` for crossings. ``dwell_s``: seconds spent in the zone (exit and loiter
    events). ``snapshot`` / ``clip``: paths of files written for this event, set
    later by whoever writes them (``with_paths``).

    Fields left ``None`` are omitted from :meth:`to_dict` and :meth:`to_json`, so
    a receiver sees only what applies to the event. All keyword-only: an event has
    too many optional fields for positional arguments to stay readable.
    """

    event_id: str = field(default_factory=_new_id)
    event: str
    source: str | None = None
    frame: int | None = None
    timestamp: float | None = None
    wall_time: float = field(default_factory=time.time)
    track_id: int | None = None
    class_id: int | None = None
    class_name: str | None = None
    line: str | None = None
    zone: str | None = None
    direction: str | None = None
    dwell_s: float | None = None
    snapshot: str | None = None
    clip: str | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENT_KINDS:
            allowed = ", ".join(sorted(EVENT_KINDS))
            raise ValueError(f"unknown event {self.event!r}; allowed: {allowed}")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'in' or 'out', got {self.direction!r}")
        for name in _NEEDS.get(self.event, ()):
            if getattr(self, name) is None:
                raise ValueError(f"a {self.event} event needs {name!r}")
        if not self.event_id:
            raise ValueError("event_id must not be empty")
        # NumPy scalars come straight from detection arrays; json cannot write
        # them, so every number is stored as a plain Python int or float.
        for name in ("frame", "track_id", "class_id"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, int(value))
        for name in ("timestamp", "wall_time", "dwell_s"):
            value = getattr(self, name)
            if value is not None:
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"Event.{name} must be finite, got {value}")
                object.__setattr__(self, name, value)
        if self.frame is not None and self.frame < 0:
            raise ValueError(f"Event.frame must be >= 0, got {self.frame}")
        if self.dwell_s is not None and self.dwell_s < 0:
            raise ValueError(f"Event.dwell_s must be >= 0, got {self.dwell_s}")

    def to_dict(self) -> dict[str, Any]:
        """The event as a flat dict without its ``None`` fields."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_json(self) -> str:
        """One line of JSON (what a JSON Lines file, a webhook or MQTT carries)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """The inverse of :meth:`to_dict`; unknown keys are an error, not ignored,
        so a renamed field shows up at the first event read back."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown Event field(s): {', '.join(unknown)}")
        return cls(**data)

    def with_paths(self, snapshot: str | None = None, clip: str | None = None) -> Event:
        """A copy carrying the snapshot and clip written for it (same event_id)."""
        return replace(
            self,
            snapshot=self.snapshot if snapshot is None else snapshot,
            clip=self.clip if clip is None else clip,
        )
