"""Association: IoU cost between tracks and detections, and optimal assignment."""

from __future__ import annotations

import numpy as np

from core.boxes import iou_matrix

try:  # LAPJV is several times faster than scipy's Hungarian on large frames
    import lap
except ImportError:  # pragma: no cover - lap is in requirements.txt
    lap = None


def iou_cost(
    track_xyxy: np.ndarray, det_xyxy: np.ndarray, margin: np.ndarray | None = None
) -> np.ndarray:
    """(T, 4) and (D, 4) xyxy boxes -> (T, D) cost 1 - IoU, float64.

    ``margin`` (T,) pixels: buffered IoU (Yang et al., C-BIoU 2023) - track i and
    every detection are both grown by ``margin[i]`` on each side before the
    overlap is taken, so a track whose position has become uncertain (lost for a
    while) can still meet its object again.
    """
    if margin is None or not np.any(margin):
        return 1.0 - iou_matrix(track_xyxy, det_xyxy).astype(np.float64)
    m = np.asarray(margin, np.float64)[:, None, None] * np.array([-1, -1, 1, 1])
    t = np.asarray(track_xyxy, np.float64)[:, None, :] + m
    d = np.asarray(det_xyxy, np.float64)[None, :, :] + m
    wh = np.clip(np.minimum(t[..., 2:], d[..., 2:]) - np.maximum(t[..., :2],
                                                                 d[..., :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_t = np.prod(t[..., 2:] - t[..., :2], axis=-1)
    area_d = np.prod(d[..., 2:] - d[..., :2], axis=-1)
    return 1.0 - inter / np.maximum(area_t + area_d - inter, 1e-9)


def direction_cost(
    track_velocity: np.ndarray, reference_xyxy: np.ndarray, det_xyxy: np.ndarray
) -> np.ndarray:
    """OC-SORT's observation-centric momentum: (T, D) in [-0.5, 0.5], how much the
    direction from track i's reference observation to detection j disagrees with
    the track's observed direction of motion (0.5 = opposite, -0.5 = the same).

    ``track_velocity`` (T, 2) unit directions (zeros: no direction yet, cost 0);
    ``reference_xyxy`` (T, 4) the observation the direction is measured from.
    """
    ref = (reference_xyxy[:, :2] + reference_xyxy[:, 2:]) / 2
    det = (det_xyxy[:, :2] + det_xyxy[:, 2:]) / 2
    delta = det[None, :, :] - ref[:, None, :]
    delta /= np.linalg.norm(delta, axis=-1, keepdims=True) + 1e-6
    cos = np.clip(np.einsum("tdk,tk->td", delta, track_velocity), -1.0, 1.0)
    angle = np.arccos(cos)  # 0 (same direction) .. pi (opposite)
    known = np.any(track_velocity != 0, axis=1)[:, None]
    return np.where(known, angle / np.pi - 0.5, 0.0)


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
        contested_row, contested_col = per_row > 0, per_col > 0
        contested_row[r[alone]] = False
        contested_col[c[alone]] = False
        rest_rows = np.flatnonzero(contested_row)
        rest_cols = np.flatnonzero(contested_col)
        sub_rows, sub_cols = _solve(cost[np.ix_(rest_rows, rest_cols)], cost_limit)
        rows = np.concatenate([r[alone], rest_rows[sub_rows]]).astype(np.int64)
        cols = np.concatenate([c[alone], rest_cols[sub_cols]]).astype(np.int64)
    matches = np.stack([rows, cols], axis=1)
    return matches, _others(n_rows, rows), _others(n_cols, cols)


def _others(n: int, taken: np.ndarray) -> np.ndarray:
    """The indices below ``n`` not in ``taken``, ascending."""
    free = np.ones(n, dtype=bool)
    free[taken] = False
    return np.flatnonzero(free).astype(np.int64)


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
