"""Localization as regression: both heads (class, box) must be able to learn —
overfitting a handful of single-object images in seconds."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.mark.usefixtures("one_thread")
def test_loc_heads_overfit_a_handful_of_images() -> None:
    from core.boxes import iou_matrix
    from core.image import to_tensor
    from training.lineage.data import single_object_scene
    from training.lineage.models import LocNet
    from training.lineage.train import fit_loc

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    size = (64, 112)  # smaller than the shipped input: the test stays fast
    h, w = size
    data = [single_object_scene(rng, size, min_extent=0.4) for _ in range(32)]
    x = torch.from_numpy(np.stack([to_tensor(d[0]) for d in data]))
    boxes = torch.from_numpy(np.stack([d[1] for d in data]) / np.float32([w, h, w, h]))
    cls = torch.tensor([d[2] for d in data])
    model = LocNet(4, size)
    fit_loc(model, x, boxes, cls, epochs=60, rng=rng, batch=16)
    with torch.no_grad():
        logits, pred = model(x)
    accuracy = float((logits.argmax(1) == cls).float().mean())
    iou = float(np.mean(np.diag(iou_matrix(pred.numpy(), boxes.numpy()))))
    assert accuracy >= 0.9, accuracy  # the class head learns
    assert iou >= 0.6, iou  # the box head learns (untrained: ~0.1)
