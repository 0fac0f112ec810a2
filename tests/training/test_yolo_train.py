"""YOLO training pieces: TAL + loss sanity, grid loss, checkpoints, ONNX export
parity and metadata, and a CI-sized training run whose mAP must clear a bar."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core.meta import ModelMeta
from engines.backends.onnxruntime import OnnxRuntimeBackend
from engines.build import load_detector
from engines.nets.yolo import REG_MAX, STRIDES, YoloModel, make_anchors
from training.checkpoint import load_checkpoint, load_model, save_checkpoint
from training.yolo.assigner import TaskAlignedAssigner
from training.yolo.export import export_yolo
from training.yolo.grid import GridLoss, GridYolo
from training.yolo.loss import DetectionLoss
from training.yolo.train import TrainConfig, load_matching, train

IMG = 64
EASY_NAMES = ("square", "disc")
GT = torch.tensor([[0, 1, 12.0, 20.0, 44.0, 52.0]])  # image 0, class 1, xyxy px


def write_easy_dataset(root: Path, n_train: int = 64, n_val: int = 16, size: int = 128,
                       seed: int = 0) -> Path:
    """An easy YOLO-format set: 1-2 big solid squares (class 0) or discs (class 1)
    per image on a plain noisy background; returns the data.yaml."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.full((size, size, 3), rng.integers(0, 80, 3), np.uint8)
            img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
            lines = []
            for k in range(int(rng.integers(1, 3))):
                r = int(rng.integers(size // 8, size // 4))
                cx = int(rng.integers(r, size - r))
                cy = int(rng.integers(r, size // 2 - r // 2)) if k == 0 else \
                    int(rng.integers(size // 2 + r // 2, size - r + 1))
                cy = min(max(cy, r), size - r)
                color = tuple(int(c) for c in rng.integers(150, 256, 3))
                cls = int(rng.integers(0, 2))
                if cls == 0:
                    cv2.rectangle(img, (cx - r, cy - r), (cx + r - 1, cy + r - 1),
                                  color, -1)
                else:
                    cv2.circle(img, (cx, cy), r, color, -1)
                lines.append(f"{cls} {cx / size:.6f} {cy / size:.6f} "
                             f"{2 * r / size:.6f} {2 * r / size:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{i:04d}.png"), img)
            (root / "labels" / split / f"{i:04d}.txt").write_text("\n".join(lines))
    yaml = root / "data.yaml"
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(EASY_NAMES))
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/val\n"
                    f"names:\n{names}\n")
    return yaml


def _maps(perfect: bool, nc: int = 2) -> list[torch.Tensor]:
    """Raw head maps for a 64x64 input whose only object is ``GT``.

    Perfect: anchors inside the box put their DFL mass on the exact side distances
    and a high logit on class 1. Wrong: distances 3 bins too long, class 0.
    """
    x1, y1, x2, y2 = GT[0, 2:].tolist()
    maps = []
    for s in STRIDES:
        h = w = IMG // s
        m = torch.full((4 * REG_MAX + nc, h, w), -10.0)
        for gy in range(h):
            for gx in range(w):
                ax, ay = gx + 0.5, gy + 0.5
                inside = x1 / s < ax < x2 / s and y1 / s < ay < y2 / s
                if not inside:
                    continue
                sides = [ax - x1 / s, ay - y1 / s, x2 / s - ax, y2 / s - ay]
                for k, t in enumerate(sides):
                    t = min(t + (0 if perfect else 3), REG_MAX - 1.01)
                    i, f = int(t), t - int(t)
                    logits = torch.full((REG_MAX,), -30.0)
                    logits[i] = math.log(max(1 - f, 1e-12))
                    logits[i + 1] = math.log(max(f, 1e-12))
                    m[k * REG_MAX:(k + 1) * REG_MAX, gy, gx] = logits
                m[4 * REG_MAX + (1 if perfect else 0), gy, gx] = 10.0
        maps.append(m[None].clone().requires_grad_(True))
    return maps


def test_loss_prefers_perfect_prediction_and_has_gradients():
    model = YoloModel(2)
    criterion = DetectionLoss(model)
    good, good_parts = criterion(_maps(True), GT)
    bad_maps = _maps(False)
    bad, bad_parts = criterion(bad_maps, GT)
    assert good < bad
    assert (good_parts <= bad_parts + 1e-6).all(), (good_parts, bad_parts)
    assert good_parts[0] < 0.05  # CIoU of an exact box is 1
    bad.backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in bad_maps)


def test_loss_backpropagates_through_model():
    model = YoloModel(2).train()
    loss, parts = DetectionLoss(model)(model(torch.rand(2, 3, IMG, IMG)), GT)
    loss.backward()
    assert torch.isfinite(parts).all()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert model.backbone.stem[0].conv.weight.grad.abs().sum() > 0


def test_assigner_picks_anchors_inside_the_box():
    anchors, strides = make_anchors([(8, 8), (4, 4), (2, 2)], STRIDES)
    px = anchors * strides
    n = len(px)
    boxes = torch.cat([px - 8, px + 8], 1)[None]  # every anchor predicts a 16 px box
    scores = torch.full((1, n, 2), 0.5)
    assigner = TaskAlignedAssigner(topk=5)
    tb, ts, fg = assigner(scores, boxes, px, GT[:, 1].long()[None], GT[:, 2:][None],
                          torch.ones(1, 1, dtype=torch.bool))
    assert 0 < fg.sum() <= 5
    x1, y1, x2, y2 = GT[0, 2:]
    inside = ((px[:, 0] > x1) & (px[:, 0] < x2) & (px[:, 1] > y1) & (px[:, 1] < y2))
    assert inside[fg[0]].all()
    assert torch.allclose(tb[0, fg[0]], GT[0, 2:].expand(int(fg.sum()), 4))
    assert (ts[0, fg[0], 1] > 0).all() and (ts[0, :, 0] == 0).all()
    assert (ts[0, ~fg[0]] == 0).all()


def test_grid_loss_prefers_perfect_prediction():
    model = GridYolo(2, grid=4, boxes_per_cell=2)
    criterion = GridLoss(model)
    s, b = 4, 2
    good = torch.zeros(1, s, s, 5 * b + 2)
    x1, y1, x2, y2 = GT[0, 2:].tolist()
    cx, cy, w, h = (x1 + x2) / 2 / IMG, (y1 + y2) / 2 / IMG, (x2 - x1) / IMG, \
        (y2 - y1) / IMG
    col, row = int(cx * s), int(cy * s)
    good[0, row, col, :5] = torch.tensor([cx * s - col, cy * s - row, math.sqrt(w),
                                          math.sqrt(h), 1.0])
    good[0, :, :, 5 * b:] = 0.5
    good[0, row, col, 5 * b:] = torch.tensor([0.0, 1.0])
    bad = good.clone()
    bad[0, row, col, :5] = torch.tensor([0.9, 0.9, 0.2, 0.2, 0.1])
    bad[0, :, :, 4] = 0.9
    bad[0, row, col, 5 * b:] = torch.tensor([1.0, 0.0])
    good_loss, good_parts = criterion(good, GT, (IMG, IMG))
    bad_loss, _ = criterion(bad.requires_grad_(True), GT, (IMG, IMG))
    assert good_parts[0] < 1e-6 and good_parts[1] < 1e-4 and good_parts[3] < 1e-6
    assert good_loss < bad_loss
    bad_loss.backward()


def _meta(layout: str, extra: dict | None = None) -> ModelMeta:
    return ModelMeta(family="yolo", class_names=list(EASY_NAMES), input_size=(IMG, IMG),
                     layout=layout, extra=extra or {})


@pytest.mark.parametrize("head", ["modern", "grid"])
def test_export_parity_and_metadata(tmp_path, head):
    torch.manual_seed(0)
    if head == "grid":
        model, meta = GridYolo(2, grid=4), _meta("grid", {"boxes_per_cell": 2})
    else:
        model, meta = YoloModel(2), _meta("anchor_free")
    model.eval()
    images = np.random.default_rng(0).random((2, 3, IMG, IMG), dtype=np.float32)
    report = export_yolo(model, meta, tmp_path / "m.onnx", simplify=head == "modern",
                         images=images)
    assert report["max_abs_diff"] < 1e-4
    backend = OnnxRuntimeBackend(tmp_path / "m.onnx")
    assert backend.meta == meta
    assert backend.input_shape[0] == "batch"  # dynamic batch
    three = np.concatenate([images, images[:1]])
    assert backend.infer(three)[0].shape[0] == 3
    det = load_detector(tmp_path / "m.onnx")
    assert det.class_names == list(EASY_NAMES) and det.layout == meta.layout


def test_checkpoint_round_trip_and_rejections(tmp_path):
    model = YoloModel(2)
    path = save_checkpoint(tmp_path / "c.pt", "yolo", {"num_classes": 2}, _meta(
        "anchor_free"), model, epoch=3)
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 3 and ckpt["arch"] == "yolo"
    loaded, meta = load_model(path)
    assert meta.class_names == list(EASY_NAMES) and loaded.export
    x = torch.rand(1, 3, IMG, IMG)
    model.eval().export = True
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x))
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other\\.pt"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk\\.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="arch"):
        save_checkpoint(tmp_path / "x.pt", "resnet", {}, _meta("anchor_free"), model)


