"""Association: IoU cost between tracks and detections, and optimal assignment."""

from __future__ import annotations

import numpy as np

from engines.boxes import iou_matrix

try:  # LAPJV is several times faster than scipy's Hungarian on large frames
    import lap
except ImportError:  # pragma: no cover - lap is in requirements.txt
    lap = None


def iou_cost(track_xyxy: np.ndarray, det_xyxy: np.ndarray) -> np.ndarray:
    """(T, 4) and (D, 4) xyxy boxes -> (T, D) cost 1 - IoU, float64."""
    return 1.0 - iou_matrix(track_xyxy, det_xyxy).astype(np.float64)


def fuse_score(cost: np.ndarray, det_scores: np.ndarray) -> np.ndarray:
    """ByteTrack's score fusion: cost = 1 - IoU * score, so among similar overlaps the
    more confident detection wins. ``cost`` (T, D), ``det_scores`` (D,)."""
    if cost.size == 0:
        return cost
    return 1.0 - (1.0 - cost) * np.asarray(det_scores, np.float64)[None, :]


def linear_assignment(
    cost: np.ndarray, cost_limit: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one matching of rows to columns, pairs costing more than
    ``cost_limit`` left unmatched.

    Returns ``matches`` (K, 2) int64 (row, col), ``unmatched_rows`` and
    ``unmatched_cols`` (int64 index arrays, ascending).
    """
    cost = np.asarray(cost, dtype=np.float64)
    n_rows, n_cols = cost.shape
    if n_rows == 0 or n_cols == 0:
        return (
            np.zeros((0, 2), np.int64),
            np.arange(n_rows, dtype=np.int64),
            np.arange(n_cols, dtype=np.int64),
        )
    if lap is not None:
        _, x, _ = lap.lapjv(cost, extend_cost=True, cost_limit=cost_limit)
        rows = np.flatnonzero(x >= 0)
        cols = x[rows].astype(np.int64)
    else:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        keep = cost[rows, cols] <= cost_limit
        rows, cols = rows[keep], cols[keep]
    matches = np.stack([rows, cols], axis=1).astype(np.int64)
    unmatched_rows = np.setdiff1d(np.arange(n_rows), rows).astype(np.int64)
    unmatched_cols = np.setdiff1d(np.arange(n_cols), cols).astype(np.int64)
    return matches, unmatched_rows, unmatched_cols
