"""RoI max pooling (Fast R-CNN) and RoIAlign (Mask R-CNN) in NumPy, with
``torchvision.ops.roi_pool``'s and ``roi_align``'s arithmetic, so the RoI head is
a plain one-input network any backend runs.

Each RoI is rounded to feature cells, split into ``size`` x ``size`` bins
(floor / ceil of fractional bin edges, so neighbouring bins may share a cell),
and every bin takes the max of its cells; empty bins give 0. The max over a
rectangle comes from a 2-D sparse table (max over every 2^a x 2^b block, built
once per feature map): any rectangle is covered by four such blocks, so all
K x size x size bins are a few vectorised gathers (one where a bin's sides are
powers of two, as most small RoIs' are).
"""

from __future__ import annotations

import numpy as np

POOLINGS = ("max", "align")  # roi_max_pool, roi_align: the names model files record


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
            np.maximum(table[a - 1, 0, :h - s], table[a - 1, 0, s:],
                       out=table[a, 0, :h - s])
        for b in range(1, lx):
            s = 1 << (b - 1)
            np.maximum(table[a, b - 1, :, :w - s], table[a, b - 1, :, s:],
                       out=table[a, b, :, :w - s])
    return table


def _bin_edges(start: np.ndarray, bin_size: np.ndarray, size: int, limit: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis, for (K,) RoI starts and bin sizes in cells -> (K, size)
    each: the first cell of the bin, the start of the second block covering it,
    the block level (its length is 2^level) and whether the bin is empty."""
    p = np.arange(size, dtype=np.float32)
    lo = (np.floor(p[None] * bin_size[:, None]).astype(np.int64)
          + start[:, None]).clip(0, limit)
    hi = (np.ceil((p[None] + 1) * bin_size[:, None]).astype(np.int64)
          + start[:, None]).clip(0, limit)
    level = np.log2(np.maximum(hi - lo, 1)).astype(np.int64)
    far = np.maximum(hi - (1 << level), 0)
    return np.minimum(lo, limit - 1), far, level, hi <= lo


def roi_max_pool(features: np.ndarray, rois: np.ndarray, size: int,
                 spatial_scale: float, channels_last: bool = False) -> np.ndarray:
    """``features`` (C, H, W) float32, ``rois`` (K, 4) xyxy in input pixels ->
    (K, C, size, size) float32, as ``torchvision.ops.roi_pool(features[None],
    [rois], size, spatial_scale)``; (K, size, size, C) if ``channels_last``."""
    c, h, w = features.shape
    rois = np.asarray(rois, np.float32).reshape(-1, 4)
    k = len(rois)
    if k == 0:
        return _layout(np.zeros((0, size, size, c), np.float32), channels_last)
    x1, y1, x2, y2 = _round_half_away(rois * np.float32(spatial_scale)).T
    bin_w = (np.maximum(x2 - x1 + 1, 1) / np.float32(size)).astype(np.float32)
    bin_h = (np.maximum(y2 - y1 + 1, 1) / np.float32(size)).astype(np.float32)
    ys, y_far, a, y_empty = _bin_edges(y1, bin_h, size, h)  # (K, size): bin rows
    xs, x_far, b, x_empty = _bin_edges(x1, bin_w, size, w)  # (K, size): bin columns
    lx = int(b.max()) + 1  # only the block sizes the largest bin needs
    table = _sparse_table(np.asarray(features, np.float32).transpose(1, 2, 0),
                          int(a.max()) + 1, lx).reshape(-1, c)
    row_level = (a * lx)[:, :, None]

    def index(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Table rows of every (RoI, bin row, bin column): (K * size * size,)."""
        return (((row_level + b[:, None, :]) * h + y[:, :, None]) * w
                + x[:, None, :]).ravel()

    out = np.take(table, index(ys, xs), axis=0)  # (K * size * size, C)
    # A bin whose length is a power of two is one block along that axis: only
    # bins with a distinct far block need more gathers.
    y_two, x_two = (y_far != ys)[:, :, None], (x_far != xs)[:, None, :]
    for y, x, needed in ((y_far, xs, y_two), (ys, x_far, x_two),
                         (y_far, x_far, y_two & x_two)):
        rows = np.flatnonzero(np.broadcast_to(needed, (k, size, size)))
        if len(rows):
            out[rows] = np.maximum(out[rows], np.take(table, index(y, x)[rows], axis=0))
    empty = np.flatnonzero(y_empty[:, :, None] | x_empty[:, None, :])
    out[empty] = 0.0
    return _layout(out.reshape(k, size, size, c), channels_last)


def _layout(pooled: np.ndarray, channels_last: bool) -> np.ndarray:
    """(K, size, size, C) as gathered -> itself, or (K, C, size, size)."""
    if channels_last:
        return pooled
    return np.ascontiguousarray(pooled.transpose(0, 3, 1, 2))


def _bilinear_taps(coord: np.ndarray, limit: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample coordinates along one axis (cells) -> the two neighbouring cells and
    their weights, as torchvision's ``bilinear_interpolate`` (a sample more than
    one cell outside the map reads 0: both weights are 0)."""
    outside = (coord < -1.0) | (coord > limit)
    c = np.maximum(coord, 0.0)
    low = np.minimum(c.astype(np.int64), limit - 1)
    high = np.minimum(low + 1, limit - 1)
    frac = np.where(low >= limit - 1, 0.0, c - low).astype(np.float32)
    w_low = np.where(outside, 0.0, 1.0 - frac).astype(np.float32)
    w_high = np.where(outside, 0.0, frac).astype(np.float32)
    return low, high, w_low, w_high


def roi_align(features: np.ndarray, rois: np.ndarray, size: int, spatial_scale: float,
              sampling_ratio: int = 1, channels_last: bool = False) -> np.ndarray:
    """``features`` (C, H, W) float32, ``rois`` (K, 4) xyxy in input pixels ->
    (K, C, size, size) float32, as ``torchvision.ops.roi_align(features[None],
    [rois], size, spatial_scale, sampling_ratio, aligned=True)``; (K, size,
    size, C) if ``channels_last``.

    RoIAlign (Mask R-CNN) does not round the RoI to feature cells: each bin
    averages ``sampling_ratio`` x ``sampling_ratio`` bilinear samples, so a box
    keeps its sub-cell position (RoI max pooling rounds its edges to whole
    cells, 8 px at stride 8). Bilinear sampling is linear in the features, so
    all bins are one sparse (K * size^2, H * W) matrix times the (H * W, C) map,
    4 * sampling_ratio^2 weights per bin: the construction of
    ``engines.nets.roi_align.roi_align_sparse``, which does it in torch (with
    ``aligned=False``) for Faster R-CNN's training; this one needs no torch."""
    from scipy.sparse import csr_matrix

    if sampling_ratio < 1:
        raise ValueError(f"sampling_ratio must be >= 1, got {sampling_ratio}")
    c, h, w = features.shape
    rois = np.asarray(rois, np.float32).reshape(-1, 4)
    k, s = len(rois), sampling_ratio
    if k == 0:
        return _layout(np.zeros((0, size, size, c), np.float32), channels_last)
    scaled = rois.astype(np.float64) * spatial_scale - 0.5  # aligned: pixel centres
    # sample positions along each axis, (K, size, s): bin, then sample in the bin
    steps = ((np.arange(size)[:, None] + (np.arange(s) + 0.5) / s) / size)[None]
    ys = scaled[:, 1, None, None] + steps * (scaled[:, 3] - scaled[:, 1])[:, None, None]
    xs = scaled[:, 0, None, None] + steps * (scaled[:, 2] - scaled[:, 0])[:, None, None]
    y0, y1, wy0, wy1 = _bilinear_taps(ys, h)
    x0, x1, wx0, wx1 = _bilinear_taps(xs, w)
    # every (RoI, bin row, bin column) takes s x s samples of 4 taps each:
    # axes (K, bin row, bin col, sample row, sample col, tap row, tap col)
    cells = (np.stack([y0, y1], -1)[:, :, None, :, None, :, None] * w
             + np.stack([x0, x1], -1)[:, None, :, None, :, None, :])
    weights = (np.stack([wy0, wy1], -1)[:, :, None, :, None, :, None]
               * np.stack([wx0, wx1], -1)[:, None, :, None, :, None, :]) / (s * s)
    per_bin = 4 * s * s
    sampling = csr_matrix((weights.astype(np.float32).ravel(), cells.ravel(),
                           np.arange(0, k * size * size * per_bin + 1, per_bin)),
                          shape=(k * size * size, h * w))
    table = np.asarray(features, np.float32).reshape(c, h * w).T  # (H * W, C)
    out = sampling @ table  # (K * size * size, C)
    return _layout(out.reshape(k, size, size, c), channels_last)
