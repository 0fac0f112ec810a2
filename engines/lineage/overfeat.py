"""Step 2, OverFeat: a sliding-window classifier evaluated convolutionally.

The classifier sees a fixed ``window`` (e.g. 32x32) and its fully-connected
layers are convolutions, so running it on a whole image yields, in one pass, a
dense map of class scores and box offsets: cell (i, j) is the window whose
top-left corner is ``stride * (j, i)`` in the network input. A pyramid of image
scales covers object sizes; cells above ``conf`` become boxes and
per-class NMS merges the many windows that fire on one object.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.boxes import nms
from core.image import to_tensor
from core.types import Detections
from engines.base import Backend, Detector, Prepared
from engines.lineage.common import softmax


def decode_dense(scores: np.ndarray, offsets: np.ndarray, window: int, stride: int,
                 scale: float, conf: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scale's maps -> candidate boxes in image pixels (before NMS).

    ``scores``: (C+1, h, w) softmax probabilities, channel 0 = background.
    ``offsets``: (4, h, w) x1 y1 x2 y2 of the object in window units (0..1).
    Returns xyxy (N, 4), scores (N,), class_ids (N,) 0-based foreground classes.
    """
    fg = scores[1:]
    cls, ys, xs = np.nonzero(fg >= conf)
    if len(cls) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(
            0, np.int32)
    origin = np.stack([xs, ys, xs, ys], 1).astype(np.float32) * stride
    boxes = (origin + offsets[:, ys, xs].T * window) / scale
    return boxes.astype(np.float32), fg[cls, ys, xs], cls.astype(np.int32)


class OverFeatDetector(Detector):
    """Multi-scale dense sliding window. Network: ``images`` (1, 3, H, W) ->
    ``scores`` (1, C+1, h, w) logits, ``offsets`` (1, 4, h, w)."""

    options = ("conf", "iou", "max_det")

    def __init__(self, backend: Backend, class_names: list[str], window: int,
                 stride: int, scales: tuple[float, ...], *, conf: float = 0.3,
                 iou: float = 0.4, max_det: int = 100,
                 classes: frozenset[int] | None = None,
                 pre_nms_top_k: int = 1000) -> None:
        """``window``, ``stride`` (input pixels) and ``scales`` (image resize
        factors of the pyramid) come from the model's metadata."""
        self.backend = backend
        self.class_names = list(class_names)
        self.window = int(window)
        self.stride = int(stride)
        self.scales = tuple(scales)
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be positive, got {self.scales}")
        self.conf = conf
        self.iou = iou
        self.max_det = max_det
        self.classes = classes
        self.pre_nms_top_k = pre_nms_top_k  # bounds the NMS cost of dense maps

    def prepare(self, image: np.ndarray) -> Prepared:
        return Prepared.whole(image)

    def dense_maps(self, image: np.ndarray, scale: float
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Softmax scores (C+1, h, w) and offsets (4, h, w) at one pyramid scale."""
        h, w = image.shape[:2]
        size = (max(self.window, round(w * scale)), max(self.window, round(h * scale)))
        scaled = cv2.resize(image, size, interpolation=cv2.INTER_AREA
                            if scale < 1 else cv2.INTER_LINEAR)
        logits, offsets = self.backend.infer(to_tensor(scaled)[None])
        return softmax(logits[0], axis=0), offsets[0]

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        out = []
        for p in batch:
            parts = []
            h, w = p.input.shape[:2]
            for scale in self.scales:
                scores, offsets = self.dense_maps(p.input, scale)
                sx = max(self.window, round(w * scale)) / w
                sy = max(self.window, round(h * scale)) / h
                boxes, conf, cls = decode_dense(scores, offsets, self.window,
                                                self.stride, 1.0, self.conf)
                boxes = boxes / np.float32([sx, sy, sx, sy])
                parts.append((boxes, conf, cls))
            boxes = np.concatenate([b for b, _, _ in parts])
            conf = np.concatenate([c for _, c, _ in parts])
            cls = np.concatenate([k for _, _, k in parts])
            if len(conf) > self.pre_nms_top_k:
                top = np.argpartition(-conf, self.pre_nms_top_k)[:self.pre_nms_top_k]
                boxes, conf, cls = boxes[top], conf[top], cls[top]
            keep = nms(boxes, conf, cls, self.iou, self.max_det)
            xyxy = p.transform.to_original(boxes[keep])
            out.append(Detections(xyxy, conf[keep], cls[keep]))
        return out

    def warmup(self) -> None:
        self.dense_maps(np.zeros((64, 64, 3), np.uint8), 1.0)

    def close(self) -> None:
        self.backend.close()
