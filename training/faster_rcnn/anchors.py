"""Anchor sizes and aspect ratios fitted to a dataset's boxes (k-means).

Faster R-CNN's RPN regresses from anchors, so anchors near the boxes it must
find make its targets small. The boxes are first brought to the network input
(the same stretch training applies), then:

* sizes: k-means (k = levels x per_level) over log sqrt(area), so small and
  large objects weigh alike; the sorted centres are dealt to FPN levels in order
  (the smallest to the finest level);
* aspect ratios: k-means over log(height / width), shared by every level (as
  torchvision's ``AnchorGenerator`` expects one ratio tuple per level).

``fit_anchors`` returns ``(anchor_sizes, aspect_ratios)`` in the format
``build_faster_rcnn`` reads (``anchor_sizes`` per level, input pixels).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 50) -> np.ndarray:
    """Sorted k-means centres of 1-D ``values`` (quantile start, Lloyd steps)."""
    values = np.asarray(values, np.float64).ravel()
    if len(values) < k:
        raise ValueError(f"need at least {k} boxes to fit {k} anchors, got "
                         f"{len(values)}")
    centres = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        assign = np.abs(values[:, None] - centres[None]).argmin(1)
        new = np.array([values[assign == j].mean() if (assign == j).any()
                        else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return np.sort(centres)


def box_sizes(dataset: Any, input_size: tuple[int, int]) -> np.ndarray:
    """(N, 2) width, height of every labelled box, stretched to ``input_size``."""
    h_in, w_in = input_size
    out = []
    for i in range(len(dataset)):
        size = dataset.sizes[i] or dataset[i].image.shape[:2]
        boxes, _ = dataset.targets(i, size)
        if len(boxes):
            wh = boxes[:, 2:] - boxes[:, :2]
            out.append(wh * np.float32([w_in / size[1], h_in / size[0]]))
    if not out:
        raise ValueError("the dataset has no labelled boxes to fit anchors to")
    return np.concatenate(out)


def fit_anchors(wh: np.ndarray, levels: int, per_level: int = 2, ratios: int = 3
                ) -> tuple[list[list[int]], list[float]]:
    """Anchor sizes per level and shared aspect ratios from (N, 2) box sizes."""
    wh = np.asarray(wh, np.float64)
    wh = wh[(wh > 1).all(1)]
    sizes = np.exp(kmeans_1d(np.log(np.sqrt(wh.prod(1))), levels * per_level))
    per = [[max(4, round(float(s))) for s in sizes[i * per_level:(i + 1) * per_level]]
           for i in range(levels)]
    aspect = np.exp(kmeans_1d(np.log(wh[:, 1] / wh[:, 0]), ratios))
    return per, [round(float(a), 3) for a in aspect]
