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
]
