"""The sections of the camera configuration as typed objects, and the
functions that read them from plain values (a parsed YAML file or a JSON
body), each error one line naming the key path."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from core.events import EVENT_KINDS
from pipeline.analytics.geometry import (
    ANCHORS,
    Points,
    ShapeSpec,
    parse_points,
    polygon_area,
    self_intersects,
)
from pipeline.analytics.stage import AnalyticsConfig
from pipeline.analytics.zones import INERTIA
from pipeline.camconfig.reader import (
    ConfigError,
    choice,
    key,
    kind,
    mapping,
    number,
    seq,
    text,
)
from pipeline.clips import CLIP_EVENTS, ClipConfig
from pipeline.events import EventsConfig
from pipeline.events.urls import check_url
from pipeline.sinks import RecordConfig
from pipeline.tracking import TRACKER_CHOICES

MAX_SOURCES = 256
MAX_SHAPES = 64
"""Lines, and zones, per source."""
MAX_POINTS = 64
"""Vertices of one zone."""
MAX_CLASSES = 256
NAME_CHARS = 64

# Source names become file names (SOURCE.mp4, SOURCE.events.jsonl, clips): ASCII,
# no '.', so one source's "a.events" can never write another's events file.
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SHAPE_NAME = re.compile(r"^[\w.-]+$")


@dataclass(frozen=True)
class Defaults:
    """What every source inherits (``defaults:``). ``model``, ``device``,
    ``tracker``, ``conf``, ``iou`` and ``classes`` are the run's: one detector
    and one tracker kind serve every source, so only ``defaults:`` sets them
    (None: the command line's). ``anchor``, ``inertia`` and ``loiter_s`` are
    the analytics defaults, which a source, a line or a zone may override."""

    model: str | None = None
    device: str | None = None
    tracker: str | None = None
    conf: float | None = None
    iou: float | None = None
    classes: tuple[int | str, ...] | None = None
    anchor: str = "bottom"
    inertia: int = INERTIA
    loiter_s: float | None = None


@dataclass(frozen=True)
class SourceEntry:
    """One ``sources:`` entry: its ``name`` (its output files' stem), ``url``
    (kept out of the repr: it may carry credentials), its lines and zones as
    an ``AnalyticsConfig`` (the defaults applied), its ``clips`` and ``record``
    (how its main recording rotates; None: as the command line says)."""

    name: str
    url: str = field(repr=False)
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    clips: ClipConfig | None = None
    record: RecordConfig | None = None


@dataclass(frozen=True)
class CameraConfig:
    """A whole camera file: ``defaults``, ``events`` targets, ``sources``."""

    defaults: Defaults = field(default_factory=Defaults)
    events: EventsConfig = field(default_factory=EventsConfig)
    sources: tuple[SourceEntry, ...] = ()

    @property
    def analytics_enabled(self) -> bool:
        return any(s.analytics.enabled for s in self.sources)


def parse_config(data: object) -> CameraConfig:
    """A ``CameraConfig`` from a parsed file (``${ENV}`` already expanded)."""
    if data is None:
        raise ConfigError("the file is empty; it needs a sources: list")
    root = mapping(data, "", ("defaults", "events", "sources"), ("sources",))
    defaults = parse_defaults(root.get("defaults", {}), "defaults")
    events = parse_events(root.get("events", {}), "events")
    entries = seq(root["sources"], "sources", MAX_SOURCES)
    if not entries:
        raise ConfigError("sources: empty; give at least one source")
    sources: list[SourceEntry] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(entries):
        entry = parse_source_entry(item, defaults, key("sources", i))
        # Case-folded: door.mp4 and Door.mp4 are one file on some disks.
        first = seen.setdefault(entry.name.lower(), i)
        if first != i:
            raise ConfigError(f"sources[{i}].name: {entry.name!r} is also the name "
                              f"of sources[{first}]; names must be unique")
        sources.append(entry)
    return CameraConfig(defaults, events, tuple(sources))


def parse_defaults(data: object, path: str = "defaults") -> Defaults:
    d = mapping(data or {}, path, ("model", "device", "tracker", "conf", "iou",
                                   "classes", "anchor", "inertia", "loiter_s"))
    out: dict[str, Any] = {}
    for name in ("model", "device"):
        if name in d:
            out[name] = text(d[name], key(path, name))
    if "tracker" in d:
        out["tracker"] = choice(d["tracker"], key(path, "tracker"), TRACKER_CHOICES)
    for name in ("conf", "iou"):
        if name in d:
            value = number(d[name], key(path, name))
            if value > 1:
                raise ConfigError(f"{key(path, name)}: {value!r} must be in [0, 1]")
            out[name] = float(value)
    if "classes" in d:
        out["classes"] = _classes(d["classes"], key(path, "classes"))
    out.update(_analytics_options(d, path))
    return Defaults(**out)


def _analytics_options(d: Mapping[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "anchor" in d:
        out["anchor"] = choice(d["anchor"], key(path, "anchor"), ANCHORS)
    if "inertia" in d:
        out["inertia"] = int(number(d["inertia"], key(path, "inertia"), minimum=1,
                                    integer=True))
    if "loiter_s" in d:
        out["loiter_s"] = float(number(d["loiter_s"], key(path, "loiter_s"),
                                       strict=True))
    return out


def parse_events(data: object, path: str = "events") -> EventsConfig:
    """``events:``: ``webhook: {url, secret}``, ``mqtt: {url, username,
    password}``; MQTT credentials are folded into the URL, percent-escaped."""
    d = mapping(data or {}, path, ("webhook", "mqtt"))
    webhook = secret = mqtt = ""
    if "webhook" in d:
        p = key(path, "webhook")
        w = mapping(d["webhook"], p, ("url", "secret"), ("url",))
        webhook = text(w["url"], key(p, "url"))
        if "secret" in w:
            secret = text(w["secret"], key(p, "secret"), empty=True)
            if not secret:
                raise ConfigError(f"{key(p, 'secret')}: empty (an environment "
                                  "variable set to nothing?); leave the key out "
                                  "for unsigned events")
    if "mqtt" in d:
        p = key(path, "mqtt")
        m = mapping(d["mqtt"], p, ("url", "username", "password"), ("url",))
        mqtt = text(m["url"], key(p, "url"))
        user = text(m["username"], key(p, "username")) if "username" in m else None
        password = (text(m["password"], key(p, "password"))
                    if "password" in m else None)
        mqtt = _with_credentials(mqtt, user, password, p)
    # The targets' own URL checks, whose messages never show credentials.
    for target, url, schemes, what in (("webhook", webhook, ("http", "https"),
                                        "webhook"),
                                       ("mqtt", mqtt, ("mqtt", "mqtts"), "MQTT")):
        try:
            if url:
                check_url(url, schemes, what)
        except ValueError as exc:
            raise ConfigError(f"{key(key(path, target), 'url')}: {exc}") from None
    return EventsConfig(webhook=webhook, webhook_secret=secret, mqtt=mqtt)


def _with_credentials(url: str, user: str | None, password: str | None,
                      path: str) -> str:
    if user is None and password is None:
        return url
    if user is None:
        raise ConfigError(f"{key(path, 'password')}: given without a username")
    parts = urlsplit(url.strip())
    if parts.username is not None:
        raise ConfigError(f"{key(path, 'url')}: has a user already; give the "
                          "credentials either in the URL or as username/password")
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    return urlunsplit(parts._replace(netloc=f"{auth}@{parts.netloc}"))


def parse_source_entry(data: object, defaults: Defaults | None = None,
                       path: str = "source") -> SourceEntry:
    """Exactly one ``sources:`` entry, checked as in a file (``path`` prefixes
    the errors: ``sources[1]`` in a file). No ``${ENV}`` expansion here: that
    belongs to files the operator wrote, never to a request's body."""
    defaults = defaults or Defaults()
    d = mapping(data, path, ("name", "url", "lines", "zones", "anchor", "inertia",
                             "loiter_s", "clips", "record"), ("name", "url"))
    name = text(d["name"], key(path, "name"))
    if len(name) > NAME_CHARS or not _SOURCE_NAME.match(name):
        shown = repr(name) if len(name) <= NAME_CHARS else "the name"
        raise ConfigError(f"{key(path, 'name')}: {shown} must be up to "
                          f"{NAME_CHARS} letters, digits, '_' or '-' (it names "
                          "output files), starting with a letter or digit")
    url = text(d["url"], key(path, "url")).strip()
    options = {"anchor": defaults.anchor, "zone_inertia": defaults.inertia,
               "loiter_s": defaults.loiter_s}
    own = _analytics_options(d, path)
    options.update({"zone_inertia" if k == "inertia" else k: v
                    for k, v in own.items()})
    lines = tuple(_shape(item, key(key(path, "lines"), i), line=True)
                  for i, item in enumerate(seq(d.get("lines", []),
                                               key(path, "lines"), MAX_SHAPES)))
    zones = tuple(_shape(item, key(key(path, "zones"), i), line=False)
                  for i, item in enumerate(seq(d.get("zones", []),
                                               key(path, "zones"), MAX_SHAPES)))
    for what, shapes, base in (("lines", lines, "line"), ("zones", zones, "zone")):
        names = [s.name for s in shapes]
        for i, n in enumerate(names):
            if n in names[:i] and n != base:  # unnamed ones are numbered
                raise ConfigError(f"{key(key(path, what), i)}.name: {n!r} is given "
                                  "twice in this source")
    clips = parse_clips(d["clips"], key(path, "clips")) if "clips" in d else None
    record = parse_record(d["record"], key(path, "record")) if "record" in d else None
    analytics = AnalyticsConfig.of(lines, zones, **options)
    return SourceEntry(name=name, url=url, analytics=analytics, clips=clips,
                       record=record)


def _shape(data: object, path: str, *, line: bool) -> ShapeSpec:
    keys = ("name", "points", "anchor", "classes")
    keys += () if line else ("inertia", "loiter_s")
    d = mapping(data, path, keys, ("points",))
    base = "line" if line else "zone"
    name = text(d["name"], key(path, "name")) if "name" in d else base
    if len(name) > NAME_CHARS or not _SHAPE_NAME.match(name):
        raise ConfigError(f"{key(path, 'name')}: must be up to {NAME_CHARS} "
                          "letters, digits, '_', '.' or '-'")
    points = _points(d["points"], key(path, "points"), line)
    options = _analytics_options(d, path)
    classes = _classes(d["classes"], key(path, "classes")) if "classes" in d else None
    return ShapeSpec(name, points, anchor=options.get("anchor"), classes=classes,
                     inertia=options.get("inertia"),
                     loiter_s=options.get("loiter_s"))


def _points(data: object, path: str, line: bool) -> Points:
    """Points as ``[[x, y], ...]``; the fraction/pixel rule of the flags."""
    most = 2 if line else MAX_POINTS
    pairs = seq(data, path, most)
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ConfigError(f"{key(path, i)}: expected [x, y], got {kind(pair)}"
                              + (f" of {len(pair)}" if isinstance(pair, list) else ""))
        for j, v in enumerate(pair):
            number(v, key(key(path, i), j))
    try:
        points = parse_points(pairs, min_points=2 if line else 3,
                              max_points=2 if line else None, what=path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if line and (points.xy[0] == points.xy[1]).all():
        raise ConfigError(f"{path}: the two points are the same")
    if not line and self_intersects(points.xy):
        raise ConfigError(f"{path}: the polygon crosses itself; give its points in "
                          "order around the edge")
    if not line and polygon_area(points.xy) == 0:
        raise ConfigError(f"{path}: the points enclose no area")
    return points


def _classes(data: object, path: str) -> tuple[int | str, ...]:
    items = seq(data, path, MAX_CLASSES)
    if not items:
        raise ConfigError(f"{path}: empty; leave the key out for every class")
    out: list[int | str] = []
    for i, c in enumerate(items):
        if isinstance(c, str):
            out.append(text(c, key(path, i)).strip())
        else:
            out.append(int(number(c, key(path, i), integer=True)))
    return tuple(out)


def parse_clips(data: object, path: str = "clips") -> ClipConfig:
    d = mapping(data, path, ("on", "pre_s", "post_s", "max_s"), ("on",))
    on = seq(d["on"], key(path, "on"), len(CLIP_EVENTS))
    if not on:
        raise ConfigError(f"{key(path, 'on')}: empty; leave clips: out for none")
    kinds = tuple(choice(v, key(key(path, "on"), i), CLIP_EVENTS)
                  for i, v in enumerate(on))
    assert set(kinds) <= EVENT_KINDS
    out: dict[str, float] = {}
    for name in ("pre_s", "post_s"):
        if name in d:
            out[name] = float(number(d[name], key(path, name)))
    if "max_s" in d:
        out["max_s"] = float(number(d["max_s"], key(path, "max_s"), strict=True))
    try:
        clips = ClipConfig(on=tuple(dict.fromkeys(kinds)), **out)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if clips.max_s < clips.pre_s + clips.post_s:
        raise ConfigError(f"{key(path, 'max_s')}: {clips.max_s:g} is shorter than "
                          f"pre_s + post_s ({clips.pre_s + clips.post_s:g})")
    return clips


def parse_record(data: object, path: str = "record") -> RecordConfig:
    """``record: {segment_s, keep_days | keep_gb}`` as a ``RecordConfig``."""
    d = mapping(data, path, ("segment_s", "keep_days", "keep_gb"), ("segment_s",))
    if "keep_days" in d and "keep_gb" in d:
        raise ConfigError(f"{path}: give keep_days or keep_gb, not both")
    values = {name: float(number(d[name], key(path, name), strict=True))
              for name in ("segment_s", "keep_days", "keep_gb") if name in d}
    try:
        return RecordConfig(**values)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
