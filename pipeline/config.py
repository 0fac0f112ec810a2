"""``PipelineConfig``: every setting of a run, typed, built once at the entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.analytics.stage import AnalyticsConfig, choose_tracker
from pipeline.clips import ClipConfig
from pipeline.events import EventsConfig
from pipeline.overlay import OverlayConfig
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig


@dataclass(frozen=True)
class PipelineConfig:
    """How the pipeline runs.

    ``batch``: most frames per inference call (across sources). ``max_wait_ms``:
    how long inference waits for a batch to fill. ``queue_size``: bound of every
    queue. ``tracker``: "none", "bytetrack", "ocsort" or "sort" with
    ``tracker_params``; None: none, or the recommended one when ``analytics``
    has lines or zones (resolved at construction, so it is a name afterwards).
    ``analytics``: lines and zones run on every source. ``events``: where their
    events go besides ``OUT/SOURCE.events.jsonl`` (webhook, MQTT). ``clips``:
    which of those events get a clip with pre-roll in ``OUT/clips/``.
    ``drain_timeout_s``: after a stop request, how long queued frames may finish
    before the rest is abandoned. ``progress``: a progress bar for file sources.
    ``detect_every``: run the detector on every Nth processed frame of a source
    and let the tracker predict the others (``"auto"``: the N that holds the
    source's frame rate, from the measured inference time). ``flow_refine``:
    on those frames, move the boxes by sparse optical flow too.
    """

    batch: int = 4
    max_wait_ms: float = 5.0
    queue_size: int = 8
    tracker: str | None = None
    tracker_params: dict[str, Any] = field(default_factory=dict)
    sources: SourceConfig = field(default_factory=SourceConfig)
    outputs: OutputConfig = field(default_factory=OutputConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    drain_timeout_s: float = 0.75
    progress: bool = True
    detect_every: int | str = 1
    flow_refine: bool = True
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    clips: ClipConfig = field(default_factory=ClipConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tracker",
                           choose_tracker(self.tracker, self.analytics))
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {self.queue_size}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        every = self.detect_every
        if not (every == "auto" or (isinstance(every, int) and every >= 1)):
            raise ValueError(f"detect_every must be an integer >= 1 or 'auto', "
                             f"got {every!r}")
        if every != 1 and self.tracker == "none":
            raise ValueError("--detect-every needs a tracker (--tracker bytetrack): "
                             "frames between detections show the tracks' predictions")
