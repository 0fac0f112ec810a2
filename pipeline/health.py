"""Source health as events: ``source_down`` when a live source's frames stop,
``source_up`` when they come back (``Source.on_health``), published as
``core.events.Event`` where the source's line and zone events go.

A source with lines or zones already has an ``EventLog`` (``OUT/SOURCE.events.
jsonl`` and the event callbacks); one without gets a ``HealthLog``, which opens
that file only when the first health event comes, so a run whose cameras never
fail writes no empty events files.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import IO

from core.events import Event
from core.types import Result
from pipeline.sinks import Sink
from pipeline.sources import HealthCallback

log = logging.getLogger(__name__)

Publish = Callable[[Event], None]


def health_reporter(source_id: str, publish: Publish) -> HealthCallback:
    """The ``Source.on_health`` callback that publishes ``Event``s of ``source_id``."""

    def report(state: str, index: int) -> None:
        log.warning("%s: %s at frame %d", source_id, state, index)
        publish(Event(event=state, source=source_id, frame=index))

    return report


class HealthLog(Sink):
    """The events file of a source without lines or zones, opened (afresh, as
    the run's other outputs) at its first event, then each event to
    ``callbacks``. A sink only so that the lane closes it with its outputs."""

    def __init__(self, path: Path | None, callbacks: Collection[Publish] = ()) -> None:
        self.path, self.callbacks = path, list(callbacks)
        self.file: IO[str] | None = None
        self._lock = threading.Lock()  # capture thread publishes, a stop closes
        self._closed = False

    def publish(self, event: Event) -> None:
        with self._lock:
            if self.path is not None and not self._closed:
                if self.file is None:
                    self.file = self.path.open("w", encoding="utf-8")
                self.file.write(event.to_json() + "\n")
                self.file.flush()
        for callback in self.callbacks:
            callback(event)

    def write(self, result: Result) -> None:
        """Frames are not this sink's business."""

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self.file is not None:
                self.file.close()
                self.file = None
