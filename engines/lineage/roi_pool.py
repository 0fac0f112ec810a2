"""RoI max pooling (Fast R-CNN) in NumPy, with ``torchvision.ops.roi_pool``'s
exact arithmetic, so the RoI head is a plain one-input network any backend runs.

Each RoI is rounded to feature cells, split into ``size`` x ``size`` bins
(floor / ceil of fractional bin edges, so neighbouring bins may share a cell),
and every bin takes the max of its cells; empty bins give 0. The max over a
rectangle comes from a 2-D sparse table (max over every 2^a x 2^b block, built
once per feature map): any rectangle is covered by four such blocks, so all
K x size x size bins are one vectorised gather.
"""

from __future__ import annotations

import numpy as np


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """C's ``round``: halves go away from zero (NumPy's ``round`` goes to even)."""
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def _sparse_table(features: np.ndarray, ly: int, lx: int) -> np.ndarray:
    """(H, W, C) -> (ly, lx, H, W, C): entry [a, b, y, x] is the max over rows
    y .. y + 2^a - 1 and columns x .. x + 2^b - 1. Blocks that would cross the
    edge are left unset: no query reads them. Channels last, so each gathered bin
    is one contiguous vector."""
    h, w, c = features.shape
    table = np.empty((ly, lx, h, w, c), np.float32)
    table[0, 0] = features
    for a in range(ly):
        if a:
            s = 1 << (a - 1)
            table[a, 0, :h - s] = np.maximum(table[a - 1, 0, :h - s],
                                             table[a - 1, 0, s:])
        for b in range(1, lx):
            s = 1 << (b - 1)
            table[a, b, :, :w - s] = np.maximum(table[a, b - 1, :, :w - s],
                                                table[a, b - 1, :, s:])
    return table


def roi_max_pool(features: np.ndarray, rois: np.ndarray, size: int,
                 spatial_scale: float) -> np.ndarray:
    """``features`` (C, H, W) float32, ``rois`` (K, 4) xyxy in input pixels ->
    (K, C, size, size) float32, as ``torchvision.ops.roi_pool(features[None],
    [rois], size, spatial_scale)``."""
    c, h, w = features.shape
    rois = np.asarray(rois, np.float32).reshape(-1, 4)
    k = len(rois)
    if k == 0:
        return np.zeros((0, c, size, size), np.float32)
    r = _round_half_away(rois * np.float32(spatial_scale))
    x1, y1, x2, y2 = r.T
    bin_w = (np.maximum(x2 - x1 + 1, 1) / np.float32(size)).astype(np.float32)
    bin_h = (np.maximum(y2 - y1 + 1, 1) / np.float32(size)).astype(np.float32)
    p = np.arange(size, dtype=np.float32)

    def edges(start: np.ndarray, bin_size: np.ndarray, limit: int
              ) -> tuple[np.ndarray, np.ndarray]:
        lo = np.floor(p[None] * bin_size[:, None]).astype(np.int64)
        hi = np.ceil((p[None] + 1) * bin_size[:, None]).astype(np.int64)
        return ((lo + start[:, None]).clip(0, limit),
                (hi + start[:, None]).clip(0, limit))

    ys, ye = edges(y1, bin_h, h)  # (K, size) each
    xs, xe = edges(x1, bin_w, w)
    ys, ye = np.broadcast_to(ys[:, :, None], (k, size, size)).ravel(), \
        np.broadcast_to(ye[:, :, None], (k, size, size)).ravel()
    xs, xe = np.broadcast_to(xs[:, None, :], (k, size, size)).ravel(), \
        np.broadcast_to(xe[:, None, :], (k, size, size)).ravel()
    empty = (ye <= ys) | (xe <= xs)
    dy, dx = np.maximum(ye - ys, 1), np.maximum(xe - xs, 1)
    a, b = np.log2(dy).astype(np.int64), np.log2(dx).astype(np.int64)
    y_far, x_far = np.maximum(ye - (1 << a), 0), np.maximum(xe - (1 << b), 0)
    ys, xs = np.minimum(ys, h - 1), np.minimum(xs, w - 1)
    # only the block sizes the largest bin needs
    lx = int(b.max()) + 1
    table = _sparse_table(np.asarray(features, np.float32).transpose(1, 2, 0),
                          int(a.max()) + 1, lx).reshape(-1, c)
    level = (a * lx + b) * h

    def rows(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.take(table, (level + y) * w + x, axis=0)  # (Q, C)

    out = np.maximum(np.maximum(rows(ys, xs), rows(y_far, xs)),
                     np.maximum(rows(ys, x_far), rows(y_far, x_far)))
    out[empty] = 0.0
    return np.ascontiguousarray(out.reshape(k, size, size, c).transpose(0, 3, 1, 2))
