"""``Pipeline``: wires sources → preprocess → infer → track → overlay → sinks.

Threads per source: capture, preprocess, track, overlay, sink. One inference
thread serves all sources and batches their frames (up to ``batch``, waiting at
most ``max_wait_ms`` for a batch to fill), then routes results back by source.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from engines.base import Detector, Prepared
from pipeline.metrics import Metrics
from pipeline.overlay import Overlay, OverlayConfig
from pipeline.sinks import OutputConfig, Sink, open_sinks
from pipeline.sources import (
    ImageFolderSource,
    Source,
    SourceConfig,
    SourceError,
    make_source,
    unique_ids,
)
from pipeline.stages import (
    EndOfStream,
    RunState,
    StageError,
    StageThread,
    get,
    put,
    put_drop_oldest,
)
from pipeline.types import Detections, Frame, Result

log = logging.getLogger(__name__)

LIVE_QUEUE_SIZE = 2


@dataclass(frozen=True)
class PipelineConfig:
    """How the pipeline runs.

    ``batch``: most frames per inference call (across sources). ``max_wait_ms``:
    how long inference waits for a batch to fill. ``queue_size``: bound of every
    queue. ``tracker``: "none", "bytetrack" or "sort" with ``tracker_params``.
    ``drain_timeout_s``: after a stop request, how long queued frames may finish
    before the rest is abandoned. ``progress``: a progress bar for file sources.
    """

    batch: int = 4
    max_wait_ms: float = 5.0
    queue_size: int = 8
    tracker: str = "none"
    tracker_params: dict[str, Any] = field(default_factory=dict)
    sources: SourceConfig = field(default_factory=SourceConfig)
    outputs: OutputConfig = field(default_factory=OutputConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    drain_timeout_s: float = 0.75
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {self.queue_size}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


class PipelineError(RuntimeError):
    """The run failed; the message names the stage, source and frame."""


@dataclass
class _Lane:
    """Everything that belongs to one source: its queues, tracker, sinks."""

    source: Source
    captured: queue.Queue[Any]
    tracked_in: queue.Queue[Any]
    overlay_in: queue.Queue[Any]
    sink_in: queue.Queue[Any]
    sinks: list[Sink] = field(default_factory=list)
    tracker: Any = None
    overlay: Overlay | None = None


class Pipeline:
    """Runs one detector over one or more sources. ``run()`` blocks until done."""

    def __init__(
        self,
        sources: list[str] | list[Source],
        detector: Detector,
        config: PipelineConfig | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self.detector = detector
        specs = [s for s in sources if isinstance(s, str)]
        ids = iter(unique_ids(specs))
        self.sources: list[Source] = [
            s
            if isinstance(s, Source)
            else make_source(s, self.config.sources, next(ids))
            for s in sources
        ]
        if not self.sources:
            raise ValueError("no sources given")
        self.state = RunState()
        self.metrics = Metrics()
        self.infer_in: queue.Queue[Any] = queue.Queue(self.config.queue_size)
        self.lanes: dict[str, _Lane] = {}
        self._threads: list[StageThread] = []
        self._progress: tqdm | None = None

    # -- control -------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop reading; what is queued finishes (bounded by ``drain_timeout_s``)."""
        if not self.state.stopping.is_set():
            log.info("stop requested: finishing queued frames")
        self.state.stopping.set()
        for source in self.sources:
            source.stop()

    def run(self) -> Metrics:
        """Open everything, process until all sources end or a stop, then report.

        Raises ``SourceError`` when no source opens and ``PipelineError`` when a
        stage fails; a source that fails while others run is marked failed and the
        others carry on.
        """
        try:
            self._open_sources()
            if self.state.stopping.is_set():
                return self.metrics
            self._open_lanes()
            self._start_threads()
            self._wait()
        finally:
            self._shutdown()
        if self.state.error is not None:
            raise PipelineError(str(self.state.error)) from self.state.error.cause
        return self.metrics

    # -- start-up ------------------------------------------------------------
    def _open_sources(self) -> None:
        """Open all sources at once (network opens can take their timeout).

        Daemon threads, not an executor: a Ctrl-C while a stream is still
        connecting must not wait for the connect to time out at exit.
        """
        errors: dict[str, BaseException] = {}

        def open_one(source: Source) -> None:
            try:
                source.open()
            except BaseException as exc:
                errors[source.source_id] = exc

        threads = [threading.Thread(target=open_one, args=(s,), daemon=True,
                                    name=f"open:{s.source_id}") for s in self.sources]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                if self.state.stopping.wait(0.05):
                    return  # Ctrl-C while opening: leave without waiting
        messages: list[str] = []
        for source in self.sources:
            exc = errors.get(source.source_id)
            if exc is None:
                continue
            counts = self.metrics.source(source.source_id)
            counts.status, counts.reason = "failed", str(exc)
            messages.append(str(exc) if isinstance(exc, SourceError)
                            else f"{source.display_name}: {exc}")
        if len(messages) == len(self.sources):
            raise SourceError("; ".join(messages))
        for message in messages:
            log.error("%s (other sources continue)", message)

    def _open_lanes(self) -> None:
        from pipeline.tracking import make_tracker  # None for tracker "none"

        cfg = self.config
        names = list(getattr(self.detector, "class_names", []))
        for source in self.sources:
            if self.metrics.source(source.source_id).status == "failed":
                continue
            # Live frames only age in queues: keep them short so latency stays low.
            size = min(cfg.queue_size, LIVE_QUEUE_SIZE) if source.live else cfg.queue_size
            lane = _Lane(
                source,
                queue.Queue(size),
                queue.Queue(size),
                queue.Queue(size),
                queue.Queue(size),
            )
            lane.tracker = make_tracker(cfg.tracker, frame_rate=source.fps,
                                        **cfg.tracker_params)
            if cfg.outputs.needs_overlay:
                lane.overlay = Overlay(names, cfg.overlay)
            lane.sinks = open_sinks(
                cfg.outputs,
                source.source_id,
                source.fps,
                source.size,
                names,
                isinstance(source, ImageFolderSource),
                self.request_stop,
            )
            self.lanes[source.source_id] = lane
        total = sum(lane.source.frame_count for lane in self.lanes.values())
        if (
            cfg.progress
            and total
            and not any(lane.source.live for lane in self.lanes.values())
        ):
            self._progress = tqdm(
                total=total,
                unit="frame",
                desc="frames",
                dynamic_ncols=True,
                leave=False,
            )

    def _start_threads(self) -> None:
        for sid, lane in self.lanes.items():
            self._spawn("capture", self._capture, lane, sid)
            self._spawn("preprocess", self._preprocess, lane, sid)
        self._spawn("infer", self._infer, None, None)
        for sid, lane in self.lanes.items():
            self._spawn("track", self._track, lane, sid)
            self._spawn("overlay", self._overlay, lane, sid)
            self._spawn("sink", self._sink, lane, sid)

    def _spawn(
        self, stage: str, body: Any, lane: _Lane | None, sid: str | None
    ) -> None:
        thread = StageThread(stage, lambda t: body(t, lane), self.state, sid)
        self._threads.append(thread)
        thread.start()

    # -- stages --------------------------------------------------------------
    def _capture(self, thread: StageThread, lane: _Lane) -> None:
        source, state = lane.source, self.state
        counts = self.metrics.source(source.source_id)
        frames = source.frames()
        try:
            while not state.stopping.is_set():
                started = time.perf_counter()
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except SourceError as exc:  # this source is finished; others go on
                    counts.status, counts.reason = "failed", str(exc)
                    log.error("%s (other sources continue)", exc)
                    break
                thread.current = (source.source_id, frame.index)
                self.metrics.record("capture", time.perf_counter() - started)
                counts.read = source.stats.read
                if source.live:
                    counts.dropped += put_drop_oldest(lane.captured, frame)
                elif not put(lane.captured, frame, state):
                    return
        finally:
            stats = source.stats
            counts.read, counts.skipped = stats.read, stats.skipped
            counts.lost, counts.reconnects = stats.lost, stats.reconnects
            counts.unreadable = stats.errors
            if stats.damaged and counts.status == "ok":
                counts.status, counts.reason = "partial", stats.damaged
            source.close()
        put(lane.captured, EndOfStream(source.source_id), state)

    def _preprocess(self, thread: StageThread, lane: _Lane) -> None:
        state = self.state
        while (item := get(lane.captured, state)) is not None:
            if isinstance(item, EndOfStream):
                put(self.infer_in, item, state)
                return
            frame: Frame = item
            thread.current = (frame.source_id, frame.index)
            started = time.perf_counter()
            prepared = self.detector.prepare(frame.image)
            elapsed = time.perf_counter() - started
            self.metrics.record("preprocess", elapsed)
            if not put(self.infer_in, (frame, prepared, elapsed), state):
                return

    def _infer(self, thread: StageThread, _: None) -> None:
        state, cfg = self.state, self.config
        max_batch = max(1, min(cfg.batch, self.detector.max_batch))
        open_sources = set(self.lanes)
        while open_sources:
            item = get(self.infer_in, state)
            if item is None:
                return
            batch: list[tuple[Frame, Prepared, float]] = []
            ended: list[EndOfStream] = []
            deadline = time.perf_counter() + cfg.max_wait_ms / 1000
            while True:
                if isinstance(item, EndOfStream):
                    ended.append(item)
                else:
                    batch.append(item)
                remaining = deadline - time.perf_counter()
                if len(batch) >= max_batch or remaining <= 0:
                    break
                try:
                    item = self.infer_in.get(timeout=remaining)
                except queue.Empty:
                    break
            self.metrics.record_depth("infer", self.infer_in.qsize())
            if batch:
                thread.current = (batch[0][0].source_id, batch[0][0].index)
                started = time.perf_counter()
                detections = self.detector.infer([prepared for _, prepared, _ in batch])
                elapsed = time.perf_counter() - started
                if len(detections) != len(batch):
                    raise RuntimeError(
                        f"detector returned {len(detections)} results "
                        f"for a batch of {len(batch)}"
                    )
                self.metrics.record("infer", elapsed / len(batch))
                self.metrics.batch_sizes.append(len(batch))
                for (frame, _, prep_s), dets in zip(batch, detections, strict=True):
                    self.metrics.source(frame.source_id).processed += 1
                    result = Result(
                        frame,
                        dets,
                        {"preprocess": prep_s, "infer": elapsed / len(batch)},
                    )
                    if not put(self.lanes[frame.source_id].tracked_in, result, state):
                        return
            for eos in ended:
                open_sources.discard(eos.source_id)
                put(self.lanes[eos.source_id].tracked_in, eos, state)

    def _relay(self, thread: StageThread, inbox: queue.Queue[Any],
               outbox: queue.Queue[Any], work: Any) -> None:
        """A per-source stage: apply ``work`` to each result, pass it on, forward
        the end-of-stream marker and stop."""
        state = self.state
        while (item := get(inbox, state)) is not None:
            if isinstance(item, EndOfStream):
                put(outbox, item, state)
                return
            thread.current = (item.frame.source_id, item.frame.index)
            work(item)
            if not put(outbox, item, state):
                return

    def _track(self, thread: StageThread, lane: _Lane) -> None:
        def track(result: Result) -> None:
            if lane.tracker is not None:
                started = time.perf_counter()
                result.detections = lane.tracker.update(result.detections)
                result.timings["track"] = time.perf_counter() - started
                self.metrics.record("track", result.timings["track"])

        self._relay(thread, lane.tracked_in, lane.overlay_in, track)

    def _overlay(self, thread: StageThread, lane: _Lane) -> None:
        def draw(result: Result) -> None:
            if lane.overlay is not None:
                started = time.perf_counter()
                latency_ms = (started - result.frame.captured_at) * 1000
                result.image = lane.overlay.draw(result.frame.image,
                                                 result.detections, latency_ms)
                result.timings["overlay"] = time.perf_counter() - started
                self.metrics.record("overlay", result.timings["overlay"])

        self._relay(thread, lane.overlay_in, lane.sink_in, draw)

    def _sink(self, thread: StageThread, lane: _Lane) -> None:
        state = self.state
        try:
            while (item := get(lane.sink_in, state)) is not None:
                if isinstance(item, EndOfStream):
                    return
                result: Result = item
                thread.current = (result.frame.source_id, result.frame.index)
                started = time.perf_counter()
                for sink in lane.sinks:
                    sink.write(result)
                self.metrics.record("sink", time.perf_counter() - started)
                self.metrics.written(result.frame.source_id, result.frame.captured_at)
                if self._progress is not None:
                    self._progress.update(1)
        finally:
            for sink in lane.sinks:  # flush and finalise even on abort
                try:
                    sink.close()
                except Exception as exc:  # closing one must not skip the others
                    log.error("closing %s failed: %s", type(sink).__name__, exc)
            lane.sinks = []

    # -- shutdown ------------------------------------------------------------
    def _wait(self) -> None:
        """Wait for the sinks; after a stop request allow ``drain_timeout_s``."""
        sink_threads = [t for t in self._threads if t.stage == "sink"]
        stop_seen: float | None = None
        while any(t.is_alive() for t in sink_threads):
            if self.state.abort.is_set():
                break
            if self.state.stopping.is_set():
                stop_seen = stop_seen or time.perf_counter()
                if time.perf_counter() - stop_seen > self.config.drain_timeout_s:
                    log.warning(
                        "queued frames did not finish within %.1f s; abandoning them",
                        self.config.drain_timeout_s,
                    )
                    self.state.abort.set()
                    break
            for t in sink_threads:
                t.join(timeout=0.05)

    def _shutdown(self) -> None:
        self.state.stopping.set()
        self.state.abort.set()  # every loop leaves within POLL_S
        for source in self.sources:
            source.stop()
            if source.source_id not in self.lanes:  # never got a capture thread
                source.close()
        # Only the sinks must finish (they finalise files). Capture may sit in a
        # blocking read and inference in a long model call; both are daemons.
        deadline = time.perf_counter() + 1.0
        for t in self._threads:
            if t.stage == "sink":
                t.join(timeout=max(0.0, deadline - time.perf_counter()))
        for lane in self.lanes.values():  # sinks of threads that never started
            for sink in lane.sinks:
                sink.close()
        if self._progress is not None:
            self._progress.close()
        self.metrics.finish()
        for counts in self.metrics.sources.values():
            unfinished = counts.read - counts.skipped - counts.dropped - counts.written
            if counts.status == "ok" and unfinished > 0:
                counts.status = "partial"
                counts.reason = f"stopped with {unfinished} frames not written"

    @property
    def error(self) -> StageError | None:
        return self.state.error


def run_plain_loop(
    source: Source,
    detector: Detector,
    tracker: Any = None,
    overlay: Overlay | None = None,
    sinks: list[Sink] | None = None,
) -> tuple[int, float]:
    """The single-threaded baseline: read → prepare → infer → track → draw → write.

    Returns (frames, seconds). Used by benchmarks to compare against ``Pipeline``.
    """
    frames = 0
    started = time.perf_counter()
    with source:
        for frame in source.frames():
            dets: Detections = detector.infer([detector.prepare(frame.image)])[0]
            if tracker is not None:
                dets = tracker.update(dets)
            image = overlay.draw(frame.image, dets) if overlay else frame.image
            result = Result(frame, dets, image=image)
            for sink in sinks or []:
                sink.write(result)
            frames += 1
    return frames, time.perf_counter() - started
