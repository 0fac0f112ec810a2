"""streamdet as a library: detectors, pipelines over video sources, trackers.

    import streamdet

    detector = streamdet.load_detector("yolo")
    with streamdet.open_pipeline(streamdet.SAMPLE_VIDEO, detector,
                                 tracker="bytetrack") as pipe:
        for result in pipe.stream():
            print(result.frame.index, result.detections.track_ids)

A thin layer over ``engines`` (detectors), ``pipeline`` (sources, threaded
stages, trackers, sinks) and ``core`` (the data types): everything here is
also importable from there.
"""

from core.events import Event
from core.types import Detections, Frame, Result, SceneCounts
from engines.base import Detector
from engines.build import DetectorOptions, load_detector
from pipeline.analytics import LineCounter, Zone
from pipeline.analytics.stage import AnalyticsConfig
from pipeline.clips import ClipConfig
from pipeline.config import PipelineConfig
from pipeline.events import EventsConfig
from pipeline.metrics import Metrics
from pipeline.runner import PipelineError
from pipeline.sinks import EncoderConfig, OutputConfig
from pipeline.sources import FrameSource, Source, SourceConfig, SourceError
from pipeline.tracking import RECOMMENDED_TRACKER, TRACKERS, make_tracker
from streamdet.api import SAMPLE_VIDEO, Stream, open_pipeline

__all__ = [
    "RECOMMENDED_TRACKER",
    "SAMPLE_VIDEO",
    "TRACKERS",
    "AnalyticsConfig",
    "ClipConfig",
    "Detections",
    "Detector",
    "DetectorOptions",
    "EncoderConfig",
    "Event",
    "EventsConfig",
    "Frame",
    "FrameSource",
    "LineCounter",
    "Metrics",
    "OutputConfig",
    "PipelineConfig",
    "PipelineError",
    "Result",
    "SceneCounts",
    "Source",
    "SourceConfig",
    "SourceError",
    "Stream",
    "Zone",
    "load_detector",
    "make_tracker",
    "open_pipeline",
]
