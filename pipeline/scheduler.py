"""The one inference scheduler.

It owns everything between a source's capture and its tracker: which frames
need the detector (each source's ``DetectPolicy``), preparing them, batching
frames of every source into one detector call, how many calls are in flight,
routing results back to each source in order, live freshness (a live source's
stale frames are replaced before any work is spent on them) and end of stream.
Sources join and leave while it runs.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from core.types import Detections, Frame, Result
from engines.base import Detector, Prepared
from pipeline.metrics import Metrics
from pipeline.policy import DetectPolicy, EveryFrame
from pipeline.stages.machinery import (
    POLL_S,
    EndOfStream,
    RunState,
    StageThread,
    put,
    relay,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Pending:
    """A frame on its way to the detector: its prepared input (None when the
    source's policy skips the detector for it) and the seconds preparing took."""

    frame: Frame
    prepared: Prepared | None = None
    prepare_s: float = 0.0


class Preprocess:
    """Frame -> ``Pending``: the detector's prepared input, unless the policy
    skips the detector for this frame."""

    def __init__(self, detector: Detector, metrics: Metrics,
                 policy: DetectPolicy | None = None) -> None:
        self.detector, self.metrics = detector, metrics
        self.policy = policy or EveryFrame()

    def __call__(self, frame: Frame) -> Pending:
        if not self.policy.detect_now(frame):
            return Pending(frame)
        started = time.perf_counter()
        prepared = self.detector.prepare(frame.image)
        elapsed = time.perf_counter() - started
        self.metrics.record("preprocess", elapsed)
        return Pending(frame, prepared, elapsed)


class BatchInfer:
    """Pending frames (any mix of sources) -> one ``Result`` each, in one
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
        run = [p.prepared for p in batch if p.prepared is not None]
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
        for item in batch:
            self.metrics.source(item.frame.source_id).processed += 1
            if item.prepared is None:  # skipped by the policy: the tracker predicts
                results.append(Result(item.frame, Detections.empty(), predicted=True))
            else:
                results.append(Result(
                    item.frame, self.detector.select(next(found)),
                    {"preprocess": item.prepare_s, "infer": per_frame}))
        return results


class LatestFrames:
    """The freshest frames of each live source waiting for inference.

    A source keeps at most ``keep`` frames (``put``'s argument): a newer frame
    pushes out the oldest (``put`` returns 1: one dropped), before any
    preprocessing is spent on it. ``take`` hands out up to ``n`` frames, the
    oldest of each of distinct sources, starting one source later each call
    (round-robin, so a fast camera cannot starve a slow one). A source's
    end-of-stream marker comes out after its last frame.
    """

    def __init__(self) -> None:
        self._frames: dict[str, collections.deque[Frame]] = {}
        self._ended: list[EndOfStream] = []
        self._order: list[str] = []
        self._start = 0
        self._cond = threading.Condition()

    def put(self, source_id: str, frame: Frame, keep: int = 1) -> int:
        with self._cond:
            if source_id not in self._order:
                self._order.append(source_id)
            waiting = self._frames.setdefault(source_id, collections.deque())
            waiting.append(frame)
            dropped = 0
            while len(waiting) > max(1, keep):
                waiting.popleft()
                dropped += 1
            self._cond.notify()
            return dropped

    def end(self, marker: EndOfStream) -> None:
        with self._cond:
            self._ended.append(marker)
            self._cond.notify()

    def take(self, n: int) -> list[Frame | EndOfStream]:
        """Up to ``n`` waiting frames (oldest-served source first), then the
        markers of sources whose frames are all taken; never blocks."""
        with self._cond:
            out: list[Frame | EndOfStream] = []
            order = self._order[self._start:] + self._order[:self._start]
            for sid in order:
                if len(out) >= n:
                    break
                if sid in self._frames:
                    waiting = self._frames[sid]
                    out.append(waiting.popleft())
                    if not waiting:
                        del self._frames[sid]
            if self._order:
                self._start = (self._start + 1) % len(self._order)
            done = [m for m in self._ended if m.source_id not in self._frames]
            self._ended = [m for m in self._ended if m.source_id in self._frames]
            for marker in done:  # a source that ended leaves the rotation
                self._order.remove(marker.source_id)
            if self._order:
                self._start %= len(self._order)
            return out + done

    def wait(self, timeout: float) -> None:
        """Return when something is waiting, or after ``timeout`` seconds."""
        with self._cond:
            if not self._frames and not self._ended:
                self._cond.wait(timeout)


def get_batch(q: queue.Queue[T], first: T, max_items: int,
              max_wait_s: float) -> list[T]:
    """``first`` plus whatever arrives within ``max_wait_s``, up to ``max_items``
    frames (an end-of-stream marker is returned in the list like any item)."""
    items = [first]
    deadline = time.perf_counter() + max_wait_s
    while sum(not isinstance(i, EndOfStream) for i in items) < max_items:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        try:
            items.append(q.get(timeout=remaining))
        except queue.Empty:
            break
    return items


def run_now(fn: Callable[..., T], *args: object) -> Future[T]:
    """``fn(*args)`` on this thread, as a finished ``Future`` (what an executor's
    ``submit`` returns), so one loop serves calls run here or on a pool."""
    future: Future[T] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:
        future.set_exception(exc)
    return future


@dataclass
class Route:
    """One source as the scheduler sees it: ``live`` (keep only the freshest
    frames) or a file (never drop), how its frames are prepared, where a file's
    captured frames wait (``inbox``) and where its results go (``out``)."""

    live: bool
    preprocess: Preprocess
    inbox: queue.Queue[Frame | EndOfStream]
    out: queue.Queue[Result | EndOfStream]


Item = Pending | EndOfStream


class Scheduler:
    """Runs the detector for every source that has joined.

    Capture threads hand frames over with ``offer`` and end with ``end``; a
    file source's frames are prepared on its own thread (``prepare_files``),
    a live source's only when inference takes them (so replaced frames cost
    nothing). ``run`` is the inference thread's loop: batches of up to
    ``batch`` frames, waiting at most ``max_wait_s`` for a batch to fill.
    Where the detector allows it (``calls_in_flight``), ``overlap`` is on and
    no live source is in the run, the next call starts before the last one's
    results are handed on, so the cores never wait between calls; a live
    source keeps one call at a time (its freshest frame must not queue behind
    another call). ``run`` ends when every source has ended, unless
    ``keep_alive`` (a server waiting for sources to join), then at a stop.
    """

    def __init__(self, detector: Detector, metrics: Metrics, state: RunState, *,
                 batch: int = 4, max_wait_s: float = 0.005, queue_size: int = 8,
                 overlap: bool = True, keep_alive: bool = False) -> None:
        self.detector, self.metrics, self.state = detector, metrics, state
        self.max_batch = max(1, min(batch, detector.max_batch))
        self.max_wait_s, self.overlap, self.keep_alive = max_wait_s, overlap, keep_alive
        self.prepared: queue.Queue[Item] = queue.Queue(queue_size)
        self.live = LatestFrames()
        self.routes: dict[str, Route] = {}
        self.closed = False  # run() has ended: no source may join
        self._lock = threading.Lock()

    def join(self, source_id: str, route: Route) -> None:
        """A source joins; raises ``RuntimeError`` once the run has ended."""
        with self._lock:
            if self.closed:
                raise RuntimeError("the pipeline has finished: no source can join")
            if source_id in self.routes:
                raise ValueError(f"source {source_id!r} is already running")
            self.routes[source_id] = route

    def offer(self, frame: Frame) -> bool:
        """From a capture thread: a live frame replaces stale ones (counted as
        dropped); a file frame waits for room. False once the run aborts."""
        route = self.routes[frame.source_id]
        if route.live:
            keep = route.preprocess.policy.keep
            dropped = self.live.put(frame.source_id, frame, keep)
            self.metrics.source(frame.source_id).dropped += dropped
            return True
        return put(route.inbox, frame, self.state)

    def end(self, source_id: str) -> None:
        """From a capture thread, after its last frame."""
        route = self.routes[source_id]
        if route.live:
            self.live.end(EndOfStream(source_id))
        else:
            put(route.inbox, EndOfStream(source_id), self.state)

    def prepare_files(self, thread: StageThread, source_id: str) -> None:
        """The loop of a file source's preprocess thread."""
        route = self.routes[source_id]
        relay(thread, route.inbox, self.prepared, route.preprocess)

    def _depth(self) -> int:
        if not self.overlap or any(r.live for r in self.routes.values()):
            return 1
        return max(1, self.detector.calls_in_flight)

    def run(self, thread: StageThread) -> None:
        """The inference loop: batches -> each source's results, in order."""
        infer = BatchInfer(self.detector, self.metrics)
        calls: ThreadPoolExecutor | None = None
        waiting: collections.deque[tuple[list[Item], list[Pending],
                                         Future[tuple[list[Detections], float]]]]
        waiting = collections.deque()
        try:
            while (items := self._next()) is not None:
                self.metrics.record_depth("infer", self.prepared.qsize())
                batch = [i for i in items if isinstance(i, Pending)]
                depth = self._depth()
                if depth > 1 and calls is None:
                    calls = ThreadPoolExecutor(depth, thread_name_prefix="infer-call")
                submit = calls.submit if depth > 1 and calls else run_now
                waiting.append((items, batch, submit(infer.detect, batch)))
                ended = len(batch) < len(items)  # hand everything on at an end
                while waiting and (len(waiting) >= depth or ended):
                    if not self._hand_on(thread, infer, *waiting.popleft()):
                        return
        finally:
            with self._lock:
                self.closed = True
            if calls:
                calls.shutdown(wait=False, cancel_futures=True)

    def _next(self) -> list[Item] | None:
        """The next batch of pending frames (plus end markers); None when the
        run is over (every source ended, or a stop in keep-alive) or aborts."""
        while not self.state.abort.is_set():
            with self._lock:
                if not self.routes and (not self.keep_alive
                                        or self.state.stopping.is_set()):
                    self.closed = True
                    return None
                any_live = any(r.live for r in self.routes.values())
            if any_live:
                items: list[Item] = [
                    self.routes[f.source_id].preprocess(f) if isinstance(f, Frame)
                    else f for f in self.live.take(self.max_batch)]
                while len(items) < self.max_batch:
                    try:
                        items.append(self.prepared.get_nowait())
                    except queue.Empty:
                        break
                if items:
                    return items
                self.live.wait(POLL_S / 10)
                continue
            try:
                first = self.prepared.get(timeout=POLL_S)
            except queue.Empty:
                continue
            return get_batch(self.prepared, first, self.max_batch, self.max_wait_s)
        return None

    def _hand_on(self, thread: StageThread, infer: BatchInfer, items: list[Item],
                 batch: list[Pending],
                 call: Future[tuple[list[Detections], float]]) -> bool:
        if batch:
            thread.current = (batch[0].frame.source_id, batch[0].frame.index)
            for result in infer.results(batch, *call.result()):
                if not put(self.routes[result.frame.source_id].out, result,
                           self.state):
                    return False
        for marker in (i for i in items if isinstance(i, EndOfStream)):
            with self._lock:
                route = self.routes.pop(marker.source_id)
            put(route.out, marker, self.state)
        return True
