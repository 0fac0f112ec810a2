"""One fan-out from the analytics to every place events go.

The pipeline calls :meth:`EventFanout.publish` on its own threads, where a
receiver that is slow, down or never answers must cost nothing: each target
gets a bounded queue and a daemon thread of its own, so a stuck webhook delays
only the webhook's queue, and an event that cannot wait is dropped and counted
instead of holding a frame back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod

from core.errors import InputError
from core.events import Event

log = logging.getLogger(__name__)

_STOP = object()  # wakes a delivery thread waiting on an empty queue


class EventTargetError(InputError):
    """A target that cannot be built from what the user gave (a bad URL, an
    unwritable file); the message names the value, without credentials."""


class EventTarget(ABC):
    """A place events go. :class:`EventFanout` calls :meth:`deliver` from one
    thread per target, one event at a time, so a target needs no locking.

    ``deliver`` may block and may raise; whether and when the fan-out tries the
    same event again is the target's policy, :meth:`retry_delay`.
    """

    #: Events this target may hold waiting before new ones are dropped.
    queue_size: int = 1000

    @property
    @abstractmethod
    def name(self) -> str:
        """``kind:where`` for logs and drop counts; never carries credentials."""

    @abstractmethod
    def deliver(self, event: Event) -> None:
        """Send one event; raise when it was not accepted."""

    def retry_delay(self, attempt: int, error: Exception) -> float | None:
        """Seconds to wait before try ``attempt + 1`` of an event whose try
        ``attempt`` (1-based) raised ``error``; ``None`` drops the event."""
        return None

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for deliveries accepted by :meth:`deliver`
        but not yet confirmed (MQTT acknowledgements); return how many are
        still unconfirmed. Targets that confirm inside ``deliver`` have none."""
        return 0

    def close(self) -> None:
        """Release what the target holds (files, connections)."""


