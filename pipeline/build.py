"""Builds pipelines from typed configs: the one place in ``pipeline/`` that
opens sources, sinks, trackers and the live view. What it builds takes its
collaborators and does not open anything itself."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace

from core.events import Event
from engines.base import Detector
from engines.build import runtime_info
from pipeline.analytics.stage import (
    AnalyticsConfig,
    Analyze,
    EventCallback,
    EventLog,
)
from pipeline.camconfig import SourceEntry
from pipeline.clips import ClipRecorder, ClipSink, ClipStore
from pipeline.config import PipelineConfig
from pipeline.health import HealthLog, health_reporter
from pipeline.lanes import Lane
from pipeline.live_view import LiveView
from pipeline.metrics import Metrics
from pipeline.overlay import Overlay
from pipeline.policy import DetectEvery, DetectPolicy, EveryFrame
from pipeline.recording import SegmentSink
from pipeline.runner import Pipeline
from pipeline.scheduler import Preprocess
from pipeline.sinks import (
    ImageSink,
    JsonlSink,
    MotSink,
    OutputConfig,
    RecordConfig,
    Sink,
    TxtSink,
    WindowSink,
    output_path,
)
from pipeline.sources import (
    HealthCallback,
    ImageFolderSource,
    Source,
    SourceConfig,
    make_source,
    safe_name,
)
from pipeline.stages import Capture, Draw, Track, Write
from pipeline.tracking import make_tracker
from pipeline.tracking.flow import FlowRefiner
from pipeline.video_writer import AvVideoSink, AvVideoWriter

log = logging.getLogger(__name__)

LIVE_QUEUE_SIZE = 2  # live frames only age in queues: keep them short

# Builds one more sink for a source (e.g. a live-view stream, a result callback).
SinkFactory = Callable[[Source], Sink]


def build_sources(specs: Sequence[str | Source | SourceEntry],
                  config: SourceConfig | None = None,
                  taken: Collection[str] = ()) -> list[Source]:
    """Sources for paths, camera indices, URLs, image folders and globs (objects
    already built pass through), each with a distinct safe id (``name``,
    ``name_2``, ...) that no id in ``taken`` uses. A ``SourceEntry`` keeps its
    name as its id; one that is taken is a ValueError."""
    used = set(taken) | {s.source_id for s in specs if isinstance(s, Source)}
    for entry in (s for s in specs if isinstance(s, SourceEntry)):
        if entry.name in used:
            raise ValueError(f"source name {entry.name!r} is already in use")
        used.add(entry.name)
    sources = []
    for spec in specs:
        if isinstance(spec, Source):
            sources.append(spec)
            continue
        if isinstance(spec, SourceEntry):
            sources.append(make_source(spec.url, config, spec.name))
            continue
        base = safe_name(str(spec).strip()) if str(spec).strip() else "source"
        sid, n = base, 1
        while sid in used:
            n += 1
            sid = f"{base}_{n}"
        used.add(sid)
        sources.append(make_source(str(spec), config, sid))
    return sources


def open_sinks(config: OutputConfig, source_id: str, fps: float, size: tuple[int, int],
               class_names: list[str], image_source: bool,
               on_quit: Callable[[], None], rtsp_url: str = "",
               clips: ClipRecorder | None = None,
               record: RecordConfig | None = None) -> list[Sink]:
    """All sinks for one source, opened now; on failure the opened ones are closed.

    ``rtsp_url``: where this source's annotated stream is pushed ("" = nowhere).
    ``clips``: cuts clips from the packets of the MP4's encoder, which then runs
    even without ``config.video`` (writing no file). ``record``: this source's
    rotation, instead of ``config.record``.
    """
    sinks: list[Sink] = []
    try:
        out = config.out_dir
        record = None if image_source else record or config.record
        if record is not None and (config.video or config.jsonl):
            sinks.append(SegmentSink(output_path(out, source_id, ""), source_id,
                                     record, fps, size, config.encoder, config.video,
                                     class_names if config.jsonl else None))
        if clips is not None and not image_source:
            target = (output_path(out, source_id, ".mp4")
                      if config.video and record is None else None)
            sinks.append(ClipSink(AvVideoWriter(target, fps, size, config.encoder),
                                  clips))
        elif config.video and record is None:
            if image_source:
                sinks.append(ImageSink(output_path(out, source_id, "")))
            else:
                sinks.append(AvVideoSink(output_path(out, source_id, ".mp4"), fps,
                                         size, config.encoder))
        if rtsp_url and not image_source:
            sinks.append(AvVideoSink(rtsp_url, fps, size, config.encoder))
        if config.jsonl and record is None:
            sinks.append(JsonlSink(output_path(out, source_id, ".jsonl"), class_names))
        if config.mot:
            sinks.append(MotSink(output_path(out, source_id, ".mot.txt")))
        if config.txt:
            folder = output_path(out, "labels", "")
            sinks.append(TxtSink(folder, source_id, image_source, config.txt_conf))
        if config.show:
            sinks.append(WindowSink(source_id, on_quit))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


def detect_policy(config: PipelineConfig, fps: float, metrics: Metrics
                  ) -> DetectPolicy:
    """Which of one source's frames need the detector (``--detect-every``)."""
    every = config.detect_every
    if every == 1:
        return EveryFrame()
    return DetectEvery(None if every == "auto" else int(every), fps, metrics)