def test_weights_start_a_grid_model_from_a_modern_models_backbone(tmp_path):
    modern = YoloModel(2)
    with torch.no_grad():
        for p in modern.parameters():
            p.add_(1.0)  # unlike any fresh initialisation
    path = save_checkpoint(tmp_path / "m.pt", "yolo", {"num_classes": 2},
                           _meta("anchor_free"), modern, ema=modern.state_dict())
    grid = GridYolo(3)
    fresh = {k: v.clone() for k, v in grid.state_dict().items()}
    copied = load_matching(grid, path)
    own = grid.state_dict()
    backbone = [k for k in own if k.startswith("backbone.")]
    assert copied == len(backbone) > 0  # the grid's neck and head have other names
    assert all(torch.equal(own[k], modern.state_dict()[k]) for k in backbone)
    assert torch.equal(own["out.weight"], fresh["out.weight"])
    with pytest.raises(ValueError, match="no weights match"):
        load_matching(torch.nn.Linear(2, 2), path)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_ci_training_run_learns_and_resumes(tmp_path, precision):
    """64 easy 128 px images, 6 epochs x 8 steps: loss must fall and mAP@.5 on the
    held-out 16 images must reach 0.5 (0.94 seen when written), then resume; in
    full precision and under bf16 autocast."""
    from training.precision import native_bf16

    if precision == "bf16" and not native_bf16("cpu"):
        pytest.skip("this CPU has no native bf16 (AVX512-BF16/AMX): emulated bf16 "
                    "would take minutes")
    data = write_easy_dataset(tmp_path / "easy")
    cfg = TrainConfig(data=str(data), imgsz=128, epochs=6, batch=8, lr=3e-3,
                      warmup_steps=10, augment=False, val_every=100,
                      out=str(tmp_path / "run"), precision=precision)
    report = train(cfg)
    assert {r["precision"] for r in report["history"]} == {precision}
    first, last = (sum(r["loss"].values()) for r in
                   (report["history"][0], report["history"][-1]))
    assert last < 0.6 * first
    assert report["best_map50"] >= 0.5, report["history"][-1]
    ckpt = load_checkpoint(report["last"])
    assert ckpt["epoch"] == 5 and "optimizer" in ckpt and "ema" in ckpt
    cfg.epochs = 7
    resumed = train(cfg, resume=report["last"])
    assert [r["epoch"] for r in resumed["history"]] == list(range(7))


