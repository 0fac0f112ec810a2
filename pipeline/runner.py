"""``Pipeline``: wires sources → preprocess → infer → track → overlay → sinks.

Threads per source: capture, preprocess, track, overlay, sink. One inference
thread serves all sources and batches their frames (up to ``batch``, waiting at
most ``max_wait_ms``), then routes results back by source. The work of each
stage lives in ``pipeline.stages`` and each lane in ``pipeline.lanes``; this
module only wires queues and threads.
"""

from __future__ import annotations

import collections
import logging
import queue
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tqdm import tqdm

from engines.base import Detector
from engines.build import runtime_info
from pipeline.config import PipelineConfig
from pipeline.lanes import InferFeed, Lane, open_lane, open_sources
from pipeline.metrics import Metrics
from pipeline.sources import Source, make_source, unique_ids
from pipeline.stages import (
    BatchInfer,
    EndOfStream,
    LatestFrames,
    RunState,
    StageThread,
    get,
    put,
    relay,
    run_now,
    wait_for,
)

log = logging.getLogger(__name__)


class PipelineError(RuntimeError):
    """The run failed; the message names the stage, source and frame."""


class Pipeline:
    """Runs one detector over one or more sources. ``run()`` blocks until done."""

    def __init__(self, sources: list[str] | list[Source], detector: Detector,
                 config: PipelineConfig | None = None) -> None:
        self.config = config or PipelineConfig()
        self.detector = detector
        ids = iter(unique_ids([s for s in sources if isinstance(s, str)]))
        self.sources: list[Source] = [
            s if isinstance(s, Source) else make_source(s, self.config.sources,
                                                        next(ids))
            for s in sources]
        if not self.sources:
            raise ValueError("no sources given")
        self.state = RunState()
        self.metrics = Metrics(runtime=runtime_info(detector))
        self.infer_in: queue.Queue[Any] = queue.Queue(self.config.queue_size)
        self.live = LatestFrames()  # live sources' freshest frames
        self.lanes: dict[str, Lane] = {}
        self._threads: list[StageThread] = []
        self._progress: tqdm | None = None
        self.live_view: Any = None  # pipeline.live_view.LiveView with --serve

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
        if self.metrics.runtime:
            log.info("model runs on %s", self.metrics.runtime)
        try:
            open_sources(self.sources, self.state, self.metrics)
            if self.state.stopping.is_set():
                return self.metrics
            if self.config.outputs.serve:
                from pipeline.live_view import LiveView

                self.live_view = LiveView(self.config.outputs.serve, self.metrics)
                self.live_view.start()
            self._open_lanes()
            self._start_threads()
            wait_for([t for t in self._threads if t.stage == "sink"], self.state,
                     self.config.drain_timeout_s)
        finally:
            self._shutdown()
        if self.state.error is not None:
            raise PipelineError(str(self.state.error)) from self.state.error.cause
        return self.metrics

    def _open_lanes(self) -> None:
        for source in self.sources:
            if self.metrics.source(source.source_id).status != "failed":
                extra = ([self.live_view.sink(source.source_id)]
                         if self.live_view is not None else [])
                self.lanes[source.source_id] = open_lane(
                    source, self.detector, self.config, self.metrics,
                    self.request_stop, self._written,
                    rtsp_url=self._rtsp_url(source.source_id), extra_sinks=extra)
        total = sum(lane.source.frame_count for lane in self.lanes.values())
        if self.config.progress and total and not any(
                lane.source.live for lane in self.lanes.values()):
            self._progress = tqdm(total=total, unit="frame", desc="frames",
                                  dynamic_ncols=True, leave=False)

    def _written(self) -> None:
        if self._progress is not None:
            self._progress.update(1)

    def _rtsp_url(self, source_id: str) -> str:
        """Where ``--rtsp-out`` pushes this source: the URL itself for one source,
        ``URL/SOURCE_ID`` for several."""
        url = self.config.outputs.rtsp_out
        if not url or len(self.sources) == 1:
            return url
        return f"{url.rstrip('/')}/{source_id}"

    def _start_threads(self) -> None:
        for sid, lane in self.lanes.items():
            self._spawn("capture", lambda t, lane=lane: self._capture(t, lane), sid)
            if not lane.source.live:  # live frames are prepared when inference is free
                self._spawn("preprocess", lambda t, lane=lane: relay(
                    t, lane.captured, self.infer_in, lane.preprocess), sid)
        self._spawn("infer", self._infer, None)
        for sid, lane in self.lanes.items():
            self._spawn("track", lambda t, lane=lane: relay(
                t, lane.tracked_in, lane.overlay_in, lane.track), sid)
            self._spawn("overlay", lambda t, lane=lane: relay(
                t, lane.overlay_in, lane.sink_in, lane.draw), sid)
            self._spawn("sink", lambda t, lane=lane: self._sink(t, lane), sid)

    def _spawn(self, stage: str, body: Any, sid: str | None) -> None:
        thread = StageThread(stage, body, self.state, sid)
        self._threads.append(thread)
        thread.start()

    def _capture(self, thread: StageThread, lane: Lane) -> None:
        state, counts = self.state, lane.capture.counts
        frames = lane.capture.frames(state.stopping)
        sid = lane.source.source_id
        try:
            for frame in frames:
                thread.current = (frame.source_id, frame.index)
                if lane.source.live:
                    counts.dropped += self.live.put(sid, frame, lane.preprocess.keep)
                elif not put(lane.captured, frame, state):
                    return
        finally:
            frames.close()  # closes the source
            if lane.source.live:
                self.live.end(EndOfStream(sid))
            else:
                put(lane.captured, EndOfStream(sid), state)

    def _infer(self, thread: StageThread) -> None:
        """Batches from the feed -> each lane's tracker, in feed order. Where the
        detector allows it (``calls_in_flight``) and every source is a file, the
        next batch's model call starts before this one's results are handed on,
        so the cores never wait between calls; a live source keeps one call at a
        time (its freshest frame must not queue behind another call), and so
        does ``--detect-every auto`` (it paces itself by the call's time)."""
        state, cfg = self.state, self.config
        infer = BatchInfer(self.detector, self.metrics)
        max_batch = max(1, min(cfg.batch, self.detector.max_batch))
        feed = InferFeed(self.infer_in, self.live, self.lanes, state,
                         cfg.max_wait_ms / 1000)
        overlap = not feed.any_live and cfg.detect_every != "auto"
        depth = max(1, self.detector.calls_in_flight) if overlap else 1
        calls = (ThreadPoolExecutor(depth, thread_name_prefix="infer-call")
                 if depth > 1 else None)
        submit = calls.submit if calls else run_now
        waiting: collections.deque[tuple[list[Any], list[Any], Future[Any]]] = (
            collections.deque())
        open_sources = set(self.lanes)

        def hand_on(items: list[Any], batch: list[Any], call: Future[Any]) -> bool:
            if batch:
                thread.current = (batch[0][0].source_id, batch[0][0].index)
                for result in infer.results(batch, *call.result()):
                    if not put(self.lanes[result.frame.source_id].tracked_in,
                               result, state):
                        return False
            for eos in (i for i in items if isinstance(i, EndOfStream)):
                open_sources.discard(eos.source_id)
                put(self.lanes[eos.source_id].tracked_in, eos, state)
            return True

        try:
            while open_sources and (items := feed.next(max_batch)) is not None:
                self.metrics.record_depth("infer", self.infer_in.qsize())
                batch = [i for i in items if not isinstance(i, EndOfStream)]
                waiting.append((items, batch, submit(infer.detect, batch)))
                ended = len(batch) < len(items)  # hand everything on at an end
                while waiting and (len(waiting) >= depth or ended):
                    if not hand_on(*waiting.popleft()):
                        return
        finally:
            if calls:
                calls.shutdown(wait=False, cancel_futures=True)

    def _sink(self, thread: StageThread, lane: Lane) -> None:
        try:
            while (item := get(lane.sink_in, self.state)) is not None:
                if isinstance(item, EndOfStream):
                    return
                thread.current = (item.frame.source_id, item.frame.index)
                lane.write(item)
        finally:
            lane.write.close()

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
            lane.write.close()
        if self._progress is not None:
            self._progress.close()
        if self.live_view is not None:
            self.live_view.close()
        self.metrics.finish()


__all__ = ["Pipeline", "PipelineConfig", "PipelineError"]
