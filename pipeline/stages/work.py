"""The work of each stage, as small objects with their collaborators injected.

The runner wires these to queues and threads; the plain loop and the benchmark
call the same objects one after another. Each takes a ``Result`` (or frames)
and returns a new one: nothing is mutated between stages.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from threading import Event

from core.types import Detections, Frame, Result
from engines.base import Detector, Prepared
from pipeline.metrics import Metrics
from pipeline.overlay import Overlay
from pipeline.sinks import Sink
from pipeline.sources import Source, SourceError
from pipeline.tracking.base import Tracker
from pipeline.tracking.flow import FlowRefiner

log = logging.getLogger(__name__)

# A frame, its prepared input (None: a frame between detections) and prepare time
Pending = tuple[Frame, Prepared | None, float]


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


class DetectSchedule:
    """Which processed frames of one source run the detector: every ``every``-th
    one, or (``every=None``) the N that holds ``fps`` given the measured
    per-frame inference time. Counts only frames that are processed, so a
    dropped frame never shifts the schedule."""

    def __init__(self, every: int | None, fps: float, metrics: Metrics) -> None:
        self.every, self.fps, self.metrics = every, fps, metrics
        self.count = self.next_detect = 0
        self.interval = every or 1  # the N in use now

    def detect_now(self) -> bool:
        k, self.count = self.count, self.count + 1
        if self.every is not None:
            return k % self.every == 0
        if k < self.next_detect:
            return False
        infer_s = self.metrics.median("infer")
        self.interval = max(1, math.ceil(infer_s * self.fps))
        self.next_detect = k + self.interval
        return True


class Preprocess:
    """Frame -> (frame, the detector's prepared input, seconds it took); with a
    schedule, frames between detections skip the detector (input None)."""

    def __init__(self, detector: Detector, metrics: Metrics,
                 schedule: DetectSchedule | None = None) -> None:
        self.detector, self.metrics, self.schedule = detector, metrics, schedule

    @property
    def keep(self) -> int:
        """How many frames of a live source may wait: the next detect frame and
        the frames the tracker alone will handle before it."""
        return self.schedule.interval if self.schedule is not None else 1

    def __call__(self, frame: Frame) -> Pending:
        if self.schedule is not None and not self.schedule.detect_now():
            return frame, None, 0.0
        started = time.perf_counter()
        prepared = self.detector.prepare(frame.image)
        elapsed = time.perf_counter() - started
        self.metrics.record("preprocess", elapsed)
        return frame, prepared, elapsed


class BatchInfer:
    """Prepared frames (any mix of sources) -> one ``Result`` each, in one
    detector call; ``classes``/``max_det`` applied by ``Detector.select``.
    ``detect`` (the model call) may run on another thread; ``results`` then
    counts the frames and builds the results on the caller's."""

    def __init__(self, detector: Detector, metrics: Metrics) -> None:
        self.detector, self.metrics = detector, metrics

    def __call__(self, batch: list[Pending]) -> list[Result]:
        return self.results(batch, *self.detect(batch))

    def detect(self, batch: list[Pending]) -> tuple[list[Detections], float]:
        """The detections of the frames that have an input, in order, and the
        call's seconds per frame."""
        run = [p for _, p, _ in batch if p is not None]
        if not run:
            return [], 0.0
        started = time.perf_counter()
        detections = self.detector.infer(run)
        elapsed = time.perf_counter() - started
        if len(detections) != len(run):
            raise RuntimeError(f"detector returned {len(detections)} results "
                               f"for a batch of {len(run)}")
        per_frame = elapsed / len(run)
        self.metrics.record("infer", per_frame)
        self.metrics.record("infer_call", elapsed)
        self.metrics.batch_sizes.append(len(run))
        return detections, per_frame

    def results(self, batch: list[Pending], detections: list[Detections],
                per_frame: float) -> list[Result]:
        found = iter(detections)
        results = []
        for frame, prepared, prep_s in batch:
            self.metrics.source(frame.source_id).processed += 1
            if prepared is None:  # between detections: the tracker predicts
                results.append(Result(frame, Detections.empty(), predicted=True))
            else:
                results.append(Result(frame, self.detector.select(next(found)),
                                      {"preprocess": prep_s, "infer": per_frame}))
        return results


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
                                  drop_rate)
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
