"""Optical flow as a cheap detector on the frames the detector skipped
(``--detect-every``): each box given to the tracker on the previous frame moves
by the median sparse optical flow (pyramidal Lucas-Kanade, on a downscaled grey
frame) of corner points inside it. The tracker then sees boxes every frame, so
its per-frame matching keeps working between detections; new objects still
appear only on detection frames."""

from __future__ import annotations

import cv2
import numpy as np

from core.types import Detections

MAX_SIDE = 480  # flow runs on the frame scaled to at most this many pixels
POINTS_PER_BOX = 12
MIN_TRACKED = 3  # fewer good points: keep the motion model's box


class FlowRefiner:
    """``observe`` every frame with the boxes given to the tracker; ``propagate``
    returns the previous frame's boxes moved by the flow to this frame (boxes
    whose points were lost are left out, so the tracker coasts them)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prev_gray: np.ndarray | None = None
        self.prev: Detections = Detections.empty()
        self.scale = 1.0
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def _gray(self, image: np.ndarray) -> np.ndarray:
        """Downscaled grey frame; ``propagate`` then ``observe`` on one frame
        convert it once."""
        if self._last is not None and self._last[0] is image:
            return self._last[1]
        h, w = image.shape[:2]
        self.scale = min(1.0, MAX_SIDE / max(h, w))
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if self.scale < 1.0:
            gray = cv2.resize(gray, (round(w * self.scale), round(h * self.scale)),
                              interpolation=cv2.INTER_LINEAR)
        self._last = (image, gray)
        return gray

    def observe(self, image: np.ndarray, detections: Detections) -> None:
        self.prev_gray, self.prev = self._gray(image), detections

    def propagate(self, image: np.ndarray) -> Detections:
        gray = self._gray(image)
        prev, prev_gray = self.prev, self.prev_gray
        if prev_gray is None or not len(prev) or prev_gray.shape != gray.shape:
            return Detections.empty()
        s = self.scale
        points, owners = [], []
        for row, box in enumerate(prev.xyxy * s):
            x1, y1, x2, y2 = np.round(box).astype(int)
            x1, y1 = max(x1, 0), max(y1, 0)
            patch = prev_gray[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
            if patch.shape[0] < 4 or patch.shape[1] < 4:
                continue
            found = cv2.goodFeaturesToTrack(patch, POINTS_PER_BOX, 0.01, 2)
            if found is not None:
                points.append(found.reshape(-1, 2) + np.array([x1, y1], np.float32))
                owners.append(np.full(len(found), row))
        if not points:
            return Detections.empty()
        p0 = np.concatenate(points).astype(np.float32)
        owner = np.concatenate(owners)
        p1, status, _ = cv2.calcOpticalFlowPyrLK(prev_gray, gray, p0, None,
                                                 winSize=(15, 15), maxLevel=2)
        ok = status.reshape(-1) == 1
        rows, boxes = [], []
        for row in np.unique(owner[ok]):
            sel = ok & (owner == row)
            if sel.sum() >= MIN_TRACKED:
                shift = np.median(p1[sel] - p0[sel], 0) / s
                rows.append(int(row))
                boxes.append(prev.xyxy[row] + np.tile(shift, 2))
        if not rows:
            return Detections.empty()
        kept = prev[np.asarray(rows)]
        return Detections(np.asarray(boxes, np.float32), kept.scores, kept.class_ids)
