"""File formats shared by the runtime and training: media suffixes, MOTChallenge
tracker rows and YOLO label lines. Each is written and read by one function
here, so the pipeline, the evaluator, the dataset tools and the benchmarks agree
byte for byte. (Ground truth with class and visibility columns is written by
``training.data.generate``, the one place that knows them.)"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

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
COORD_TOLERANCE = 0.01  # normalised coordinates may overshoot [0, 1] by rounding


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


def read_mot(path: str | Path) -> np.ndarray:
    """A MOTChallenge text file -> (N, 10) float64 rows
    ``frame, id, x, y, w, h, conf, class, visibility, z`` (missing columns = -1).

    Boxes are top-left x, y, width, height in pixels; frames are 1-based. Comma or
    whitespace separated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOT file not found: {path}")
    text = path.read_text().replace(",", " ").strip()
    if not text:
        return np.zeros((0, MOT_COLUMNS))
    try:
        rows = np.loadtxt(text.splitlines(), ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: not a MOTChallenge file ({exc})") from exc
    if rows.shape[1] < 6:
        raise ValueError(f"{path}: needs at least 6 columns "
                         f"(frame,id,x,y,w,h), found {rows.shape[1]}")
    out = np.full((len(rows), MOT_COLUMNS), -1.0)
    out[:, : min(MOT_COLUMNS, rows.shape[1])] = rows[:, :MOT_COLUMNS]
    if rows.shape[1] < 7:
        out[:, 6] = 1.0
    return out


def write_mot(path: str | Path, rows: np.ndarray) -> Path:
    """Write tracker output rows (N, >=7) as ``frame,id,x,y,w,h,conf,-1,-1,-1``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.asarray(rows, dtype=np.float64)
    with open(path, "w") as f:
        f.writelines(mot_line(*r[:7]) for r in rows)
    return path


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


def read_yolo_labels(path: Path, num_classes: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``class cx cy w h`` lines (normalised) -> (N, 4) float32 cxcywh, (N,) int64.

    Raises ValueError naming the file and 1-based line for anything malformed.
    """
    boxes, classes = [], []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{lineno}"
        if len(parts) != 5:
            raise ValueError(f"{where}: expected 5 columns 'class cx cy w h', got "
                             f"{len(parts)}: {line.strip()!r}")
        try:
            values = [float(v) for v in parts]
            if not all(math.isfinite(v) for v in values):
                raise ValueError
        except ValueError:
            raise ValueError(f"{where}: non-numeric value in {line.strip()!r}"
                             ) from None
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < num_classes:
            raise ValueError(f"{where}: class id {parts[0]} is not an integer in "
                             f"[0, {num_classes - 1}]")
        cx, cy, w, h = values[1:]
        lo, hi = -COORD_TOLERANCE, 1 + COORD_TOLERANCE
        if not (all(lo <= v <= hi for v in values[1:]) and
                cx - w / 2 >= lo and cx + w / 2 <= hi and
                cy - h / 2 >= lo and cy + h / 2 <= hi):
            raise ValueError(f"{where}: box {parts[1:]} is outside [0, 1] (YOLO labels "
                             "are normalised cx cy w h)")
        boxes.append(values[1:])
        classes.append(int(cls))
    return (np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(classes, np.int64))
