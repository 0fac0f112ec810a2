"""Per-stage latency, queue depth, frame counts, FPS, line and zone counts: the
summary table and JSON."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.types import SceneCounts

WINDOW = 20_000  # samples kept per series: bounded memory on long runs


@dataclass
class SourceCounts:
    """Frame accounting for one source. For files: read == processed == written
    unless the run was interrupted (then ``unfinished`` holds the difference)."""

    read: int = 0
    skipped: int = 0
    dropped: int = 0
    lost: int = 0
    processed: int = 0
    written: int = 0
    reconnects: int = 0
    unreadable: int = 0
    status: str = "ok"
    reason: str = ""


@dataclass
class Metrics:
    """Thread-safe collector; stages call ``record``/``count``; ``summary`` reports."""

    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    latencies: dict[str, deque[float]] = field(default_factory=dict)
    depths: dict[str, deque[int]] = field(default_factory=dict)
    sources: dict[str, SourceCounts] = field(default_factory=dict)
    end_to_end: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    # capture-to-sink seconds per source (``end_to_end`` holds all sources)
    source_latencies: dict[str, deque[float]] = field(default_factory=dict)
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=WINDOW))
    runtime: str = ""  # what ran the model at what precision: "OpenVINOBackend bf16"
    class_names: list[str] = field(default_factory=list)  # labels of class ids
    events_dropped: dict[str, int] = field(default_factory=dict)  # by target
    # per source: line crossings {line: {(class_id, direction): n}} and zone
    # occupancy {zone: {class_id: n}}; a class once seen stays, at 0 when gone,
    # so a gauge falls to 0 instead of vanishing
    crossings: dict[str, dict[str, dict[tuple[int, str], int]]] = field(
        default_factory=dict)
    occupancy: dict[str, dict[str, dict[int, int]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.latencies.setdefault(stage, deque(maxlen=WINDOW)).append(seconds)

    def median(self, stage: str) -> float:
        """Median of a stage's recorded seconds (0 before any sample)."""
        with self._lock:
            values = list(self.latencies.get(stage, ()))
        return float(np.median(values)) if values else 0.0

    def record_depth(self, queue_name: str, depth: int) -> None:
        with self._lock:
            self.depths.setdefault(queue_name, deque(maxlen=WINDOW)).append(depth)

    def source(self, source_id: str) -> SourceCounts:
        with self._lock:
            return self.sources.setdefault(source_id, SourceCounts())

    def record_scene(self, source_id: str, scene: SceneCounts) -> None:
        """A source's line and zone counts after its latest frame."""
        with self._lock:
            lines = self.crossings.setdefault(source_id, {})
            for name, counts in scene.lines.items():
                lines[name] = dict(counts)
            zones = self.occupancy.setdefault(source_id, {})
            for name, counts in scene.zones.items():
                zone = zones.setdefault(name, {})
                for class_id in zone:
                    zone[class_id] = 0
                zone.update(counts)

    def label(self, class_id: int) -> str:
        """A class id's name (the id itself when the model names none)."""
        names = self.class_names
        return names[class_id] if 0 <= class_id < len(names) else str(class_id)

    def written(self, source_id: str, captured_at: float) -> None:
        counts = self.source(source_id)
        with self._lock:
            counts.written += 1
            if captured_at:
                latency = time.perf_counter() - captured_at
                self.end_to_end.append(latency)
                self.source_latencies.setdefault(
                    source_id, deque(maxlen=WINDOW)).append(latency)

    def finish(self) -> None:
        """End the run; a source with frames read but never written is partial."""
        self.finished = time.perf_counter()
        for counts in self.sources.values():
            unfinished = counts.read - counts.skipped - counts.dropped - counts.written
            if counts.status == "ok" and unfinished > 0:
                counts.status = "partial"
                counts.reason = f"stopped with {unfinished} frames not written"

    @property
    def elapsed(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    def summary(self) -> dict[str, Any]:
        """Everything as plain JSON-able values (milliseconds for latencies)."""
        with self._lock:
            stages = {
                name: _stats_ms(values) for name, values in self.latencies.items()
            }
            depths = {
                name: {
                    "mean": float(np.mean(v)) if v else 0.0,
                    "max": int(max(v)) if v else 0,
                }
                for name, v in self.depths.items()
            }
            sources = {sid: {**vars(c), "drop_rate": round(c.dropped / c.read, 4)
                             if c.read else 0.0} for sid, c in self.sources.items()}
            for sid, counts in sources.items():
                counts["latency_ms"] = _stats_ms(self.source_latencies.get(sid, []))
            latest = self.end_to_end[-1] * 1000 if self.end_to_end else 0.0
            e2e = _stats_ms(self.end_to_end)
            batches = list(self.batch_sizes)
            analytics = self._analytics()
        written = sum(s["written"] for s in sources.values())
        elapsed = self.elapsed
        return {
            "runtime": self.runtime,
            "elapsed_s": round(elapsed, 3),
            "frames_written": written,
            "fps": round(written / elapsed, 2) if elapsed > 0 else 0.0,
            "end_to_end_ms": e2e,
            "latency_now_ms": round(latest, 3),
            "mean_batch": round(float(np.mean(batches)), 2) if batches else 0.0,
            "stages_ms": stages,
            "queue_depth": depths,
            "sources": sources,
            **({"analytics": analytics} if analytics else {}),
            **({"events_dropped": dict(self.events_dropped)}
               if any(self.events_dropped.values()) else {}),
        }

    def _analytics(self) -> dict[str, Any]:
        """``{source: {"lines": {line: {direction: {class: n}}}, "zones": {zone:
        {class: n}}}}`` with class names; the caller holds the lock."""
        out: dict[str, Any] = {}
        for sid in sorted(set(self.crossings) | set(self.occupancy)):
            lines: dict[str, dict[str, dict[str, int]]] = {}
            for name, counts in self.crossings.get(sid, {}).items():
                line = lines[name] = {"in": {}, "out": {}}
                for (class_id, direction), n in sorted(counts.items()):
                    line[direction][self.label(class_id)] = n
            zones = {name: {self.label(c): n for c, n in sorted(counts.items())}
                     for name, counts in self.occupancy.get(sid, {}).items()}
            out[sid] = {"lines": lines, "zones": zones}
        return out

    def table(self) -> str:
        """The human-readable summary printed at the end of a run."""
        s = self.summary()
        lines = [f"{'stage':<12}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}{'n':>8}"]
        for name, st in s["stages_ms"].items():
            lines.append(
                f"{name:<12}{st['mean']:>10.2f}{st['p50']:>10.2f}"
                f"{st['p95']:>10.2f}{st['n']:>8}"
            )
        e = s["end_to_end_ms"]
        lines.append(
            f"{'end-to-end':<12}{e['mean']:>10.2f}{e['p50']:>10.2f}"
            f"{e['p95']:>10.2f}{e['n']:>8}"
        )
        lines.append("")
        lines.append(
            f"{'source':<24}{'read':>7}{'skip':>6}{'drop':>6}{'lost':>6}"
            f"{'proc':>7}{'written':>8}  status"
        )
        for sid, c in s["sources"].items():
            status = c["status"] + (f" ({c['reason']})" if c["reason"] else "")
            lines.append(
                f"{sid[:23]:<24}{c['read']:>7}{c['skipped']:>6}"
                f"{c['dropped']:>6}{c['lost']:>6}{c['processed']:>7}"
                f"{c['written']:>8}  {status}"
            )
        if s["queue_depth"]:
            depth = ", ".join(
                f"{k} {v['mean']:.1f}/{v['max']}" for k, v in s["queue_depth"].items()
            )
            lines.append(f"queue depth mean/max: {depth}")
        for sid, scene in s.get("analytics", {}).items():
            for name, line in scene["lines"].items():
                lines.append(f"line {sid}/{name}: in {_by_class(line['in'])}, "
                             f"out {_by_class(line['out'])}")
            for name, zone in scene["zones"].items():
                lines.append(f"zone {sid}/{name}: {_by_class(zone)} inside at the end")
        for target, n in s.get("events_dropped", {}).items():
            lines.append(f"events not delivered to {target}: {n}")
        lines.append(
            f"{s['frames_written']} frames in {s['elapsed_s']:.2f} s: "
            f"{s['fps']:.2f} FPS (mean batch {s['mean_batch']})"
            + (f" on {s['runtime']}" if s["runtime"] else "")
        )
        return "\n".join(lines)

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.summary(), indent=2))


