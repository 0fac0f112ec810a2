"""The shapes-trained HOG + linear SVM must learn, on a small generated set in
seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_hog_svm_finds_big_shapes(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from engines.build import load_detector
    from training.data.datasets import load_dataset
    from training.data.generate import generate_dataset
    from training.evaluate import coco_map
    from training.lineage.hog import train_hog

    data = generate_dataset(tmp_path / "d", 40, 10, size=(120, 200), seed=5,
                            max_objects=2)
    model = train_hog(load_dataset(data, "train"), tmp_path / "hog.npz",
                      mine_images=20)
    det = load_detector(model, family="lineage_hog")
    val = load_dataset(data, "val")
    metrics = coco_map(val, det.detect([s.image for s in val]))
    assert metrics["map50"] >= 0.1, metrics  # an untrained filter scores ~0
    assert np.isfinite(det.model.filters).all()
