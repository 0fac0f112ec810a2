"""The threaded stage machinery: bounded queues with timeouts, one stop signal,
an end-of-stream marker, and errors that name the stage, source and frame.

Every ``put``/``get`` waits in short slices and checks the abort flag, so no
thread can block forever and the whole pipeline stops within a fraction of a
second once anything fails.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from core.types import Frame

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often blocked threads re-check the abort flag


@dataclass(frozen=True)
class EndOfStream:
    """Flows after a source's last frame; each stage forwards it and moves on."""

    source_id: str


class StageError(RuntimeError):
    """A stage failed; names the stage, the source and the frame index."""

    def __init__(
        self, stage: str, source_id: str | None, index: int | None, cause: BaseException
    ) -> None:
        where = f"source {source_id!r} frame {index}" if source_id else "start-up"
        super().__init__(
            f"stage {stage!r} failed on {where}: {type(cause).__name__}: {cause}"
        )
        self.stage, self.source_id, self.index = stage, source_id, index
        self.cause = cause


class RunState:
    """Shared by all stages: ``stopping`` (finish what is queued, read no more),
    ``abort`` (leave now) and the first error."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.abort = threading.Event()
        self.error: StageError | None = None
        self._lock = threading.Lock()

    def fail(self, error: StageError) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
        self.abort.set()
        self.stopping.set()


def put(q: queue.Queue[Any], item: Any, state: RunState) -> bool:
    """Blocking put that gives up (returns False) once the run aborts."""
    while not state.abort.is_set():
        try:
            q.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


def put_drop_oldest(q: queue.Queue[Any], item: Any) -> int:
    """Put without waiting; when full, discard the oldest queued items first.

    Returns how many were dropped (live sources: latency over completeness).
    Only for a queue with this one producer, which sends its end-of-stream last.
    """
    dropped = 0
    while True:
        try:
            q.put_nowait(item)
            return dropped
        except queue.Full:
            try:
                q.get_nowait()
                dropped += 1
            except queue.Empty:
                continue


def get(q: queue.Queue[Any], state: RunState, timeout: float | None = None) -> Any:
    """Blocking get; returns None on abort, or when ``timeout`` passes."""
    waited = 0.0
    while not state.abort.is_set():
        try:
            return q.get(timeout=POLL_S)
        except queue.Empty:
            waited += POLL_S
            if timeout is not None and waited >= timeout:
                return None
    return None


class StageThread(threading.Thread):
    """Runs ``body(thread)``; an exception becomes a ``StageError`` in ``state``
    naming the stage and ``thread.current`` = (source_id, frame index)."""

    def __init__(
        self,
        stage: str,
        body: Callable[[StageThread], None],
        state: RunState,
        source_id: str | None = None,
    ) -> None:
        name = f"{stage}:{source_id}" if source_id else stage
        super().__init__(name=name, daemon=True)
        self.stage = stage
        self.body = body
        self.state = state
        self.current: tuple[str | None, int | None] = (source_id, None)
        self.cpu_seconds = 0.0  # this thread's own CPU time, set when it ends

    def run(self) -> None:
        try:
            self.body(self)
        except BaseException as exc:  # surfaces in the caller's thread
            error = StageError(self.stage, *self.current, exc)
            log.error("%s", error)
            log.debug("stage traceback", exc_info=True)
            self.state.fail(error)
        finally:
            self.cpu_seconds = time.thread_time()


def get_batch(q: queue.Queue[Any], first: Any, max_items: int,
              max_wait_s: float) -> list[Any]:
    """``first`` plus whatever arrives within ``max_wait_s``, up to ``max_items``
    items (an end-of-stream marker is returned in the list like any item)."""
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


def run_now(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """``fn(*args)`` on this thread, as a finished ``Future`` (what an executor's
    ``submit`` returns), so one loop serves calls run here or on a pool."""
    future: Future[Any] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:
        future.set_exception(exc)
    return future


def relay(thread: StageThread, inbox: queue.Queue[Any], outbox: queue.Queue[Any],
          work: Callable[[Any], Any]) -> None:
    """A per-source stage loop: ``outbox.put(work(item))`` for each item, then
    forward the end-of-stream marker and stop (or leave on abort)."""
    state = thread.state
    while (item := get(inbox, state)) is not None:
        if isinstance(item, EndOfStream):
            put(outbox, item, state)
            return
        frame = item if isinstance(item, Frame) else item.frame
        thread.current = (frame.source_id, frame.index)
        if not put(outbox, work(item), state):
            return


class LatestFrames:
    """The freshest frames of each live source waiting for inference.

    A source keeps at most ``keep`` frames (``put``'s argument; 1 unless it
    detects every N frames): a newer frame pushes out the oldest (``put``
    returns 1: one dropped), before any preprocessing is spent on it. Only the
    next detect frame needs inference; with ``--detect-every N`` the N - 1
    frames before it wait just for the tracker, so they are kept rather than
    dropped while the detector runs. ``take`` hands out up to ``n`` frames, the
    oldest of each of distinct sources, starting one source later each call
    (round-robin, so a fast camera cannot starve a slow one). A source's
    end-of-stream marker comes out after its last frame.
    """

    def __init__(self) -> None:
        self._frames: dict[str, collections.deque[Any]] = {}
        self._ended: list[EndOfStream] = []
        self._order: list[str] = []
        self._start = 0
        self._cond = threading.Condition()

    def put(self, source_id: str, frame: Any, keep: int = 1) -> int:
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

    def take(self, n: int) -> list[Any]:
        """Up to ``n`` waiting frames (oldest-served source first), then the
        markers of sources whose frames are all taken; never blocks."""
        with self._cond:
            out: list[Any] = []
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
            return out + done

    def wait(self, timeout: float) -> None:
        """Return when something is waiting, or after ``timeout`` seconds."""
        with self._cond:
            if not self._frames and not self._ended:
                self._cond.wait(timeout)


def wait_for(threads: list[threading.Thread], state: RunState,
             drain_timeout_s: float) -> None:
    """Wait until ``threads`` end; once a stop is requested, allow them
    ``drain_timeout_s`` to finish what is queued, then abort the rest."""
    stop_seen: float | None = None
    while any(t.is_alive() for t in threads) and not state.abort.is_set():
        if state.stopping.is_set():
            stop_seen = stop_seen or time.perf_counter()
            if time.perf_counter() - stop_seen > drain_timeout_s:
                log.warning("queued frames did not finish within %.1f s; "
                            "abandoning them", drain_timeout_s)
                state.abort.set()
                return
        for t in threads:
            t.join(timeout=0.05)
