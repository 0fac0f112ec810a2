"""File formats shared by the runtime and training: media suffixes, MOT rows."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from core.boxes import xyxy_to_xywh

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts",
     ".wmv", ".flv", ".3gp", ".mts"}
)


def mot_line(frame: int, track_id: int, x: float, y: float, w: float, h: float,
             score: float) -> str:
    """One MOTChallenge row ``frame,id,x,y,w,h,conf,-1,-1,-1`` (``frame`` 1-based)."""
    return (f"{int(frame)},{int(track_id)},{x:.2f},{y:.2f},{w:.2f},{h:.2f},"
            f"{score:.4f},-1,-1,-1\n")


def mot_lines(
    frame: int, xyxy: np.ndarray, track_ids: np.ndarray, scores: np.ndarray
) -> Iterator[str]:
    """The rows of one frame's tracked boxes (xyxy pixels)."""
    xywh = xyxy_to_xywh(xyxy)
    for (x, y, w, h), t, s in zip(xywh, track_ids, scores, strict=True):
        yield mot_line(frame, t, x, y, w, h, s)
