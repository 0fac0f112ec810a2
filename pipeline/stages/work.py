"""The work of each stage, as small objects with their collaborators injected.

The runner wires these to queues and threads; the plain loop and the benchmark
call the same objects one after another. Each takes a ``Result`` (or frames)
and returns a new one: nothing is mutated between stages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from threading import Event

from core.types import Detections, Frame, Result
from pipeline.metrics import Metrics
from pipeline.overlay import Overlay
from pipeline.sinks import Sink
from pipeline.sources import Source, SourceError
from pipeline.tracking.base import Tracker
from pipeline.tracking.flow import FlowRefiner

log = logging.getLogger(__name__)

class Capture:
    """Reads one source; keeps its counts in ``metrics``. A source that fails
    mid-run is marked failed (the other sources go on) and ends like a file."""

    def __init__(self, source: Source, metrics: Metrics) -> None:
        self.source, self.metrics = source, metrics
        self.counts = metrics.source(source.source_id)

    def frames(self, stopping: Event | None = None) -> Iterator[Frame]:
        frames = self.source.frames()
        try:
            while stopping is None or not stopping.is_set():
                started = time.perf_counter()
                try:
                    frame = next(frames)
                except StopIteration:
                    return
                except SourceError as exc:
                    self.counts.status, self.counts.reason = "failed", str(exc)
                    log.error("%s (other sources continue)", exc)
                    return
                self.metrics.record("capture", time.perf_counter() - started)
                stats = self.source.stats  # live, for the live view's numbers
                self.counts.read, self.counts.lost = stats.read, stats.lost
                self.counts.reconnects = stats.reconnects
                yield frame
        finally:
            self.finish()

    def finish(self) -> None:
        """Copy the source's own statistics and close it (idempotent)."""
        stats, counts = self.source.stats, self.counts
        counts.read, counts.skipped = stats.read, stats.skipped
        counts.lost, counts.reconnects = stats.lost, stats.reconnects
        counts.unreadable = stats.errors
        if stats.damaged and counts.status == "ok":
            counts.status, counts.reason = "partial", stats.damaged
        self.source.close()


def _timed(result: Result, stage: str, metrics: Metrics, started: float,
           **changes: object) -> Result:
    elapsed = time.perf_counter() - started
    metrics.record(stage, elapsed)
    return replace(result, timings={**result.timings, stage: elapsed}, **changes)


class Track:
    """Gives detections identities with one source's tracker (None: pass).
    On a frame the detector skipped, the tracker predicts; with a ``refiner`` it
    is updated with the previous boxes moved by optical flow instead."""

    def __init__(self, tracker: Tracker | None, metrics: Metrics,
                 refiner: FlowRefiner | None = None) -> None:
        self.tracker, self.metrics, self.refiner = tracker, metrics, refiner

    def __call__(self, result: Result) -> Result:
        if self.tracker is None:
            return result
        started = time.perf_counter()
        frame = result.frame
        found: Detections | None = result.detections
        if result.predicted:  # no flow boxes at all: the motion model predicts
            moved = self.refiner.propagate(frame.image) if self.refiner else None
            found = moved if moved is not None and len(moved) else None
        if self.refiner is not None and found is not None:
            self.refiner.observe(frame.image, found)
        detections = (
            self.tracker.predict(timestamp=frame.timestamp, image=frame.image)
            if found is None
            else self.tracker.update(found, timestamp=frame.timestamp,
                                     image=frame.image))
        return _timed(result, "track", self.metrics, started, detections=detections)


class Draw:
    """Draws boxes, labels, tracks and the HUD (None: no output needs pixels)."""

    def __init__(self, overlay: Overlay | None, metrics: Metrics) -> None:
        self.overlay, self.metrics = overlay, metrics

    def __call__(self, result: Result) -> Result:
        if self.overlay is None:
            return result
        started = time.perf_counter()
        latency_ms = (started - result.frame.captured_at) * 1000
        counts = self.metrics.source(result.frame.source_id)
        drop_rate = counts.dropped / counts.read if counts.dropped else None
        image = self.overlay.draw(result.frame.image, result.detections, latency_ms,
                                  drop_rate, result.scene)
        return _timed(result, "overlay", self.metrics, started, image=image)


class Write:
    """Hands each result to one source's sinks; ``close`` finalises them all."""

    def __init__(self, sinks: list[Sink], metrics: Metrics,
                 on_written: Callable[[], None] | None = None) -> None:
        self.sinks, self.metrics, self.on_written = sinks, metrics, on_written

    def __call__(self, result: Result) -> None:
        started = time.perf_counter()
        for sink in self.sinks:
            sink.write(result)
        self.metrics.record("sink", time.perf_counter() - started)
        self.metrics.written(result.frame.source_id, result.frame.captured_at)
        if self.on_written is not None:
            self.on_written()

    def close(self) -> None:
        for sink in self.sinks:  # flush and finalise even on abort
            try:
                sink.close()
            except Exception as exc:  # closing one must not skip the others
                log.error("closing %s failed: %s", type(sink).__name__, exc)
        self.sinks = []
