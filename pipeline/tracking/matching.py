"""Association: IoU cost between tracks and detections, and optimal assignment."""

from __future__ import annotations

import numpy as np

from core.boxes import iou_matrix

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
    rows, cols = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if n_rows and n_cols:
        # A row and a column that are each other's only affordable partner form a
        # component of their own: match them directly. In a steady scene that is
        # most tracks, and the solver only sees the few contested ones.
        ok = cost <= cost_limit
        per_row, per_col = ok.sum(1), ok.sum(0)
        r, c = np.nonzero(ok)
        alone = (per_row[r] == 1) & (per_col[c] == 1)
        rest_rows = np.flatnonzero(per_row > 0)
        rest_rows = rest_rows[~np.isin(rest_rows, r[alone])]
        rest_cols = np.flatnonzero(per_col > 0)
        rest_cols = rest_cols[~np.isin(rest_cols, c[alone])]
        sub_rows, sub_cols = _solve(cost[np.ix_(rest_rows, rest_cols)], cost_limit)
        rows = np.concatenate([r[alone], rest_rows[sub_rows]]).astype(np.int64)
        cols = np.concatenate([c[alone], rest_cols[sub_cols]]).astype(np.int64)
    matches = np.stack([rows, cols], axis=1)
    unmatched_rows = np.setdiff1d(np.arange(n_rows), rows).astype(np.int64)
    unmatched_cols = np.setdiff1d(np.arange(n_cols), cols).astype(np.int64)
    return matches, unmatched_rows, unmatched_cols


def _solve(cost: np.ndarray, cost_limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal (row, col) pairs costing at most ``cost_limit``."""
    if cost.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if lap is not None:
        _, x, _ = lap.lapjv(cost, extend_cost=True, cost_limit=cost_limit)
        rows = np.flatnonzero(x >= 0)
        return rows, x[rows].astype(np.int64)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    keep = cost[rows, cols] <= cost_limit
    return rows[keep], cols[keep]
