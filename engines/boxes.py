"""Box arithmetic shared by every model family: IoU, NMS, conversions, letterbox."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) centre-x, centre-y, width, height -> (N, 4) x1 y1 x2 y2."""
    boxes = np.asarray(boxes, dtype=np.float32)
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float32)
    wh = boxes[:, 2:4] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + wh / 2, wh], axis=1)


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


def letterbox(
    image: np.ndarray, size: tuple[int, int], pad_value: int = 114
) -> tuple[np.ndarray, BoxTransform]:
    """Resize keeping aspect ratio into ``size`` = (height, width), pad centred."""
    h, w = image.shape[:2]
    out_h, out_w = size
    scale = min(out_h / h, out_w / w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    pad_x, pad_y = (out_w - new_w) // 2, (out_h - new_h) // 2
    resized = (
        image
        if (new_w, new_h) == (w, h)
        else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    out = cv2.copyMakeBorder(
        resized,
        pad_y,
        out_h - new_h - pad_y,
        pad_x,
        out_w - new_w - pad_x,
        cv2.BORDER_CONSTANT,
        value=(pad_value,) * 3,
    )
    return out, BoxTransform(new_w / w, new_h / h, pad_x, pad_y, w, h)


def stretch(
    image: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, BoxTransform]:
    """Resize to ``size`` = (height, width) without keeping aspect ratio."""
    h, w = image.shape[:2]
    out_h, out_w = size
    out = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return out, BoxTransform(out_w / w, out_h / h, 0.0, 0.0, w, h)