class Interrupted(Exception):
    """Stands in for a run killed between two epochs."""


def step_losses(run, stop_after_epoch: int | None = None) -> list[tuple[int, float]]:
    """(step, loss) of every optimizer step of ``run(on_step=..., on_epoch=...)``;
    with ``stop_after_epoch`` the run is cut once that epoch's checkpoint is
    written."""
    losses: list[tuple[int, float]] = []

    def stop(record: dict) -> None:
        if record["epoch"] == stop_after_epoch:
            raise Interrupted

    try:
        run(on_step=lambda step, loss: losses.append((step, loss)), on_epoch=stop)
    except Interrupted:
        pass
    return losses


def assert_same_steps(resumed: list[tuple[int, float]],
                      straight: list[tuple[int, float]]) -> None:
    assert [s for s, _ in resumed] == [s for s, _ in straight]
    np.testing.assert_allclose([v for _, v in resumed], [v for _, v in straight],
                               rtol=0, atol=1e-4)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("head", ["modern", "grid"])
def test_resuming_mid_run_repeats_the_uninterrupted_run(tmp_path, head):
    """Killed after epoch 2 of 4 and resumed from last.pt, a run takes the same
    steps with the same losses (augmentation, shuffle, optimizer state, schedule)
    and ends with the same EMA weights."""
    data = write_easy_dataset(tmp_path / "easy", n_train=8, n_val=2, size=64)

    def config(out: str) -> TrainConfig:
        return TrainConfig(data=str(data), head=head, imgsz=64, epochs=4, batch=4,
                           warmup_steps=3, grid=2, val_every=100, precision="fp32",
                           out=str(tmp_path / out))

    straight = step_losses(lambda **hooks: train(config("straight"), **hooks))
    assert len(straight) == 8
    cut = step_losses(lambda **hooks: train(config("cut"), **hooks),
                      stop_after_epoch=1)
    assert len(cut) == 4
    last = tmp_path / "cut" / "last.pt"
    rest = step_losses(lambda **hooks: train(config("cut"), resume=last, **hooks))
    assert_same_steps(cut + rest, straight)
    history = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    ema = load_checkpoint(last)["ema"]  # the EMA does not feed back into the losses
    straight_ema = load_checkpoint(tmp_path / "straight" / "last.pt")["ema"]
    for name, value in straight_ema.items():
        torch.testing.assert_close(ema[name], value, rtol=0, atol=1e-6)
