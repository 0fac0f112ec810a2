"""streamdet pipeline: sources, threaded stages, tracking, overlay, sinks."""
