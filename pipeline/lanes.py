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
from pipeline.scheduler import BatchInfer, Preprocess, Route
from pipeline.sources import Source
from pipeline.stages import Capture, Draw, EndOfStream, Track, Write


@dataclass
class Lane:
    """Everything that belongs to one source: its queues and stage objects.

    Frames flow ``captured`` (file frames waiting to be prepared) → the
    scheduler → ``tracked_in`` → ``overlay_in`` → ``sink_in``."""

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

    @property
    def source_id(self) -> str:
        return self.source.source_id

    def route(self) -> Route:
        """How the scheduler serves this lane."""
        return Route(self.source.live, self.preprocess, self.captured, self.tracked_in)


def run_plain_loop(lane: Lane, detector: Detector) -> tuple[int, float]:
    """The single-threaded baseline over one lane's own stage objects: read →
    prepare → infer → track → draw → write, one frame at a time, then close the
    source and the sinks. Returns (frames, seconds)."""
    infer = BatchInfer(detector, lane.capture.metrics)
    frames = 0
    started = time.perf_counter()
    try:
        for frame in lane.capture.frames():
            lane.write(lane.draw(lane.track(infer([lane.preprocess(frame)])[0])))
            frames += 1
    finally:
        lane.write.close()
    return frames, time.perf_counter() - started