class LaneBuilder:
    """Builds the lane of one opened source: tracker, detect policy, overlay
    and sinks (opened now, so an unwritable output fails before any frame is
    processed). ``rtsp_per_source``: ``--rtsp-out`` pushes each source to
    ``URL/SOURCE_ID`` (several sources) instead of the URL itself.
    ``extra_sinks`` build further sinks per source (live view, callbacks).
    ``on_event``: called with every line and zone event, on the source's
    analytics thread. ``source_analytics``: lines and zones of the sources
    named (a camera file's), instead of ``config.analytics``."""

    def __init__(self, detector: Detector, config: PipelineConfig, metrics: Metrics,
                 extra_sinks: Sequence[SinkFactory] = (),
                 rtsp_per_source: bool = False,
                 on_event: Sequence[EventCallback] = (),
                 source_analytics: Mapping[str, AnalyticsConfig] | None = None,
                 source_record: Mapping[str, RecordConfig] | None = None
                 ) -> None:
        self.detector, self.config, self.metrics = detector, config, metrics
        self.extra_sinks = list(extra_sinks)
        self.on_event = list(on_event)
        self.rtsp_per_source = rtsp_per_source
        self.source_analytics = dict(source_analytics or {})
        self.source_record = dict(source_record or {})
        clips = config.clips
        self.clip_store = (ClipStore.open(output_path(config.outputs.out_dir,
                                                      "clips", ""), clips.max_mb)
                           if clips.enabled else None)

    def analytics_for(self, source_id: str) -> AnalyticsConfig:
        return self.source_analytics.get(source_id, self.config.analytics)

    def rtsp_url(self, source_id: str) -> str:
        url = self.config.outputs.rtsp_out
        if not url or not self.rtsp_per_source:
            return url
        return f"{url.rstrip('/')}/{source_id}"

    def analyze(self, source_id: str, class_names: list[str]) -> Analyze | None:
        """The source's lines and zones, their events going to
        ``OUT/SOURCE.events.jsonl`` (with the JSON Lines outputs) and to
        ``on_event``; None without lines and zones."""
        analytics = self.analytics_for(source_id)
        if not analytics.enabled:
            return None
        lines, zones = analytics.build(source_id, class_names)
        outputs = self.config.outputs
        path = (output_path(outputs.out_dir, source_id, ".events.jsonl")
                if outputs.jsonl else None)
        events = EventLog.open(path, self.on_event)
        return Analyze(source_id, lines, zones, events.publish, self.metrics,
                       close=events.close)

    def health(self, source_id: str, analyze: Analyze | None,
               sinks: list[Sink]) -> HealthCallback:
        """``source_down``/``source_up`` to where the source's line and zone
        events go; without lines and zones, to a ``HealthLog`` among ``sinks``."""
        if analyze is not None:
            return health_reporter(source_id, analyze.publish)
        outputs = self.config.outputs
        log_ = HealthLog(output_path(outputs.out_dir, source_id, ".events.jsonl")
                         if outputs.jsonl else None, self.on_event)
        sinks.append(log_)
        return health_reporter(source_id, log_.publish)

    def __call__(self, source: Source, on_quit: Callable[[], None],
                 on_written: Callable[[], None] | None = None) -> Lane:
        config, metrics = self.config, self.metrics
        names = list(getattr(self.detector, "class_names", []))
        size = (min(config.queue_size, LIVE_QUEUE_SIZE) if source.live
                else config.queue_size)
        # With --stride N only every Nth frame is processed: the written video and
        # the tracker run at the processed rate, so playback and motion stay true.
        fps = source.fps / config.sources.stride
        tracker = make_tracker(config.tracker, frame_rate=fps, **config.tracker_params)
        shapes = self.analytics_for(source.source_id).shapes()
        # Clips show what the main video would, boxes and lines drawn.
        overlay = (Overlay(names, config.overlay, *shapes)
                   if config.outputs.needs_overlay or config.clips.enabled else None)
        refiner = (FlowRefiner() if config.detect_every != 1 and config.flow_refine
                   else None)
        clips = (ClipRecorder(config.clips, source.source_id, self.clip_store)
                 if self.clip_store is not None
                 and not isinstance(source, ImageFolderSource) else None)
        sinks = open_sinks(config.outputs, source.source_id, fps, source.size, names,
                           isinstance(source, ImageFolderSource), on_quit,
                           self.rtsp_url(source.source_id), clips,
                           self.source_record.get(source.source_id))
        analyze = None
        try:
            sinks += [make(source) for make in self.extra_sinks]
            analyze = self.analyze(source.source_id, names)
            source.on_health = self.health(source.source_id, analyze, sinks)
            if analyze is not None and clips is not None:
                analyze.publish = clips.planning(analyze.publish)
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
        return Lane(source, queue.Queue(size), queue.Queue(size), queue.Queue(size),
                    queue.Queue(size),
                    analyze=analyze,
                    analytics_in=queue.Queue(size) if analyze is not None else None,
                    capture=Capture(source, metrics),
                    preprocess=Preprocess(self.detector, metrics,
                                          detect_policy(config, fps, metrics)),
                    track=Track(tracker, metrics, refiner),
                    draw=Draw(overlay, metrics),
                    write=Write(sinks, metrics, on_written))


