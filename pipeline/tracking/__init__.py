"""Multi-object tracking: give detections identities that persist across frames.

``make_tracker("bytetrack" | "ocsort" | "sort" | "none", frame_rate, **params)``
builds one tracker per source; the track stage calls
``tracker.update(detections, image)`` once per frame and gets back a new
``Detections`` with ``track_ids`` >= 1 (``image`` is used only for camera-motion
compensation, ``cmc="sparse"|"ecc"``). ``tracker.predict()`` advances a frame the
detector skipped.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from pipeline.tracking.base import Tracker
from pipeline.tracking.bytetrack import ByteTrackConfig, ByteTracker
from pipeline.tracking.ocsort import OCSortConfig, OCSortTracker
from pipeline.tracking.sort import SortConfig, SortTracker

# Name -> (tracker class, its config dataclass).
TRACKERS: dict[str, tuple[type[Tracker], type]] = {
    "bytetrack": (ByteTracker, ByteTrackConfig),
    "sort": (SortTracker, SortConfig),
    "ocsort": (OCSortTracker, OCSortConfig),
}
TRACKER_CHOICES: tuple[str, ...] = (*TRACKERS, "none")


def make_tracker(name: str, frame_rate: float = 30.0, **params: Any) -> Tracker | None:
    """A tracker by name with its config built from ``params``; None for "none".

    ``params`` are the fields of the tracker's config dataclass; unknown
    names raise ValueError listing the allowed ones.
    """
    key = name.lower().replace("_", "").replace("-", "")
    if key == "none":
        if params:
            raise ValueError(
                f"tracker 'none' takes no parameters, got {sorted(params)}"
            )
        return None
    if key not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r}; choose one of {TRACKER_CHOICES}")
    cls, config_cls = TRACKERS[key]
    allowed = [f.name for f in fields(config_cls)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {key} parameter(s) {unknown}; allowed: {allowed}")
    return cls(config_cls(**params), frame_rate=frame_rate)


def parse_tracker_params(name: str, pairs: list[str]) -> dict[str, Any]:
    """``["min_hits=3", "cmc=sparse"]`` -> keyword arguments for ``make_tracker``;
    each value takes the type of the field's default. Raises ValueError naming the
    pair and the allowed fields."""
    key = name.lower().replace("_", "").replace("-", "")
    if key not in TRACKERS:
        raise ValueError(f"tracker parameters given for {name!r}, which takes none; "
                         f"choose one of {tuple(TRACKERS)}")
    defaults = {f.name: f.default for f in fields(TRACKERS[key][1])}
    out: dict[str, Any] = {}
    for pair in pairs:
        field_name, sep, text = pair.partition("=")
        if not sep or field_name not in defaults:
            raise ValueError(f"tracker parameter {pair!r}: expected NAME=VALUE with "
                             f"NAME one of {sorted(defaults)}")
        kind = type(defaults[field_name])
        try:
            if kind is bool:
                if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(text)
                out[field_name] = text.lower() in ("1", "true", "yes")
            else:
                out[field_name] = kind(text)
        except ValueError as exc:
            raise ValueError(f"tracker parameter {pair!r}: {text!r} is not a "
                             f"{kind.__name__}") from exc
    return out


__all__ = [
    "TRACKERS",
    "TRACKER_CHOICES",
    "ByteTrackConfig",
    "ByteTracker",
    "OCSortConfig",
    "OCSortTracker",
    "SortConfig",
    "SortTracker",
    "Tracker",
    "make_tracker",
    "parse_tracker_params",
]
