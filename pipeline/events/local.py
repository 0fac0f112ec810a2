"""Targets inside this process: a JSON Lines file and Python callbacks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.events import Event
from pipeline.events.fanout import EventTarget, EventTargetError


class JsonlEventTarget(EventTarget):
    """One event per line (``Event.to_json()``), flushed per event so a killed
    run leaves whole lines. The file is opened (and truncated) here, so an
    unwritable path fails when the run is built, not at its first event."""

    # A file keeps up with any event rate; the queue only absorbs a slow disk.
    queue_size = 10_000

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._file = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise EventTargetError(
                f"{self.path}: cannot open the events file for writing ({exc.strerror})"
            ) from exc

    @property
    def name(self) -> str:
        return f"jsonl:{self.path}"

    def deliver(self, event: Event) -> None:
        self._file.write(event.to_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class CallbackTarget(EventTarget):
    """Calls ``fn(event)`` on the target's own thread (never the pipeline's),
    so a slow callback delays only later callback calls. An exception drops
    that event (counted, logged once with its traceback); it is not retried,
    because a callback that failed once is likely to fail again."""

    def __init__(self, fn: Callable[[Event], object], queue_size: int = 1000) -> None:
        if not callable(fn):
            raise EventTargetError(f"event callback {fn!r} is not callable")
        self.fn = fn
        self.queue_size = queue_size

    @property
    def name(self) -> str:
        label = getattr(self.fn, "__qualname__", None) or type(self.fn).__name__
        return f"callback:{label}"

    def deliver(self, event: Event) -> None:
        self.fn(event)
