"""File formats shared by the runtime and training: media suffixes, MOTChallenge
rows and YOLO label lines. Every reader and writer of these formats goes through
here, so a file written by the pipeline, the evaluator or the benchmarks is the
same byte for byte."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from core.boxes import xyxy_to_cxcywh, xyxy_to_xywh

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts",
     ".wmv", ".flv", ".3gp", ".mts"}
)

# frame, id, x, y, w, h, conf, class, visibility, z: a MOTChallenge row.
MOT_COLUMNS = 10


def mot_rows(frame: int, xyxy: np.ndarray, track_ids: np.ndarray,
             scores: np.ndarray) -> np.ndarray:
    """(N, 10) float64 MOT rows of one frame's tracked boxes (xyxy pixels):
    ``frame`` (1-based), id, left, top, width, height, score, then -1."""
    xywh = xyxy_to_xywh(xyxy)
    out = np.full((len(xywh), MOT_COLUMNS), -1.0)
    out[:, 0] = frame
    out[:, 1] = track_ids
    out[:, 2:6] = xywh
    out[:, 6] = scores
    return out


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


def yolo_label_lines(xyxy: np.ndarray, class_ids: np.ndarray,
                     size: tuple[int, int], scores: np.ndarray | None = None,
                     spec: str = ".6g") -> str:
    """YOLO label text: one ``class cx cy w h [score]`` line per box, the box
    (xyxy pixels) normalised by the image ``size`` (height, width); "" for none.

    ``spec`` formats the numbers: ``.6g`` as Ultralytics writes predictions,
    ``.6f`` as dataset tools write ground truth. Arithmetic is float32, the
    precision the boxes have at run time.
    """
    h, w = size
    cxcywh = xyxy_to_cxcywh(np.asarray(xyxy).reshape(-1, 4)) / np.array(
        [w, h, w, h], np.float32)
    lines = []
    for k, ((cx, cy, bw, bh), c) in enumerate(zip(cxcywh, class_ids, strict=True)):
        line = f"{int(c)} {cx:{spec}} {cy:{spec}} {bw:{spec}} {bh:{spec}}"
        lines.append(line if scores is None else f"{line} {scores[k]:{spec}}")
    return "".join(f"{line}\n" for line in lines)
