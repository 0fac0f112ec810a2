"""``open_pipeline`` and ``Stream``: a pipeline driven from Python.

A ``Stream`` runs the threaded pipeline in the background. Results reach the
caller in two ways, both on the pipeline's sink threads' terms: ``stream()``
yields them (a consumer that falls behind backpressures file sources and
makes live sources drop, counted), and ``on_result`` callbacks run on the sink
thread of each source (a slow callback has the same effect). With lines or
zones, ``on_event`` callbacks get their events on each source's analytics
thread, and every result carries the counts (``result.scene``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.events import Event
from core.types import Result
from engines.base import Detector
from engines.build import load_detector
from pipeline.analytics.stage import AnalyticsConfig, LineSpec, ZoneSpec
from pipeline.build import build_pipeline, build_sources
from pipeline.clips import ClipConfig
from pipeline.config import PipelineConfig
from pipeline.metrics import Metrics
from pipeline.runner import Pipeline
from pipeline.sinks import OutputConfig, Sink
from pipeline.sources import Source
from pipeline.stages import POLL_S

log = logging.getLogger(__name__)

SAMPLE_VIDEO = Path(__file__).resolve().parent.parent / "samples" / "vtest.mp4"
STOP_TIMEOUT_S = 2.0  # a stop releases every source within this
RESULT_QUEUE_SIZE = 8

SourceSpec = str | int | Path | Source
ResultCallback = Callable[[Result], None]
EventCallback = Callable[[Event], None]
# Builds the pipeline from the extra sinks and the event callbacks.
PipelineFor = Callable[[Sequence[Callable[[Source], Sink]], Sequence[EventCallback]],
                       Pipeline]


class _CallbackSink(Sink):
    """Hands each result of one source to the ``Stream`` (sink thread)."""

    def __init__(self, deliver: ResultCallback) -> None:
        self.deliver = deliver

    def write(self, result: Result) -> None:
        self.deliver(result)


class Stream:
    """A running (or ready) pipeline seen from Python; build it with
    ``open_pipeline``. Use it as a context manager, or call ``close()``."""

    def __init__(self, pipeline_for: PipelineFor, detector: Detector,
                 owns_detector: bool) -> None:
        self._results: queue.Queue[Result] = queue.Queue(RESULT_QUEUE_SIZE)
        self._callbacks: list[ResultCallback] = []
        self._event_callbacks: list[EventCallback] = []
        self._streaming = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.detector, self._owns_detector = detector, owns_detector
        self.pipeline = pipeline_for([lambda source: _CallbackSink(self._deliver)],
                                     [self._deliver_event])

    @property
    def metrics(self) -> Metrics:
        """Counts and latencies so far (final once the run has ended)."""
        return self.pipeline.metrics

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def on_result(self, callback: ResultCallback) -> ResultCallback:
        """Call ``callback(result)`` for every result, on the sink thread of its
        source, in frame order per source. Usable as a decorator."""
        self._callbacks.append(callback)
        return callback

    def on_event(self, callback: EventCallback) -> EventCallback:
        """Call ``callback(event)`` for every line and zone event, on the
        analytics thread of its source, in order per source; the counts of the
        frame that raised it are in ``stream()``'s results. Usable as a
        decorator; register before the run starts."""
        self._event_callbacks.append(callback)
        return callback

    def _deliver_event(self, event: Event) -> None:
        for callback in self._event_callbacks:
            callback(event)

    def _deliver(self, result: Result) -> None:
        for callback in self._callbacks:
            callback(result)
        state = self.pipeline.state
        while self._streaming.is_set() and not state.abort.is_set():
            try:
                self._results.put(result, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def start(self) -> Stream:
        """Start the run in the background (``stream()`` and ``run()`` do)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="streamdet-run",
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.pipeline.run()
        except BaseException as exc:
            self._error = exc

    def stream(self) -> Iterator[Result]:
        """Results as they are processed, in frame order per source. Leaving
        the loop early (``break``) stops the pipeline and releases its sources;
        a run that failed raises its error here."""
        self._streaming.set()
        self.start()
        try:
            while True:
                try:
                    yield self._results.get(timeout=POLL_S)
                except queue.Empty:
                    if not self.running and self._results.empty():
                        break
        finally:
            self.close()
        self._raise_error()

    def run(self) -> Metrics:
        """Run to the end (callbacks see every result); returns the metrics."""
        self.start()
        try:
            while self.running:
                assert self._thread is not None
                self._thread.join(POLL_S)
        finally:
            self.close()
        self._raise_error()
        return self.metrics

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def add_source(self, source: SourceSpec) -> str:
        """Add a source (path, URL, camera index or ``Source``), before or
        while running; returns its name (unique in this pipeline)."""
        taken = [s.source_id for s in self.pipeline.sources]
        [built] = build_sources([_spec(source)], self.pipeline.config.sources, taken)
        return self.pipeline.add_source(built)

    def remove_source(self, name: str, wait: bool = False) -> None:
        """Stop one source: its queued frames are processed (their results
        still arrive), then its outputs are finalised; the others go on.
        ``wait``: return only once they are (not from a ``stream()`` loop,
        which must keep taking results for that to happen)."""
        self.pipeline.remove_source(name, wait=wait)

    def stop(self) -> None:
        """Ask the run to stop: sources stop reading, queued frames finish."""
        self.pipeline.request_stop()

    def close(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop and wait (up to ``timeout_s``) until sources are released and
        outputs finalised; closes the detector if this stream loaded it."""
        self._streaming.clear()  # a blocked delivery gives up at once
        if self.running:
            self.pipeline.request_stop()
            assert self._thread is not None
            self._thread.join(timeout_s * 0.75)
            if self._thread.is_alive():  # past the drain: abandon queued frames
                self.pipeline.state.abort.set()
                self._thread.join(timeout_s * 0.25)
        while not self._results.empty():
            self._results.get_nowait()
        if self._owns_detector and not self.running:
            self.detector.close()
            self._owns_detector = False

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _spec(source: SourceSpec) -> str | Source:
    return source if isinstance(source, Source) else str(source)


def open_pipeline(
    sources: SourceSpec | Sequence[SourceSpec] = (),
    model: Detector | str | Path = "yolo",
    *,
    tracker: str | None = None,
    lines: Sequence[LineSpec] | None = None,
    zones: Sequence[ZoneSpec] | None = None,
    analytics: AnalyticsConfig | None = None,
    outputs: OutputConfig | None = None,
    config: PipelineConfig | None = None,
    on_result: ResultCallback | None = None,
    on_event: EventCallback | None = None,
    keep_alive: bool = False,
    clips: ClipConfig | None = None,
    **detector_options: Any,
) -> Stream:
    """A pipeline over ``sources`` — paths, URLs, camera indices, image
    folders, or ``Source`` objects such as ``FrameSource`` for a program's own
    frames — running ``model`` (a ``Detector``, a shipped model name or a model
    file; ``detector_options`` such as ``conf`` go to ``load_detector``).

    ``tracker``: ``"bytetrack"``, ``"ocsort"``, ``"sort"`` or ``"none"``
    (default: none, or the recommended tracker when there are lines or zones).
    ``lines`` / ``zones``: shorthand strings (``"0.5,0.1,0.5,0.9:door"``) or
    ``LineCounter`` / ``Zone`` objects (templates: each source gets a copy);
    ``analytics``: an ``AnalyticsConfig`` instead, for anchor, inertia,
    loitering and class filters. ``on_event``: as ``Stream.on_event``.
    ``outputs``: files to write (default: none; results come to Python only;
    with JSON Lines on, events go to ``OUT/SOURCE.events.jsonl`` too).
    ``clips``: which events get a clip in ``OUT/clips/`` (``ClipConfig``).
    ``config``: every other setting (``PipelineConfig``). ``keep_alive``: the
    run waits for sources added later and ends only at ``stop()``/``close()``.
    Nothing runs until ``stream()``, ``run()`` or ``start()``.
    """
    cfg = config or PipelineConfig(progress=False)
    if lines or zones:
        if analytics is not None:
            raise ValueError("give lines/zones or analytics, not both")
        analytics = AnalyticsConfig.of(lines, zones)
    analytics = analytics or cfg.analytics
    if tracker is None and analytics.enabled and not cfg.analytics.enabled:
        # cfg.tracker was resolved without lines or zones: choose again
        tracker = None if cfg.tracker == "none" else cfg.tracker
    else:
        tracker = tracker or cfg.tracker
    cfg = replace(cfg, outputs=outputs or (cfg.outputs if config else OutputConfig(
        video=False, jsonl=False)), tracker=tracker, analytics=analytics)
    if clips is not None:
        cfg = replace(cfg, clips=clips)
    single = isinstance(sources, (str, int, Path, Source))
    specs = [_spec(s) for s in ([sources] if single else sources)]
    owns = not isinstance(model, Detector)
    if owns:
        detector = load_detector(model, **detector_options)
    elif detector_options:
        raise ValueError(f"detector options {sorted(detector_options)} apply to a "
                         "model being loaded, not to a Detector object")
    else:
        assert isinstance(model, Detector)
        detector = model
    try:
        stream = Stream(lambda extra, events: build_pipeline(
            specs, detector, cfg, extra_sinks=extra, keep_alive=keep_alive,
            on_event=events), detector, owns)
    except BaseException:
        if owns:
            detector.close()
        raise
    if on_result is not None:
        stream.on_result(on_result)
    if on_event is not None:
        stream.on_event(on_event)
    return stream
