"""Scene analytics usable without the pipeline: line counters and zones that
take tracked :class:`core.types.Detections` and a timestamp and return
:class:`core.events.Event` objects.

    counter = LineCounter([[0.5, 0.1], [0.5, 0.9]], "door")
    zone = Zone([[0.1, 0.1], [0.4, 0.1], [0.4, 0.5], [0.1, 0.5]], "desk", loiter_s=120)
    for frame, dets in tracked_frames:
        size = (frame.image.shape[1], frame.image.shape[0])
        events = counter.update(dets, frame.timestamp, size, frame=frame.index)
        events += zone.update(dets, frame.timestamp, size, frame=frame.index)
"""

from __future__ import annotations

from pipeline.analytics.geometry import (
    ANCHORS,
    Points,
    ShapeSpec,
    anchor_points,
    parse_line_spec,
    parse_points,
    parse_zone_spec,
    points_in_polygon,
)
from pipeline.analytics.lines import LineCounter
from pipeline.analytics.zones import Zone

__all__ = [
    "ANCHORS",
    "LineCounter",
    "Points",
    "ShapeSpec",
    "Zone",
    "anchor_points",
    "parse_line_spec",
    "parse_points",
    "parse_zone_spec",
    "points_in_polygon",
]
