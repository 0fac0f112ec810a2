"""One source's lane: its queues and the stage objects that serve it, and the
single-threaded ``run_plain_loop`` over the same objects (the baseline the
benchmark compares the threaded pipeline with). Lanes are built by
``pipeline.build``."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass

from core.types import Frame, Result
from engines.base import Detector
from pipeline.analytics.stage import Analyze
from pipeline.scheduler import BatchInfer, Preprocess, Route
from pipeline.sources import Source
from pipeline.stages import Capture, Draw, EndOfStream, Track, Write


@dataclass
class Lane:
    """Everything that belongs to one source: its queues and stage objects.

    Frames flow ``captured`` (file frames waiting to be prepared) → the
    scheduler → ``tracked_in`` → (``analytics_in`` → ) ``overlay_in`` →
    ``sink_in``; the analytics step exists only when lines or zones do."""

    source: Source
    captured: queue.Queue[Frame | EndOfStream]
    tracked_in: queue.Queue[Result | EndOfStream]
    overlay_in: queue.Queue[Result | EndOfStream]
    sink_in: queue.Queue[Result | EndOfStream]
    capture: Capture
    preprocess: Preprocess
    track: Track
    draw: Draw
    write: Write
    analyze: Analyze | None = None
    analytics_in: queue.Queue[Result | EndOfStream] | None = None

    @property
    def source_id(self) -> str:
        return self.source.source_id

    def route(self) -> Route:
        """How the scheduler serves this lane."""
        return Route(self.source.live, self.preprocess, self.captured, self.tracked_in)


def run_plain_loop(lane: Lane, detector: Detector) -> tuple[int, float]:
    """The single-threaded baseline over one lane's own stage objects: read →
    prepare → infer → track → analyze → draw → write, one frame at a time, then
    close the source, the event outputs and the sinks. Returns (frames, seconds)."""
    infer = BatchInfer(detector, lane.capture.metrics)
    analyze = lane.analyze or (lambda result: result)
    frames = 0
    started = time.perf_counter()
    try:
        for frame in lane.capture.frames():
            tracked = lane.track(infer([lane.preprocess(frame)])[0])
            lane.write(lane.draw(analyze(tracked)))
            frames += 1
    finally:
        if lane.analyze is not None:
            lane.analyze.close()
        lane.write.close()
    return frames, time.perf_counter() - started
