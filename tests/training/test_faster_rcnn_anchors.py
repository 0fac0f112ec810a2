"""k-means anchors: sizes and aspect ratios fitted to the boxes."""

from __future__ import annotations

import numpy as np
import pytest

from training.faster_rcnn.anchors import fit_anchors, kmeans_1d


def test_kmeans_finds_the_modes() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(1, 0.05, 200), rng.normal(5, 0.05, 100)])
    assert np.allclose(kmeans_1d(values, 2), [1, 5], atol=0.05)
    with pytest.raises(ValueError, match="at least 3"):
        kmeans_1d([1.0, 2.0], 3)


def test_fit_anchors_orders_sizes_by_level_and_finds_ratios() -> None:
    rng = np.random.default_rng(1)
    side = np.exp(rng.uniform(np.log(10), np.log(160), 2000))
    ratio = rng.choice([0.5, 1.0, 2.0], 2000)  # height / width
    wh = np.stack([side / np.sqrt(ratio), side * np.sqrt(ratio)], 1)
    sizes, ratios = fit_anchors(wh, strides=[8, 16, 32, 64], per_level=2, ratios=3)
    flat = [s for level in sizes for s in level]
    assert len(sizes) == 4 and all(len(level) == 2 for level in sizes)
    assert flat == sorted(flat) and 10 <= flat[0] < 20 and 100 < flat[-1] <= 160
    assert np.allclose(ratios, [0.5, 1.0, 2.0], rtol=0.05)


def test_anchors_respect_their_level_stride() -> None:
    """Small objects only: the coarse levels keep anchors they can place (no
    anchor below 1.5 strides), the fine level fits the objects."""
    rng = np.random.default_rng(2)
    side = rng.uniform(10, 30, 500)
    sizes, _ = fit_anchors(np.stack([side, side], 1), strides=[8, 16, 32, 64])
    assert 10 <= sizes[0][0] < sizes[0][1] <= 30
    for level, stride in zip(sizes, [8, 16, 32, 64], strict=True):
        assert min(level) >= 1.5 * stride
    assert sizes[3][0] >= 96  # not the 30 px a stride-blind fit would deal it
