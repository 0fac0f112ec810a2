"""Constant-velocity Kalman filter over boxes, vectorised over all tracks.

The state is (cx, cy, a, h, vcx, vcy, va, vh): box centre, aspect ratio w/h and
height, and their velocities per nominal frame period, as in DeepSORT and
ByteTrack. A prediction step may span any number of periods, fractional too, so a
source that drops frames or stalls is predicted as far as time really moved.
Process and measurement noise scale with the box height, so a small far-away
object and a big near one are equally certain relative to their size.
"""

from __future__ import annotations

import numpy as np

STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160


def xyxy_to_xyah(xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) x1 y1 x2 y2 -> (N, 4) centre-x, centre-y, aspect w/h, height."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    wh = xyxy[:, 2:] - xyxy[:, :2]
    return np.stack(
        [
            xyxy[:, 0] + wh[:, 0] / 2,
            xyxy[:, 1] + wh[:, 1] / 2,
            wh[:, 0] / wh[:, 1],
            wh[:, 1],
        ],
        axis=1,
    )


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """(N, >=4) centre-x, centre-y, aspect, height (+ anything) -> (N, 4) xyxy."""
    xyah = np.asarray(xyah, dtype=np.float64)
    w = xyah[:, 2] * xyah[:, 3]
    half = np.stack([w / 2, xyah[:, 3] / 2], axis=1)
    return np.concatenate([xyah[:, :2] - half, xyah[:, :2] + half], axis=1)


class KalmanFilterXYAH:
    """Predict/update for N tracks at once: ``mean`` (N, 8), ``cov`` (N, 8, 8)."""

    def __init__(
        self,
        std_weight_position: float = STD_WEIGHT_POSITION,
        std_weight_velocity: float = STD_WEIGHT_VELOCITY,
    ) -> None:
        for name, value in (("std_weight_position", std_weight_position),
                            ("std_weight_velocity", std_weight_velocity)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self.w_pos = float(std_weight_position)
        self.w_vel = float(std_weight_velocity)

    @staticmethod
    def _std(h: np.ndarray, weight: float, aspect_std: float) -> np.ndarray:
        """(N, 4) standard deviations for (cx, cy, a, h) given heights (N,)."""
        s = weight * h
        return np.stack([s, s, np.full_like(h, aspect_std), s], axis=1)

    def initiate(self, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks from (N, 4) xyah measurements; velocities start at 0."""
        z = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
        mean = np.concatenate([z, np.zeros_like(z)], axis=1)
        h = z[:, 3]
        std = np.concatenate(
            [
                2 * self._std(h, self.w_pos, 1e-2),
                10 * self._std(h, self.w_vel, 1e-4),
            ],
            axis=1,
        )
        cov = np.zeros((len(z), 8, 8))
        cov[:, np.arange(8), np.arange(8)] = std**2
        return mean, cov

    def multi_predict(
        self, mean: np.ndarray, cov: np.ndarray, dt: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``dt`` frame periods ahead for every track (x' = x + v dt). The process
        noise variance grows linearly with ``dt``, as a random walk's does."""
        motion = np.eye(8)
        motion[:4, 4:] = dt * np.eye(4)
        h = mean[:, 3]
        std = np.concatenate(
            [
                self._std(h, self.w_pos, 1e-2),
                self._std(h, self.w_vel, 1e-5),
            ],
            axis=1,
        )
        mean = mean @ motion.T
        cov = motion @ cov @ motion.T
        cov[:, np.arange(8), np.arange(8)] += std**2 * dt
        return mean, cov

    def multi_update(
        self, mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Correct N tracks with their matched (N, 4) xyah measurements."""
        z = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
        if len(z) == 0:
            return mean, cov
        # Project to measurement space: H = [I 0], so H P H^T = P[:4, :4].
        std = self._std(mean[:, 3], self.w_pos, 1e-1)
        innovation_cov = cov[:, :4, :4].copy()
        innovation_cov[:, np.arange(4), np.arange(4)] += std**2
        # K = P H^T S^-1; S is symmetric so K^T = S^-1 H P.
        gain = np.linalg.solve(innovation_cov, cov[:, :4, :]).transpose(0, 2, 1)
        innovation = z - mean[:, :4]
        mean = mean + np.einsum("nij,nj->ni", gain, innovation)
        cov = cov - gain @ innovation_cov @ gain.transpose(0, 2, 1)
        return mean, cov


def warp_state(
    mean: np.ndarray, cov: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move N (cx, cy, a, h) states into the next camera frame.

    ``affine`` (2, 3) maps previous-frame pixels to current-frame pixels (as camera
    motion compensation estimates it). Centres are mapped; velocities and the
    height (and their covariance) are rotated and scaled by its linear part.
    """
    if len(mean) == 0:
        return mean, cov
    linear, shift = affine[:, :2], affine[:, 2]
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    mean = mean.copy()
    mean[:, :2] = mean[:, :2] @ linear.T + shift
    mean[:, 4:6] = mean[:, 4:6] @ linear.T
    mean[:, [3, 7]] *= scale
    m = np.eye(8)
    m[:2, :2] = m[4:6, 4:6] = linear
    m[3, 3] = m[7, 7] = scale
    return mean, m @ cov @ m.T