def prometheus_analytics(analytics: dict[str, Any]) -> Any:
    """Line crossings (a counter) and zone occupancy (a gauge) per source, line
    or zone, direction and class, from ``Metrics.summary()["analytics"]``."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    crossings = CounterMetricFamily(
        "streamdet_line_crossings", "Tracked objects that crossed a line",
        labels=["source", "line", "direction", "class"])
    occupancy = GaugeMetricFamily(
        "streamdet_zone_occupancy", "Objects inside a zone now",
        labels=["source", "zone", "class"])
    for sid, scene in analytics.items():
        for name, line in scene["lines"].items():
            for direction, by_class in line.items():
                for label, n in by_class.items():
                    crossings.add_metric([sid, name, direction, label], n)
        for name, zone in scene["zones"].items():
            for label, n in zone.items():
                occupancy.add_metric([sid, name, label], n)
    yield crossings
    yield occupancy


def _by_class(counts: dict[str, int]) -> str:
    """``3 (person 2, car 1)``; ``0`` alone when nothing was counted."""
    total = sum(counts.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{k} {n}" for k, n in counts.items() if n) + ")"


def _stats_ms(values: deque[float] | list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "n": 0}
    arr = np.asarray(values, dtype=np.float64) * 1000.0
    return {
        "mean": round(float(arr.mean()), 3),
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p95": round(float(np.percentile(arr, 95)), 3),
        "n": len(arr),
    }
