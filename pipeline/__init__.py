"""streamdet pipeline: sources, threaded stages, tracking, overlay, sinks."""

from core.types import Detections, Frame, Result

__all__ = ["Detections", "Frame", "Result"]
