"""The classical baseline: Dalal & Triggs' HOG + linear SVM people detector.

Detection as classification: a 64×128 window slides over an image pyramid and
a linear SVM on its HOG features says "person" or not. Uses OpenCV's pretrained
``HOGDescriptor_getDefaultPeopleDetector``, so it needs no weights file.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.boxes import BoxTransform, nms
from core.types import Detections
from engines.base import Detector, Prepared


class HogDetector(Detector):
    """Multi-scale sliding-window HOG people detector (no model file).

    ``max_width``: frames wider than this are downscaled first (HOG cost grows
    with pixels; people in surveillance video stay well above 64×128).
    ``scale``: pyramid step. ``win_stride``: window step in pixels.
    ``conf``: on the score = logistic(SVM margin), so 0.5 = margin 0.
    ``iou``: NMS over the grouped windows, keeping at most ``max_det``.
    """

    options = ("conf", "iou", "max_det", "threads")
    uses_backend = False

    class_names = ["person"]

    def __init__(
        self,
        conf: float = 0.5,
        iou: float = 0.45,
        max_det: int = 300,
        classes: frozenset[int] | None = None,
        max_width: int = 1024,
        scale: float = 1.05,
        win_stride: int = 8,
        group_threshold: int = 2,
        threads: int | None = None,
    ) -> None:
        if scale <= 1.0:
            raise ValueError(f"scale must be > 1, got {scale}")
        if max_width < 64:
            raise ValueError(f"max_width must be >= 64, got {max_width}")
        self.conf = conf
        self.iou = iou
        self.max_det = max_det
        self.classes = classes
        self.max_width = max_width
        self.scale = scale
        self.win_stride = (win_stride, win_stride)
        self.group_threshold = group_threshold
        if threads is not None:
            cv2.setNumThreads(threads)  # HOG's pyramid runs on OpenCV's pool
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def prepare(self, image: np.ndarray) -> Prepared:
        h, w = image.shape[:2]
        factor = min(1.0, self.max_width / w)
        if factor < 1.0:
            image = cv2.resize(
                image,
                (round(w * factor), round(h * factor)),
                interpolation=cv2.INTER_AREA,
            )
        return Prepared(image, BoxTransform(factor, factor, 0.0, 0.0, w, h))

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        return [self._detect_one(p) for p in batch]

    def _detect_one(self, prepared: Prepared) -> Detections:
        image = prepared.input
        if image.shape[0] < 128 or image.shape[1] < 64:
            return Detections.empty()  # smaller than one detection window
        rects, weights = self.hog.detectMultiScale(
            image,
            winStride=self.win_stride,
            padding=(8, 8),
            scale=self.scale,
            groupThreshold=self.group_threshold,
        )
        if len(rects) == 0:
            return Detections.empty()
        rects = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
        xyxy = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))
        keep = scores >= self.conf
        xyxy, scores = xyxy[keep], scores[keep]
        order = nms(xyxy, scores, None, self.iou, self.max_det)
        xyxy = prepared.transform.to_original(xyxy[order])
        return Detections(xyxy, scores[order], np.zeros(len(order), np.int32))
