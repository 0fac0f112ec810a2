"""Training, evaluation, export and engine building for streamdet's detectors."""