class _Lane:
    """One target's queue, thread and counts."""

    def __init__(self, target: EventTarget, name: str) -> None:
        self.target = target
        self.name = name
        self.queue: queue.Queue[object] = queue.Queue(maxsize=max(1, target.queue_size))
        self.lock = threading.Lock()
        self.delivered = 0
        self.dropped = 0
        self.in_flight = False
        self.closing = False
        self.abandoned = False
        self.deadline = float("inf")
        self.wake = threading.Event()  # set when the lane must give up waiting
        self.warned: set[str] = set()
        self.thread = threading.Thread(
            target=self._run, name=f"events-{name}", daemon=True
        )
        self.thread.start()

    def offer(self, event: Event) -> None:
        with self.lock:
            if self.closing:
                self._drop(1, "the fan-out is closed")
                return
            try:
                self.queue.put_nowait(event)
            except queue.Full:
                self._drop(1, f"its queue of {self.queue.maxsize} is full")

    def _drop(self, n: int, why: str, error: Exception | None = None) -> None:
        """Count ``n`` dropped events (caller holds the lock); warn once."""
        self.dropped += n
        if n and "drop" not in self.warned:
            self.warned.add("drop")
            log.warning(
                "events to %s are being dropped (%s); counting the rest quietly",
                self.name,
                why,
                # a network failure is a condition, not a fault: no traceback
                exc_info=None if isinstance(error, OSError) else error,
            )

    def _run(self) -> None:
        try:
            while True:
                if not self.closing:
                    # close() puts _STOP on an empty queue; a full one returns
                    # at once anyway, so this wait always ends after close().
                    item = self.queue.get()
                else:
                    try:
                        item = self.queue.get_nowait()
                    except queue.Empty:
                        break
                if item is _STOP:
                    continue  # only wakes the lane; it leaves once drained
                with self.lock:
                    if self.abandoned:
                        return
                    self.in_flight = True
                ok, error = self._deliver(item)  # type: ignore[arg-type]
                with self.lock:
                    self.in_flight = False
                    if self.abandoned:
                        return
                    if ok:
                        self.delivered += 1
                    else:
                        self._drop(1, f"{type(error).__name__}: {error}", error)
            left = self.target.flush(max(0.0, self.deadline - time.monotonic()))
            with self.lock:
                if not self.abandoned and left:
                    self.delivered -= left
                    self._drop(left, "unconfirmed when the fan-out closed")
        except Exception:
            log.exception("event delivery to %s failed", self.name)
        finally:
            try:
                self.target.close()
            except Exception:
                log.exception("closing event target %s failed", self.name)

    def _deliver(self, event: Event) -> tuple[bool, Exception | None]:
        attempt = 0
        while True:
            try:
                self.target.deliver(event)
                return True, None
            except Exception as exc:
                attempt += 1
                delay = self.target.retry_delay(attempt, exc)
                if delay is None:
                    return False, exc
                if time.monotonic() + delay > self.deadline:
                    return False, exc  # closing: the retry would come too late
                if "retry" not in self.warned:
                    self.warned.add("retry")
                    log.warning(
                        "event delivery to %s failed (%s: %s); retrying",
                        self.name,
                        type(exc).__name__,
                        exc,
                    )
                if self.wake.wait(delay):
                    return False, exc

    def start_closing(self, deadline: float) -> None:
        with self.lock:
            self.closing = True
            self.deadline = deadline
        try:
            self.queue.put_nowait(_STOP)
        except queue.Full:
            pass  # not waiting: it sees ``closing`` after its next event

    def settle(self) -> None:
        """After the close deadline: count what the lane still holds (queued,
        and in hand when its thread is stuck) as dropped; a stuck thread
        stops at its next step without delivering more."""
        with self.lock:
            if self.abandoned:
                return
            self.abandoned = self.thread.is_alive()
            left = int(self.abandoned and self.in_flight) + len(self._drain())
            if left:
                self._drop(left, "undelivered when the fan-out closed")
        self.wake.set()

    def _drain(self) -> list[object]:
        """Empty the queue (caller holds the lock); the events it held."""
        items = []
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return items
            if item is not _STOP:
                items.append(item)


class EventFanout:
    """Delivers every published :class:`Event` to every target.

    ``publish`` never blocks: it puts the event on each target's bounded queue
    (or counts it in :attr:`dropped` when that queue is full). Each target
    delivers on its own daemon thread. ``close`` delivers what it can within
    its timeout and counts the rest as dropped, so a run ends on time whatever
    the receivers do.
    """

    def __init__(self, targets: list[EventTarget]) -> None:
        self._lanes: list[_Lane] = []
        seen: dict[str, int] = {}
        for target in targets:
            name = target.name
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:  # two callbacks of one name still count apart
                name = f"{name}#{seen[name]}"
            self._lanes.append(_Lane(target, name))
        self._closed = False

    @property
    def targets(self) -> list[EventTarget]:
        return [lane.target for lane in self._lanes]

    @property
    def dropped(self) -> dict[str, int]:
        """Events not delivered, by target name (queue full, given up, closed)."""
        return {lane.name: lane.dropped for lane in self._lanes}

    @property
    def delivered(self) -> dict[str, int]:
        """Events delivered, by target name."""
        return {lane.name: lane.delivered for lane in self._lanes}

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every target; returns at once."""
        for lane in self._lanes:
            lane.offer(event)

    def close(self, timeout_s: float = 2.0) -> None:
        """Deliver what can be delivered within ``timeout_s`` seconds, then
        count what is left as dropped and return; targets are closed by their
        own threads once those finish."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + max(0.0, timeout_s)
        for lane in self._lanes:
            lane.start_closing(deadline)
        for lane in self._lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        for lane in self._lanes:
            lane.settle()
            if lane.dropped:
                log.info("events to %s: %d dropped", lane.name, lane.dropped)

    def __enter__(self) -> EventFanout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
