"""Box arithmetic shared by every model family and the trackers: conversions,
IoU, NMS, and the transform that maps network pixels back to frame pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) centre-x, centre-y, width, height -> (N, 4) x1 y1 x2 y2."""
    boxes = np.asarray(boxes, dtype=np.float32)
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x1 y1 x2 y2 -> (N, 4) centre-x, centre-y, width, height (YOLO)."""
    boxes = np.asarray(boxes, dtype=np.float32)
    wh = boxes[:, 2:4] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + wh / 2, wh], axis=1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x1 y1 x2 y2 -> (N, 4) left, top, width, height (MOT, COCO)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], axis=1)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) left, top, width, height -> (N, 4) x1 y1 x2 y2."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:4]], axis=1)


def box_area(boxes: np.ndarray) -> np.ndarray:
    wh = np.clip(boxes[:, 2:4] - boxes[:, :2], 0, None)
    return wh[:, 0] * wh[:, 1]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M) float32.

    In-place arithmetic on the (N, M) intersection arrays: trackers call this
    every frame with up to thousands of boxes.
    """
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2])
    iw -= np.maximum(a[:, None, 0], b[None, :, 0])
    np.maximum(iw, 0, out=iw)
    ih = np.minimum(a[:, None, 3], b[None, :, 3])
    ih -= np.maximum(a[:, None, 1], b[None, :, 1])
    np.maximum(ih, 0, out=ih)
    iw *= ih  # intersection
    union = box_area(a)[:, None] + box_area(b)[None, :]
    union -= iw
    np.maximum(union, 1e-12, out=union)
    iw /= union
    return iw


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray | None,
    iou_threshold: float,
    max_detections: int = 300,
) -> np.ndarray:
    """Indices kept by (class-aware when ``class_ids`` is given) NMS, best first.

    Boxes are xyxy. Class-aware NMS offsets each class into its own region of the
    plane so one vectorised pass suppresses only within a class.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float32)
    if class_ids is not None:
        offset = (float(np.abs(boxes).max()) + 1.0) * np.asarray(class_ids, np.float32)
        boxes = boxes + offset[:, None]
    order = np.argsort(-np.asarray(scores), kind="stable")
    boxes = boxes[order]
    keep: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    areas = box_area(boxes)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= max_detections:
            break
        rest = slice(i + 1, None)
        lt = np.maximum(boxes[i, :2], boxes[rest, :2])
        rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[:, 0] * wh[:, 1]
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        suppressed[rest] |= iou > iou_threshold
    return order[np.asarray(keep, dtype=np.int64)]


@dataclass(frozen=True)
class BoxTransform:
    """How a frame was resized/padded into the network input, to map boxes back.

    network = original * scale + pad, per axis. ``width``/``height`` are the
    original frame's size, used to clip.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int
    height: int

    @classmethod
    def identity(cls, width: int, height: int) -> BoxTransform:
        """The frame went into the network at its own size."""
        return cls(1.0, 1.0, 0.0, 0.0, width, height)

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy in network pixels -> (N, 4) xyxy in frame pixels, clipped."""
        out = np.asarray(xyxy, dtype=np.float32).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out

    def to_network(self, xyxy: np.ndarray) -> np.ndarray:
        out = np.asarray(xyxy, dtype=np.float32).copy()
        out[:, [0, 2]] = out[:, [0, 2]] * self.scale_x + self.pad_x
        out[:, [1, 3]] = out[:, [1, 3]] * self.scale_y + self.pad_y
        return out
