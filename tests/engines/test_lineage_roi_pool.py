"""NumPy RoI max pooling must equal torchvision's ``roi_pool`` exactly."""

from __future__ import annotations

import numpy as np
import pytest

from engines.lineage.roi_pool import roi_max_pool

torch = pytest.importorskip("torch")
ops = pytest.importorskip("torchvision.ops")


@pytest.mark.parametrize("size,scale", [(5, 1 / 8), (7, 1 / 16), (2, 1.0)])
def test_matches_torchvision(size: int, scale: float) -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(6, 28, 48)).astype(np.float32)
    h, w = 28 / scale, 48 / scale
    xy = rng.uniform(-0.1, 1.1, (300, 2, 2)) * [w, h]
    rois = np.concatenate([xy.min(1), xy.max(1)], 1).astype(np.float32)
    rois[:5] = [[0, 0, w, h], [3, 3, 4, 4], [-20, -20, -1, -1],
                [w + 5, 0, w + 50, 30], [10.5, 4.5, 11.5, 200.5]]  # whole, tiny, out
    expected = ops.roi_pool(torch.from_numpy(feats)[None],
                            [torch.from_numpy(rois)], (size, size), scale).numpy()
    actual = roi_max_pool(feats, rois, size, scale)
    assert actual.shape == expected.shape == (300, 6, size, size)
    np.testing.assert_array_equal(actual, expected)


def test_no_rois() -> None:
    out = roi_max_pool(np.zeros((4, 8, 8), np.float32), np.zeros((0, 4)), 5, 0.125)
    assert out.shape == (0, 4, 5, 5)
