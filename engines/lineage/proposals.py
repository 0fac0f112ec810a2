"""Selective Search region proposals (OpenCV ximgproc, fast mode).

Class-agnostic boxes from hierarchical grouping of a superpixel segmentation:
the proposal stage of R-CNN and Fast R-CNN. Run on a downscaled copy of the
frame because its cost grows quickly with pixels.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import cv2
import numpy as np

DEFAULT_MAX_SIDE = 320  # px of the longer side the segmentation runs on
DEFAULT_MAX_PROPOSALS = 1000
MIN_PROPOSAL_SIDE = 4.0  # px in the original frame


def selective_search(image: np.ndarray, max_side: int = DEFAULT_MAX_SIDE,
                     max_proposals: int = DEFAULT_MAX_PROPOSALS) -> np.ndarray:
    """HxWx3 uint8 BGR -> (N <= max_proposals, 4) float32 xyxy original pixels.

    Proposals come in Selective Search's own ranking (larger grouping steps
    first within each strategy); duplicates and slivers are removed.
    """
    if max_side < 16:
        raise ValueError(f"max_side must be >= 16, got {max_side}")
    if max_proposals < 1:
        raise ValueError(f"max_proposals must be >= 1, got {max_proposals}")
    h, w = image.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    small = (cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))),
                        interpolation=cv2.INTER_AREA) if factor < 1 else image)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(small)
    ss.switchToSelectiveSearchFast()
    rects = np.asarray(ss.process(), np.float32).reshape(-1, 4)
    if len(rects) == 0:
        return np.zeros((0, 4), np.float32)
    xyxy = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], 1) / factor
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    wh = xyxy[:, 2:] - xyxy[:, :2]
    xyxy = xyxy[(wh >= MIN_PROPOSAL_SIDE).all(1)]
    _, first = np.unique(np.round(xyxy), axis=0, return_index=True)
    return xyxy[np.sort(first)][:max_proposals]


class Proposer:
    """R-CNN's and Fast R-CNN's proposal stage: ``selective_search`` on a copy of
    the frame at most ``side`` px long, timed per frame (``last_seconds``,
    ``last_boxes``). Inside ``replay(boxes)`` it hands out stored proposals instead,
    one array per frame in order, so the rest of a detector can be timed without
    its proposal step, as the R-CNN papers time detection "excluding proposals"
    (computed beforehand)."""

    def __init__(self, side: int = DEFAULT_MAX_SIDE,
                 max_proposals: int = DEFAULT_MAX_PROPOSALS) -> None:
        self.side, self.max_proposals = int(side), int(max_proposals)
        self.last_boxes = np.zeros((0, 4), np.float32)
        self.last_seconds = 0.0
        self._stored: Iterator[np.ndarray] | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        if self._stored is None:
            boxes = selective_search(image, self.side, self.max_proposals)
        else:
            boxes = next(self._stored, None)
            if boxes is None:
                raise RuntimeError("replay: more frames than stored proposal sets")
        self.last_seconds = time.perf_counter() - start
        self.last_boxes = boxes
        return boxes

    @contextmanager
    def replay(self, boxes: Iterable[np.ndarray]) -> Iterator[None]:
        self._stored = iter(boxes)
        try:
            yield
        finally:
            self._stored = None
