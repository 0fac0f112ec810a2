"""One source's lane: its queues and the stage objects that serve it, built
from the typed configs; ``open_sources`` opens every source at once; and the
single-threaded ``run_plain_loop`` over the same stage objects."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.types import Frame
from engines.base import Detector
from pipeline.config import PipelineConfig
from pipeline.metrics import Metrics
from pipeline.overlay import Overlay
from pipeline.sinks import Sink, open_sinks
from pipeline.sources import ImageFolderSource, Source, SourceError
from pipeline.stages import (
    POLL_S,
    BatchInfer,
    Capture,
    DetectSchedule,
    Draw,
    LatestFrames,
    Preprocess,
    RunState,
    Track,
    Write,
    get,
    get_batch,
)
from pipeline.tracking.flow import FlowRefiner

log = logging.getLogger(__name__)

LIVE_QUEUE_SIZE = 2  # live frames only age in queues: keep them short


@dataclass
class Lane:
    """Everything that belongs to one source: its queues and stage objects."""

    source: Source
    captured: queue.Queue[Any]
    tracked_in: queue.Queue[Any]
    overlay_in: queue.Queue[Any]
    sink_in: queue.Queue[Any]
    capture: Capture
    preprocess: Preprocess
    track: Track
    draw: Draw
    write: Write


def open_lane(source: Source, detector: Detector, config: PipelineConfig,
              metrics: Metrics, on_quit: Callable[[], None],
              on_written: Callable[[], None] | None = None, rtsp_url: str = "",
              extra_sinks: list[Sink] | None = None) -> Lane:
    """Tracker, overlay and sinks for one opened source (sinks open now, so an
    unwritable output fails before any frame is processed). ``rtsp_url``: where
    ``--rtsp-out`` pushes this source; ``extra_sinks``: e.g. the live view's."""
    from pipeline.tracking import make_tracker  # None for tracker "none"

    names = list(getattr(detector, "class_names", []))
    size = min(config.queue_size, LIVE_QUEUE_SIZE) if source.live else config.queue_size
    # With --stride N only every Nth frame is processed: the written video and the
    # tracker run at the processed rate, so playback speed and motion stay true.
    fps = source.fps / config.sources.stride
    tracker = make_tracker(config.tracker, frame_rate=fps, **config.tracker_params)
    overlay = Overlay(names, config.overlay) if config.outputs.needs_overlay else None
    sinks = open_sinks(config.outputs, source.source_id, fps, source.size,
                       names, isinstance(source, ImageFolderSource), on_quit,
                       rtsp_url)
    sinks += extra_sinks or []
    return Lane(source, *(queue.Queue(size) for _ in range(4)),
                capture=Capture(source, metrics),
                preprocess=Preprocess(detector, metrics,
                                      schedule(config, fps, metrics)),
                track=Track(tracker, metrics, FlowRefiner()
                            if config.detect_every != 1 and config.flow_refine
                            else None), draw=Draw(overlay, metrics),
                write=Write(sinks, metrics, on_written))


def schedule(config: PipelineConfig, fps: float, metrics: Metrics
             ) -> DetectSchedule | None:
    """The ``--detect-every`` schedule of one source (None: detect every frame)."""
    every = config.detect_every
    if every == 1:
        return None
    return DetectSchedule(None if every == "auto" else int(every), fps, metrics)


def open_sources(sources: list[Source], state: RunState, metrics: Metrics) -> None:
    """Open all sources at once (network opens can take their timeout), in daemon
    threads: a Ctrl-C while a stream connects must not wait for it. Sources that
    fail are marked failed; ``SourceError`` when none opens."""
    errors: dict[str, BaseException] = {}

    def open_one(source: Source) -> None:
        try:
            source.open()
        except BaseException as exc:
            errors[source.source_id] = exc

    threads = [threading.Thread(target=open_one, args=(s,), daemon=True,
                                name=f"open:{s.source_id}") for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            if state.stopping.wait(0.05):
                return  # Ctrl-C while opening: leave without waiting
    messages: list[str] = []
    for source in sources:
        if (exc := errors.get(source.source_id)) is None:
            continue
        counts = metrics.source(source.source_id)
        counts.status, counts.reason = "failed", str(exc)
        messages.append(str(exc) if isinstance(exc, SourceError)
                        else f"{source.display_name}: {exc}")
    if len(messages) == len(sources):
        raise SourceError("; ".join(messages))
    for message in messages:
        log.error("%s (other sources continue)", message)


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


class InferFeed:
    """What the inference stage runs next: the freshest frame of each live
    source, prepared only now (so dropped frames cost no preprocessing), topped
    up from the queue of prepared file frames; end markers pass through."""

    def __init__(self, infer_in: queue.Queue[Any], live: LatestFrames,
                 lanes: dict[str, Lane], state: RunState, max_wait_s: float) -> None:
        self.infer_in, self.live, self.lanes = infer_in, live, lanes
        self.state, self.max_wait_s = state, max_wait_s
        self.any_live = any(lane.source.live for lane in lanes.values())

    def next(self, max_batch: int) -> list[Any] | None:
        """Up to ``max_batch`` prepared frames (plus markers); None on abort."""
        if not self.any_live:
            item = get(self.infer_in, self.state)
            return None if item is None else get_batch(
                self.infer_in, item, max_batch, self.max_wait_s)
        while not self.state.abort.is_set():
            items = [self.lanes[f.source_id].preprocess(f) if isinstance(f, Frame)
                     else f for f in self.live.take(max_batch)]
            while len(items) < max_batch:
                try:
                    items.append(self.infer_in.get_nowait())
                except queue.Empty:
                    break
            if items:
                return items
            self.live.wait(POLL_S / 10)
        return None
