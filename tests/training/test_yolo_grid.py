"""YOLO v1 grid loss, term by term, against hand-worked examples, and a run that
must overfit a handful of images (the grid head learns).

The example: S = 2, B = 2, C = 2, a 64 x 64 input, one ground truth of class 1 at
xyxy (0, 0, 16, 16) px = (0, 0, .25, .25) of the image. Its centre (.125, .125)
lies in cell (row 0, col 0) at offset (.25, .25) of the cell; sqrt w = sqrt h = .5.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.yolo import decode_grid
from training.yolo.grid import LAMBDA_COORD, LAMBDA_NOOBJ, GridLoss, GridYolo
from training.yolo.train import TrainConfig, train

S, B, C, IMG = 2, 2, 2, 64
GT = torch.tensor([[0, 1, 0.0, 0.0, 16.0, 16.0]])


def example() -> torch.Tensor:
    """Predictions ``[1, S, S, 5B + C]`` (x, y, sqrt w, sqrt h, conf per box).

    Cell (0, 0): box 0 has the ground truth's centre and sqrt sizes .25
    (w = h = 1/16, so IoU = (1/16)^2 / (1/4)^2 = 1/16), confidence .5; box 1 sits
    at (.375, .375) image units with w = h = .04 (IoU 0), confidence .4; class
    probabilities (.3, .7). Every other box has confidence .2 and the other cells
    class probabilities (.9, .1).
    """
    p = torch.zeros(1, S, S, 5 * B + C)
    p[..., 4] = p[..., 9] = 0.2
    p[..., 10:] = torch.tensor([0.9, 0.1])
    p[0, 0, 0, :5] = torch.tensor([0.25, 0.25, 0.25, 0.25, 0.5])
    p[0, 0, 0, 5:10] = torch.tensor([0.75, 0.75, 0.2, 0.2, 0.4])
    p[0, 0, 0, 10:] = torch.tensor([0.3, 0.7])
    return p


def loss_parts(pred: torch.Tensor) -> list[float]:
    _, parts = GridLoss(GridYolo(C, grid=S, boxes_per_cell=B))(pred, GT, (IMG, IMG))
    return parts.tolist()


def test_paper_weights() -> None:
    assert LAMBDA_COORD == 5.0 and LAMBDA_NOOBJ == 0.5


def test_coord_term_uses_offsets_and_square_roots() -> None:
    # responsible box 0: x, y exact; sqrt w, sqrt h .25 against .5
    expected = LAMBDA_COORD * (0 + 0 + (0.25 - 0.5) ** 2 + (0.25 - 0.5) ** 2)
    assert loss_parts(example())[0] == pytest.approx(expected)  # 0.625


def test_obj_term_targets_the_iou_of_the_responsible_box() -> None:
    assert loss_parts(example())[1] == pytest.approx((0.5 - 1 / 16) ** 2)


def test_noobj_term_covers_every_other_predictor() -> None:
    # box 1 of the object's cell (.4) and the 6 boxes of the empty cells (.2)
    expected = LAMBDA_NOOBJ * (0.4**2 + 6 * 0.2**2)
    assert loss_parts(example())[2] == pytest.approx(expected)  # 0.2


def test_class_term_only_in_cells_with_an_object() -> None:
    # cell (0, 0): (.3 - 0)^2 + (.7 - 1)^2; the other cells' (.9, .1) are ignored
    assert loss_parts(example())[3] == pytest.approx(0.09 + 0.09)


def test_responsible_box_is_the_one_with_the_highest_iou() -> None:
    p = example()
    p[0, 0, 0, 5:9] = torch.tensor([0.25, 0.25, 0.5, 0.5])  # box 1 = ground truth
    coord, obj, noobj, _ = loss_parts(p)
    assert coord == pytest.approx(0.0, abs=1e-9)  # box 1 is responsible, exact
    assert obj == pytest.approx((0.4 - 1.0) ** 2)  # its conf against IoU 1
    assert noobj == pytest.approx(LAMBDA_NOOBJ * (0.5**2 + 6 * 0.2**2))  # box 0 now


def test_loss_is_divided_by_batch_and_empty_images_only_pay_noobj() -> None:
    p = torch.cat([example(), example()])
    _, parts = GridLoss(GridYolo(C, grid=S, boxes_per_cell=B))(p, GT, (IMG, IMG))
    one = loss_parts(example())
    assert parts[0] == pytest.approx(one[0] / 2)
    # image 1 has no object: all 8 predictors are noobj
    empty = LAMBDA_NOOBJ * (0.5**2 + 0.4**2 + 6 * 0.2**2)
    assert parts[2] == pytest.approx((one[2] + empty) / 2)


def test_decode_matches_the_training_targets() -> None:
    """The exported form (w, h squared back) decodes to the ground-truth box with
    score = confidence x class probability."""
    model = GridYolo(C, grid=S, boxes_per_cell=B)
    p = example()
    p[0, 0, 0, 2:4] = 0.5  # exact box
    b = p[..., :10].unflatten(-1, (B, 5))
    exported = torch.cat([torch.cat([b[..., :2], b[..., 2:4] ** 2, b[..., 4:]],
                                    -1).flatten(-2), p[..., 10:]], -1)
    assert model.S == S
    xyxy, scores, cls = decode_grid(exported[0].numpy(), B, (IMG, IMG))
    best = int(np.argmax(scores))
    assert np.allclose(xyxy[best], [0, 0, 16, 16], atol=1e-4)
    assert cls[best] == 1 and scores[best] == pytest.approx(0.5 * 0.7)


def test_output_activations_and_initial_confidence() -> None:
    torch.manual_seed(0)
    model = GridYolo(C, grid=S, boxes_per_cell=B).train()
    y = model(torch.rand(2, 3, IMG, IMG))
    boxes = y[..., :10].unflatten(-1, (B, 5))
    assert ((boxes >= 0) & (boxes <= 1)).all()
    assert torch.allclose(y[..., 10:].sum(-1), torch.ones(2, S, S))


def write_handful(root: Path, n: int = 8, size: int = 128, seed: int = 0) -> Path:
    """``n`` images of 1-2 big solid shapes; val is the train split (overfitting)."""
    from tests.training.test_yolo_train import write_easy_dataset

    yaml = write_easy_dataset(root, n_train=n, n_val=1, size=size, seed=seed)
    yaml.write_text(yaml.read_text().replace("val: images/val", "val: images/train"))
    return yaml


@pytest.mark.usefixtures("one_thread")
def test_grid_head_overfits_a_handful_of_images(tmp_path: Path) -> None:
    """8 images, 128 px, S = 4: mAP@.5 on them must reach 0.9 (the head learns)."""
    data = write_handful(tmp_path / "d")
    cfg = TrainConfig(data=str(data), head="grid", grid=4, imgsz=128, epochs=60,
                      batch=8, lr=3e-3, warmup_steps=10, augment=False,
                      val_every=20, ema_decay=0.0, out=str(tmp_path / "run"))
    report = train(cfg)
    assert report["best_map50"] >= 0.9, report["history"][-1]
    assert math.isfinite(sum(report["history"][-1]["loss"].values()))
