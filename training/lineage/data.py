"""Training samples for the lineage networks, all from the procedural generator.

Single-object images (localization), object-centred vs background windows
(OverFeat), and Selective Search proposals labelled by IoU (R-CNN, Fast R-CNN).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from tqdm import tqdm

from core.boxes import iou_matrix
from engines.lineage.proposals import selective_search
from training.data.generate import (
    _ensure_contrast,
    mask_boxes,
    paste,
    photo_background,
    random_shape,
    render_background,
)

POSITIVE_IOU = 0.5  # R-CNN: proposals with IoU >= 0.5 to a ground truth are objects
BACKGROUND_IOU = 0.3  # ... and those below 0.3 to every ground truth background


def single_object_scene(rng: np.random.Generator, size: tuple[int, int],
                        min_extent: float = 0.15, max_extent: float = 0.8,
                        backgrounds: list[np.ndarray] | None = None
                        ) -> tuple[np.ndarray, np.ndarray, int]:
    """One object on a cluttered background (procedural, or a crop of one of the
    ``backgrounds`` photographs): image HxWx3 BGR, box (4,) xyxy px of its
    visible extent, class id. Extent is a fraction of the image height."""
    h, w = size
    shape = random_shape(rng, size)
    extent = math.exp(rng.uniform(math.log(min_extent), math.log(max_extent))) * h
    shape.radius = extent / 2
    shape.cx = float(rng.uniform(0.15 * w, 0.85 * w))
    shape.cy = float(rng.uniform(0.15 * h, 0.85 * h))
    image = (photo_background(rng, size, backgrounds) if backgrounds
             else render_background(rng, size))
    _ensure_contrast(shape, image)
    painted, _ = paste(image, shape)
    return image, mask_boxes([painted])[0], shape.class_id


def square_crop(image: np.ndarray, cx: float, cy: float, side: float, out: int
                 ) -> np.ndarray:
    """A square of ``side`` px centred at (cx, cy), resized to out x out; the part
    outside the image is replicated border (as a padded pyramid would see)."""
    scale = out / side
    m = np.float32([[scale, 0, out / 2 - cx * scale], [0, scale, out / 2 - cy * scale]])
    return cv2.warpAffine(image, m, (out, out), flags=cv2.INTER_AREA
                          if scale < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def overfeat_windows(rng: np.random.Generator, image: np.ndarray, boxes: np.ndarray,
                     class_ids: np.ndarray, window: int, negatives: int = 3
                     ) -> tuple[list[np.ndarray], list[int], list[np.ndarray]]:
    """Object-centred windows (jittered in centre and size, the object filling
    50-95% of the side) labelled class+1 with the box in window units, and
    random background windows (IoU < 0.3 with every object) labelled 0."""
    crops, labels, targets = [], [], []
    h, w = image.shape[:2]
    for box, cid in zip(boxes, class_ids, strict=True):
        bw, bh = box[2] - box[0], box[3] - box[1]
        if min(bw, bh) < 4:
            continue
        side = max(bw, bh) / rng.uniform(0.5, 0.95)
        cx = (box[0] + box[2]) / 2 + rng.uniform(-0.15, 0.15) * side
        cy = (box[1] + box[3]) / 2 + rng.uniform(-0.15, 0.15) * side
        crops.append(square_crop(image, cx, cy, side, window))
        labels.append(int(cid) + 1)
        x0, y0 = cx - side / 2, cy - side / 2
        targets.append(((box - [x0, y0, x0, y0]) / side).astype(np.float32))
    for _ in range(negatives * max(1, len(boxes))):
        side = math.exp(rng.uniform(math.log(16), math.log(min(h, w))))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        square = np.float32([[cx - side / 2, cy - side / 2, cx + side / 2,
                              cy + side / 2]])
        if len(boxes) and iou_matrix(square, boxes).max() >= BACKGROUND_IOU:
            continue
        crops.append(square_crop(image, cx, cy, side, window))
        labels.append(0)
        targets.append(np.zeros(4, np.float32))
    return crops, labels, targets


def label_proposals(proposals: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """R-CNN labelling: (N, 4) xyxy proposals -> labels (N,) int64 (class + 1 for
    IoU >= 0.5 with a ground truth, 0 for < 0.3 with all, -1 ignored) and the
    matched ground-truth boxes (N, 4)."""
    labels = np.zeros(len(proposals), np.int64)
    matched = np.zeros((len(proposals), 4), np.float32)
    if len(boxes) == 0 or len(proposals) == 0:
        return labels, matched
    iou = iou_matrix(proposals, boxes)
    best, arg = iou.max(1), iou.argmax(1)
    matched = boxes[arg].astype(np.float32)
    labels[best >= BACKGROUND_IOU] = -1
    positive = best >= POSITIVE_IOU
    labels[positive] = class_ids[arg[positive]] + 1
    return labels, matched


def proposals_for(dataset, max_side: int, max_proposals: int
                  ) -> list[np.ndarray]:
    """Selective Search proposals (xyxy px) of every image in ``dataset``."""
    return [selective_search(dataset[i].image, max_side, max_proposals)
            for i in tqdm(range(len(dataset)), desc="selective search")]


def sample_rois(rng: np.random.Generator, proposals: np.ndarray, boxes: np.ndarray,
                class_ids: np.ndarray, count: int, positive_fraction: float = 0.25
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``count`` labelled RoIs of one image, ground truths included as
    positives, at most ``positive_fraction`` positive (Fast R-CNN's minibatch).
    Returns rois (K, 4) xyxy, labels (K,), matched ground-truth boxes (K, 4)."""
    rois = np.concatenate([proposals, boxes.astype(np.float32)]) if len(boxes) else (
        proposals)
    labels, matched = label_proposals(rois, boxes, class_ids)
    pos = np.flatnonzero(labels > 0)
    neg = np.flatnonzero(labels == 0)
    n_pos = min(len(pos), int(count * positive_fraction))
    pos = rng.choice(pos, n_pos, replace=False)
    neg = rng.choice(neg, min(len(neg), count - n_pos), replace=False)
    keep = np.concatenate([pos, neg])
    return rois[keep], labels[keep], matched[keep]
