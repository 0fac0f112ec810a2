"""``Pipeline``: runs built parts as threads — per source capture, preprocess
(files), track, analytics (when lines or zones are set), overlay and sink; one
inference thread (``Scheduler``) for all.

``pipeline.build.build_pipeline`` builds one from typed configs; this module
only opens sources when the run starts, wires queues and threads, lets
sources join and leave while it runs, and shuts everything down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tqdm import tqdm

from engines.base import Detector
from pipeline.config import PipelineConfig
from pipeline.events import EventFanout
from pipeline.lanes import Lane
from pipeline.live_view import LiveView
from pipeline.metrics import Metrics
from pipeline.scheduler import Scheduler
from pipeline.sources import Source, SourceError
from pipeline.stages import (
    EndOfStream,
    RunState,
    StageThread,
    get,
    relay,
    wait_for,
)

log = logging.getLogger(__name__)

EVENTS_CLOSE_S = 1.5  # what the network event targets get to deliver at the end

# Builds one opened source's lane: (source, on_quit, on_written) -> Lane
LaneFactory = Callable[[Source, Callable[[], None], Callable[[], None] | None], Lane]


class PipelineError(RuntimeError):
    """The run failed; the message names the stage, source and frame."""


class Pipeline:
    """Runs one detector over sources that may join and leave while it runs.

    ``run()`` blocks until every source has ended (or, with ``keep_alive``,
    until a stop). ``build_lane`` builds a source's lane once it has opened.
    """

    def __init__(self, detector: Detector, sources: list[Source],
                 build_lane: LaneFactory, metrics: Metrics,
                 config: PipelineConfig | None = None, *,
                 live_view: LiveView | None = None, keep_alive: bool = False,
                 events: EventFanout | None = None) -> None:
        self.config = config or PipelineConfig()
        self.detector = detector
        self.sources = list(sources)
        self.build_lane = build_lane
        self.metrics = metrics
        self.live_view = live_view
        self.events = events  # the network targets of every source's events
        self.state = RunState()
        cfg = self.config
        self.scheduler = Scheduler(
            detector, metrics, self.state, batch=cfg.batch,
            max_wait_s=cfg.max_wait_ms / 1000, queue_size=cfg.queue_size,
            # --detect-every auto paces itself by the call's time: one at a time
            overlap=cfg.detect_every != "auto", keep_alive=keep_alive)
        self.lanes: dict[str, Lane] = {}
        self._threads: list[StageThread] = []
        self._lock = threading.Lock()
        self._started = False
        self._leaving: set[str] = set()  # removed, finishing what they queued
        self._progress: tqdm | None = None

    def current_sources(self) -> list[Source]:
        """The sources in the run now (a copy; others may join or leave)."""
        with self._lock:
            return list(self.sources)

    def request_stop(self) -> None:
        """Stop reading; what is queued finishes (bounded by ``drain_timeout_s``)."""
        if not self.state.stopping.is_set():
            log.info("stop requested: finishing queued frames")
        self.state.stopping.set()
        with self._lock:
            sources = list(self.sources)
        for source in sources:
            source.stop()

    def add_source(self, source: Source) -> str:
        """Add a source: before the run it opens with the others; during the run
        it opens now (``SourceError`` if it cannot) and its lane starts, the
        other sources untouched. Returns its id."""
        with self._lock:
            if any(s.source_id == source.source_id for s in self.sources):
                raise ValueError(f"source {source.source_id!r} is already in the run")
            if not self._started:
                self.sources.append(source)
                return source.source_id
        if self.state.stopping.is_set():
            raise RuntimeError("the pipeline is stopping: no source can join")
        source.open()
        try:
            with self._lock:
                self.sources.append(source)
            self._start_lane(self._open_lane(source))
        except BaseException:
            with self._lock:
                self.sources.remove(source)
            source.close()
            raise
        log.info("source %s joined", source.display_name)
        return source.source_id

    def remove_source(self, source_id: str, wait: bool = True,
                      timeout_s: float = 5.0) -> None:
        """Stop one source: what it has queued is processed, its outputs are
        finalised, the other sources go on. ``wait``: return once its sink has
        closed (or after ``timeout_s``); a caller that consumes the results
        itself must not wait (the sink may be waiting for it)."""
        with self._lock:
            source = next((s for s in self.sources if s.source_id == source_id), None)
            if source is None:
                raise ValueError(f"no source {source_id!r} in the run")
            self._leaving.add(source_id)
            sinks = [t for t in self._threads
                     if t.stage == "sink" and t.current[0] == source_id]
        log.info("source %s leaves", source.display_name)
        source.stop()
        if not self._started or not sinks:  # never ran: nothing to finalise
            self._left(source_id)
            return
        deadline = time.monotonic() + timeout_s
        for thread in sinks if wait else ():
            thread.join(max(0.0, deadline - time.monotonic()))

    def _left(self, source_id: str) -> None:
        """A source that was asked to leave has ended: forget it."""
        with self._lock:
            if source_id in self._leaving:
                self._leaving.discard(source_id)
                self.sources = [s for s in self.sources if s.source_id != source_id]
                self.lanes.pop(source_id, None)

    def run(self) -> Metrics:
        """Open everything, process until all sources end or a stop, then report.

        Raises ``SourceError`` when no source opens and ``PipelineError`` when a
        stage fails; a source that fails while others run is marked failed and the
        others carry on.
        """
        if self.metrics.runtime:
            log.info("model runs on %s", self.metrics.runtime)
        try:
            with self._lock:
                sources = list(self.sources)
            open_sources(sources, self.state, self.metrics)
            if self.state.stopping.is_set():
                return self.metrics
            if self.live_view is not None:
                self.live_view.start()
            lanes = [self._open_lane(s) for s in sources
                     if self.metrics.source(s.source_id).status != "failed"]
            self._show_progress(lanes)
            with self._lock:
                self._started = True
            self._spawn("infer", self.scheduler.run, None)
            for lane in lanes:
                self._start_lane(lane)
            wait_for(self._running, self.state, self.config.drain_timeout_s)
        finally:
            self._shutdown()
        if self.state.error is not None:
            raise PipelineError(str(self.state.error)) from self.state.error.cause
        return self.metrics

    def _running(self) -> list[threading.Thread]:
        """The threads the run waits for: inference and every sink."""
        with self._lock:
            return [t for t in self._threads if t.stage in ("infer", "sink")]

    def _open_lane(self, source: Source) -> Lane:
        lane = self.build_lane(source, self.request_stop, self._written)
        try:
            self.scheduler.join(source.source_id, lane.route())
        except BaseException:
            if lane.analyze is not None:
                lane.analyze.close()
            lane.write.close()
            raise
        with self._lock:
            self.lanes[source.source_id] = lane
        return lane

    def _show_progress(self, lanes: list[Lane]) -> None:
        total = sum(lane.source.frame_count for lane in lanes)
        if self.config.progress and total and not any(
                lane.source.live for lane in lanes):
            self._progress = tqdm(total=total, unit="frame", desc="frames",
                                  dynamic_ncols=True, leave=False)

    def _written(self) -> None:
        if self._progress is not None:
            self._progress.update(1)

    def _start_lane(self, lane: Lane) -> None:
        sid = lane.source_id
        self._spawn("capture", lambda t: self._capture(t, lane), sid)
        if not lane.source.live:  # live frames are prepared when inference is free
            self._spawn("preprocess",
                        lambda t: self.scheduler.prepare_files(t, sid), sid)
        if lane.analyze is not None and lane.analytics_in is not None:
            self._spawn("track", lambda t: relay(
                t, lane.tracked_in, lane.analytics_in, lane.track), sid)
            self._spawn("analytics", lambda t: self._analyze(t, lane), sid)
        else:
            self._spawn("track", lambda t: relay(
                t, lane.tracked_in, lane.overlay_in, lane.track), sid)
        self._spawn("overlay", lambda t: relay(
            t, lane.overlay_in, lane.sink_in, lane.draw), sid)
        self._spawn("sink", lambda t: self._sink(t, lane), sid)

    def _spawn(self, stage: str, body: Callable[[StageThread], None],
               sid: str | None) -> None:
        thread = StageThread(stage, body, self.state, sid)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _capture(self, thread: StageThread, lane: Lane) -> None:
        frames = lane.capture.frames(self.state.stopping)
        try:
            for frame in frames:
                thread.current = (frame.source_id, frame.index)
                if not self.scheduler.offer(frame):
                    return
        finally:
            frames.close()  # closes the source
            self.scheduler.end(lane.source_id)

    def _analyze(self, thread: StageThread, lane: Lane) -> None:
        assert lane.analyze is not None and lane.analytics_in is not None
        try:
            relay(thread, lane.analytics_in, lane.overlay_in, lane.analyze)
        finally:
            lane.analyze.close()

    def _sink(self, thread: StageThread, lane: Lane) -> None:
        try:
            while (item := get(lane.sink_in, self.state)) is not None:
                if isinstance(item, EndOfStream):
                    return
                thread.current = (item.frame.source_id, item.frame.index)
                lane.write(item)
        finally:
            lane.write.close()
            self._left(lane.source_id)

    def _shutdown(self) -> None:
        self.state.stopping.set()
        self.state.abort.set()  # every loop leaves within POLL_S
        with self._lock:
            sources, lanes = list(self.sources), list(self.lanes.values())
            threads = list(self._threads)
        opened = {lane.source_id for lane in lanes}
        for source in sources:
            source.stop()
            if source.source_id not in opened:  # never got a capture thread
                source.close()
        # Only the sinks must finish (they finalise files). Capture may sit in a
        # blocking read and inference in a long model call; both are daemons.
        deadline = time.perf_counter() + 1.0
        for t in threads:
            if t.stage == "sink":
                t.join(timeout=max(0.0, deadline - time.perf_counter()))
        for lane in lanes:  # sinks of threads that never started
            if lane.analyze is not None:
                lane.analyze.close()
            lane.write.close()
        if self._progress is not None:
            self._progress.close()
        if self.live_view is not None:
            self.live_view.close()
        if self.events is not None:  # a dead receiver must not hold the exit
            self.events.close(EVENTS_CLOSE_S)
            self.metrics.events_dropped = dict(self.events.dropped)
        self.metrics.finish()


def open_sources(sources: list[Source], state: RunState, metrics: Metrics) -> None:
    """Open all sources at once (network opens can take their timeout), in daemon
    threads: a Ctrl-C while a stream connects must not wait for it. Sources that
    fail are marked failed; ``SourceError`` when none of several opens."""
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
    if sources and len(messages) == len(sources):
        raise SourceError("; ".join(messages))
    for message in messages:
        log.error("%s (other sources continue)", message)


__all__ = ["Pipeline", "PipelineError", "open_sources"]