def build_pipeline(sources: Sequence[str | Source | SourceEntry], detector: Detector,
                   config: PipelineConfig | None = None, *,
                   extra_sinks: Sequence[SinkFactory] = (),
                   keep_alive: bool = False,
                   on_event: Sequence[Callable[[Event], None]] = (),
                   source_analytics: Mapping[str, AnalyticsConfig] | None = None
                   ) -> Pipeline:
    """A ``Pipeline`` over ``sources`` (specs, built sources or a camera
    file's entries) with one ``detector``. ``keep_alive``: the run waits for
    sources to join (a server) and ends only at a stop; otherwise at least one
    source is required. ``on_event``: callbacks for every line and zone event
    (analytics thread). Each source runs ``config.analytics`` unless it has
    its own: a ``SourceEntry``'s, or ``source_analytics[its name]``."""
    config = config or PipelineConfig()
    if keep_alive:  # a server's cameras are retried until they come back
        config = replace(config, sources=replace(config.sources,
                                                 reconnect_forever=True))
    built = build_sources(sources, config.sources)
    if not built and not keep_alive:
        raise ValueError("no sources given")
    per_source = {s.name: s.analytics for s in sources if isinstance(s, SourceEntry)}
    per_source.update(source_analytics or {})
    names = list(getattr(detector, "class_names", []))
    # Class names of lines and zones resolve against the model's: a name the
    # model lacks fails now, before any source opens.
    config.analytics.build("check", names)
    for source_id, analytics in per_source.items():
        try:
            analytics.build(source_id, names)
        except ValueError as exc:
            raise ValueError(f"source {source_id}: {exc}") from None
    analyzed = config.analytics.enabled or any(
        a.enabled for a in per_source.values())
    if analyzed and config.tracker == "none":
        raise ValueError("tracker 'none' cannot be used with lines or zones: they "
                         "count tracked objects")
    if config.clips.enabled and not analyzed:
        raise ValueError(f"--clip-on {','.join(config.clips.on)} needs the events "
                         "of --line or --zone")
    metrics = Metrics(runtime=runtime_info(detector), class_names=names)
    live_view = None
    factories = list(extra_sinks)
    if config.outputs.serve:
        live_view = LiveView(config.outputs.serve, metrics,
                             auth=config.outputs.serve_auth)
        factories.append(lambda source: live_view.sink(source.source_id))
    fanout = config.events.open() if analyzed else None
    try:
        lanes = LaneBuilder(
            detector, config, metrics, factories,
            rtsp_per_source=len(built) > 1 or keep_alive,
            on_event=[*on_event, *([fanout.publish] if fanout else []),
                      *([live_view.publish_event] if live_view else [])],
            source_analytics=per_source,
            source_record={s.name: s.record for s in sources
                           if isinstance(s, SourceEntry) and s.record is not None})
        pipeline = Pipeline(detector, built, lanes, metrics, config,
                            live_view=live_view, keep_alive=keep_alive, events=fanout)
        if live_view is not None:  # the control API drives this pipeline
            from pipeline.server_api import ControlAPI

            live_view.control = ControlAPI(pipeline, config.sources, build_sources)
        return pipeline
    except BaseException:
        if fanout is not None:
            fanout.close(0.0)
        raise
