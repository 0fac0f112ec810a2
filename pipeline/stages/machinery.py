"""The threaded stage machinery: bounded queues with timeouts, one stop signal,
an end-of-stream marker, and errors that name the stage, source and frame.

Every ``put``/``get`` waits in short slices and checks the abort flag, so no
thread can block forever and the whole pipeline stops within a fraction of a
second once anything fails.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from core.types import Frame

log = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")

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


def put(q: queue.Queue[T], item: T, state: RunState) -> bool:
    """Blocking put that gives up (returns False) once the run aborts."""
    while not state.abort.is_set():
        try:
            q.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


def put_drop_oldest(q: queue.Queue[T], item: T) -> int:
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


def get(q: queue.Queue[T], state: RunState, timeout: float | None = None
        ) -> T | None:
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


def relay(thread: StageThread, inbox: queue.Queue[T | EndOfStream],
          outbox: queue.Queue[U | EndOfStream], work: Callable[[T], U]) -> None:
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


def wait_for(threads: Callable[[], list[threading.Thread]], state: RunState,
             drain_timeout_s: float) -> None:
    """Wait until every thread ``threads()`` lists has ended (the list may grow
    while waiting); once a stop is requested, allow them ``drain_timeout_s`` to
    finish what is queued, then abort the rest."""
    stop_seen: float | None = None
    while not state.abort.is_set():
        alive = [t for t in threads() if t.is_alive()]
        if not alive:
            return
        if state.stopping.is_set():
            stop_seen = stop_seen or time.perf_counter()
            if time.perf_counter() - stop_seen > drain_timeout_s:
                log.warning("queued frames did not finish within %.1f s; "
                            "abandoning them", drain_timeout_s)
                state.abort.set()
                return
        alive[0].join(timeout=0.05)
