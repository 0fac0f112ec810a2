"""Multi-object tracking: give detections identities that persist across frames.

``make_tracker("bytetrack" | "ocsort" | "sort" | "none", frame_rate, **params)``
builds one tracker per source. Every tracker is a ``Tracker``: the track stage (or
a user's own loop) calls ``tracker.update(detections, timestamp=t, image=image)``
once per frame and gets back a new ``Detections`` with ``track_ids`` >= 1, and
``tracker.predict(timestamp=t, image=image)`` on a frame the detector skipped.
Time comes from the timestamps (seconds), so dropped frames and outages are
predicted and aged by the time that passed; ``image`` is used only for
camera-motion compensation (``cmc="sparse"|"ecc"``).

``parse_tracker_params`` turns command-line ``NAME=VALUE`` pairs into ``params``,
the same way for every command.
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

RECOMMENDED_TRACKER = "ocsort"
"""The tracker lines and zones get when none is named. Counts go wrong when a
track changes identity, and OC-SORT switches least where that hurts a count: a
track turning back during a detection gap, low frame rates, low scores (the
tracking benchmark in docs/tracking.md)."""


# Spellings of a bool parameter on the command line.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _key(name: str) -> str:
    """"OC-SORT", "oc_sort" -> "ocsort"."""
    return name.lower().replace("_", "").replace("-", "")


def make_tracker(name: str, frame_rate: float = 30.0, **params: Any) -> Tracker | None:
    """A tracker by name with its config built from ``params``; None for "none".

    ``params`` are the fields of the tracker's config dataclass; unknown
    names raise ValueError listing the allowed ones. ``frame_rate`` is the
    source's nominal rate: the configs' frame counts are times at that rate.
    """
    key = _key(name)
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


def _convert(pair: str, text: str, kind: type) -> Any:
    """``text`` as a value of ``kind`` (the type of the field's default)."""
    if kind is bool:
        word = text.strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError(f"tracker parameter {pair!r}: {text!r} is not a bool "
                         f"(use one of {TRUE_WORDS + FALSE_WORDS})")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"tracker parameter {pair!r}: {text!r} is not a valid "
                         f"{kind.__name__}") from None


def parse_tracker_params(name: str, pairs: list[str]) -> dict[str, Any]:
    """``["min_hits=3", "cmc=sparse"]`` -> keyword arguments for ``make_tracker``.

    Each value takes the type of the field's default; the result is checked by
    building the tracker's config. Raises ValueError naming the pair and the
    tracker's parameters (unknown name), the value (not of the field's type, e.g.
    ``fuse_score=maybe``) or the config's own rule it breaks.
    """
    key = _key(name)
    if key not in TRACKERS:
        raise ValueError(f"tracker parameters given for {name!r}, which takes none; "
                         f"choose one of {tuple(TRACKERS)}")
    config_cls = TRACKERS[key][1]
    defaults = {f.name: f.default for f in fields(config_cls)}
    out: dict[str, Any] = {}
    for pair in pairs:
        field_name, sep, text = pair.partition("=")
        field_name = field_name.strip()
        if not sep or field_name not in defaults:
            raise ValueError(f"tracker parameter {pair!r}: expected NAME=VALUE with "
                             f"NAME one of {key}'s parameters {sorted(defaults)}")
        out[field_name] = _convert(pair, text.strip(), type(defaults[field_name]))
    config_cls(**out)
    return out


def parse_tracker_params_for(trackers: list[str], pairs: list[str]
                             ) -> dict[str, dict[str, Any]]:
    """Parameters for several trackers at once (evaluation, benchmarks):
    ``TRACKER.NAME=VALUE`` goes to that tracker, ``NAME=VALUE`` to every one of
    ``trackers`` that has ``NAME``; each value parsed by ``parse_tracker_params``.
    Raises ValueError for a tracker not in ``trackers`` or a name none of them
    has."""
    keys = {_key(t): t for t in trackers}
    grouped: dict[str, list[str]] = {t: [] for t in trackers}
    for pair in pairs:
        target, dot, field_name = pair.partition("=")[0].strip().rpartition(".")
        if dot:
            if _key(target) not in keys:
                raise ValueError(f"tracker parameter {pair!r}: {target!r} is not "
                                 f"one of the trackers run, {trackers}")
            grouped[keys[_key(target)]].append(pair.split(".", 1)[1])
            continue
        having = [t for t in trackers if _key(t) in TRACKERS and field_name in
                  {f.name for f in fields(TRACKERS[_key(t)][1])}]
        if not having:
            raise ValueError(f"tracker parameter {pair!r}: none of {trackers} has "
                             f"a parameter {field_name!r}")
        for t in having:
            grouped[t].append(pair)
    return {t: parse_tracker_params(t, p) for t, p in grouped.items()}


__all__ = [
    "RECOMMENDED_TRACKER",
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
    "parse_tracker_params_for",
]
