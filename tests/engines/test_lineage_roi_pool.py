"""NumPy RoI max pooling must equal torchvision's ``roi_pool`` exactly, and NumPy
RoIAlign its ``roi_align`` (aligned) to float precision."""

from __future__ import annotations

import numpy as np
import pytest

from engines.lineage.roi_pool import roi_align, roi_max_pool

torch = pytest.importorskip("torch")
ops = pytest.importorskip("torchvision.ops")


def random_rois(scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A (6, 28, 48) map and 300 RoIs over it, some whole, tiny or outside."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(6, 28, 48)).astype(np.float32)
    h, w = 28 / scale, 48 / scale
    xy = rng.uniform(-0.1, 1.1, (300, 2, 2)) * [w, h]
    rois = np.concatenate([xy.min(1), xy.max(1)], 1).astype(np.float32)
    rois[:5] = [[0, 0, w, h], [3, 3, 4, 4], [-20, -20, -1, -1],
                [w + 5, 0, w + 50, 30], [10.5, 4.5, 11.5, 200.5]]  # whole, tiny, out
    return feats, rois


@pytest.mark.parametrize("size,scale", [(5, 1 / 8), (7, 1 / 16), (2, 1.0)])
def test_matches_torchvision(size: int, scale: float) -> None:
    feats, rois = random_rois(scale)
    expected = ops.roi_pool(torch.from_numpy(feats)[None],
                            [torch.from_numpy(rois)], (size, size), scale).numpy()
    actual = roi_max_pool(feats, rois, size, scale)
    assert actual.shape == expected.shape == (300, 6, size, size)
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("size,scale,sampling", [(5, 1 / 8, 1), (5, 1 / 8, 2),
                                                 (7, 1 / 16, 3), (2, 1.0, 1)])
def test_align_matches_torchvision(size: int, scale: float, sampling: int) -> None:
    feats, rois = random_rois(scale)
    expected = ops.roi_align(torch.from_numpy(feats)[None], [torch.from_numpy(rois)],
                             (size, size), scale, sampling, aligned=True).numpy()
    actual = roi_align(feats, rois, size, scale, sampling)
    assert actual.shape == expected.shape == (300, 6, size, size)
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    assert np.abs(expected).max() > 1  # not all zeros


def test_align_keeps_sub_cell_position() -> None:
    """A RoI moved by a quarter cell changes RoIAlign's output, not max pooling's
    (which rounds the RoI to cells): the reason it boxes more tightly."""
    feats = np.arange(6 * 28 * 48, dtype=np.float32).reshape(6, 28, 48)
    roi = np.float32([[40, 40, 120, 104]])
    moved = roi + 2  # a quarter of a stride-8 cell
    assert np.array_equal(roi_max_pool(feats, roi, 5, 1 / 8),
                          roi_max_pool(feats, moved, 5, 1 / 8))
    assert not np.allclose(roi_align(feats, roi, 5, 1 / 8),
                           roi_align(feats, moved, 5, 1 / 8))


@pytest.mark.parametrize("pool", [roi_max_pool, roi_align])
def test_channels_last_is_the_same_values(pool) -> None:
    feats, rois = random_rois(1 / 8)
    first = pool(feats, rois, 5, 1 / 8)
    last = pool(feats, rois, 5, 1 / 8, channels_last=True)
    assert last.shape == (300, 5, 5, 6)
    np.testing.assert_array_equal(last.transpose(0, 3, 1, 2), first)


@pytest.mark.parametrize("pool", [roi_max_pool, roi_align])
def test_no_rois(pool) -> None:
    out = pool(np.zeros((4, 8, 8), np.float32), np.zeros((0, 4)), 5, 0.125)
    assert out.shape == (0, 4, 5, 5)


def test_align_rejects_a_sampling_ratio_below_one() -> None:
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align(np.zeros((4, 8, 8), np.float32), np.zeros((1, 4)), 5, 0.125, 0)
