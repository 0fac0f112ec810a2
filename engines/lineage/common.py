"""Helpers shared by the lineage detectors: input scaling and box deltas."""

from __future__ import annotations

import numpy as np

# R-CNN's box-regression target scaling: (dx, dy) x10 and (dw, dh) x5 keep the
# four targets at similar magnitudes.
DELTA_WEIGHTS = np.array([10.0, 10.0, 5.0, 5.0], np.float32)
MAX_LOG_SCALE = float(np.log(1000.0 / 16))  # clamp on decoded dw, dh


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def encode_deltas(proposals: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy proposals and matched (N, 4) xyxy targets -> (N, 4) weighted
    (dx, dy, dw, dh), the R-CNN box-regression parametrisation."""
    pw = np.maximum(proposals[:, 2] - proposals[:, 0], 1e-3)
    ph = np.maximum(proposals[:, 3] - proposals[:, 1], 1e-3)
    px, py = proposals[:, 0] + pw / 2, proposals[:, 1] + ph / 2
    gw = np.maximum(targets[:, 2] - targets[:, 0], 1e-3)
    gh = np.maximum(targets[:, 3] - targets[:, 1], 1e-3)
    gx, gy = targets[:, 0] + gw / 2, targets[:, 1] + gh / 2
    d = np.stack([(gx - px) / pw, (gy - py) / ph, np.log(gw / pw), np.log(gh / ph)], 1)
    return (d * DELTA_WEIGHTS).astype(np.float32)


def decode_deltas(proposals: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Inverse of ``encode_deltas``: (N, 4) xyxy + (N, 4) deltas -> (N, 4) xyxy."""
    d = deltas / DELTA_WEIGHTS
    pw = proposals[:, 2] - proposals[:, 0]
    ph = proposals[:, 3] - proposals[:, 1]
    px, py = proposals[:, 0] + pw / 2, proposals[:, 1] + ph / 2
    cx, cy = px + d[:, 0] * pw, py + d[:, 1] * ph
    w = pw * np.exp(np.minimum(d[:, 2], MAX_LOG_SCALE))
    h = ph * np.exp(np.minimum(d[:, 3], MAX_LOG_SCALE))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(
        np.float32)

