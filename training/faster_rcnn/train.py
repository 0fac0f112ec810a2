"""Faster R-CNN training: the four torchvision losses trained jointly.

Images are stretched to the fixed network input (what ``engines.faster_rcnn``
and the ONNX export see), flipped, colour-jittered and, with ``affine > 0``,
zoomed and shifted. Labels cross the torchvision boundary here: dataset class
ids 0..C-1 become labels 1..C (0 is background) in ``to_targets``, and
predictions go back to 0-based in ``predict``. A run lasts ``epochs`` or, with
``minutes``, a wall-clock budget over which warm-up and cosine decay are laid
(``training.schedule``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from core.image import parse_imgsz, stretch
from core.image import to_tensor as image_tensor
from core.meta import ModelMeta
from core.types import Detections
from engines.nets.faster_rcnn import build_faster_rcnn, make_config
from training.precision import (
    autocast,
    channels_last,
    check_precision,
    resolve_precision,
    to_float,
)
from training.schedule import WARMUP_FRACTION, Budget, warmup_cosine

log = logging.getLogger(__name__)

LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")
MIN_BOX_SIDE = 1.0  # px at the network input; torchvision rejects degenerate boxes


DEFAULT_LONG_SIDE = 320  # network input when --imgsz is not given


@dataclass
class TrainConfig:
    """Everything one training run needs (built once from the CLI).

    ``imgsz`` is the network input as everywhere else: ``N`` (N×N) or (H, W),
    multiples of 32; ``None`` picks a long side of 320 with the short side from
    the training images' aspect ratio.
    ``max_images``: images per epoch, a fresh random draw each epoch. ``model``
    holds extra ``build_faster_rcnn`` options (e.g. ``rpn_post_nms_top_n_test``).
    ``minutes > 0`` trains for that much wall clock (validation included) instead
    of ``epochs``, warming up over ``warmup_fraction`` of it. ``hflip``, ``hsv``
    and ``affine`` are the probabilities of each augmentation (the affine zooms
    by 0.5-1.5 and shifts by up to 10 %, as the YOLO trainer's). ``precision``:
    ``auto`` (bf16 autocast where the device computes bf16 natively, else fp32),
    ``fp32`` or ``bf16`` (``training.precision``).
    """

    data: Path
    backbone: str | None = None  # csp from scratch; mobilenet_v3 with weights
    imgsz: Any = None  # N, "H,W" or (H, W); a (H, W) tuple after __post_init__
    epochs: int = 12
    minutes: float = 0.0
    warmup_fraction: float = WARMUP_FRACTION
    anchors: str = "default"
    batch: int = 4
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    out: Path = Path("runs/frcnn")
    resume: Path | None = None
    seed: int = 0
    device: str = "cpu"
    weights: Path | None = None
    backbone_weights: Path | None = None
    hflip: float = 0.5
    hsv: float = 0.5
    affine: float = 0.0
    max_images: int | None = None
    threads: int | None = None
    precision: str = "auto"
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError("optimizer must be 'sgd' or 'adamw', got "
                             f"{self.optimizer!r}")
        if self.imgsz is not None:
            self.imgsz = parse_imgsz(self.imgsz, multiple=32)
        for name in ("epochs", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.minutes < 0:
            raise ValueError(f"minutes must be >= 0, got {self.minutes}")
        check_precision(self.precision)
        if self.backbone is None:
            pretrained = self.weights or self.backbone_weights or (
                self.model.get("layout") == "torchvision")
            self.backbone = "mobilenet_v3" if pretrained else "csp"
        if self.anchors not in ("default", "kmeans"):
            raise ValueError(f"anchors must be 'default' or 'kmeans', got "
                             f"{self.anchors!r}")


def input_size_for(imgsz: tuple[int, int] | None,
                   image_hw: tuple[int, int]) -> tuple[int, int]:
    """(H, W) network input: ``imgsz`` when given; else a long side of
    ``DEFAULT_LONG_SIDE`` and the short side by the image's aspect, /32."""
    if imgsz is not None:
        return imgsz
    h, w = image_hw
    long = DEFAULT_LONG_SIDE
    short = max(32, round(long * min(h, w) / max(h, w) / 32) * 32)
    return (short, long) if w >= h else (long, short)


def to_targets(boxes: np.ndarray, class_ids: np.ndarray) -> dict[str, torch.Tensor]:
    """Dataset labels -> torchvision target: labels shifted to 1..C (0 = background),
    boxes narrower than ``MIN_BOX_SIDE`` dropped."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_SIDE) & (
        (boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_SIDE)
    return {"boxes": torch.from_numpy(boxes[keep]),
            "labels": torch.from_numpy(np.asarray(class_ids, np.int64)[keep] + 1)}


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 BGR -> [3, H, W] float RGB in [0, 1]."""
    return torch.from_numpy(image_tensor(image))


class TrainSet(torch.utils.data.Dataset):
    """Dataset samples stretched to ``size`` with zoom / flip / HSV jitter; item
    ``i`` of epoch ``e`` is augmented from the seed ``(seed, e, i)``
    (deterministic)."""

    def __init__(self, dataset: Any, size: tuple[int, int], hflip: float = 0.5,
                 hsv: float = 0.5, seed: int = 0, affine: float = 0.0) -> None:
        self.dataset, self.size = dataset, size
        self.hflip, self.hsv, self.affine, self.seed = hflip, hsv, affine, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from training.data.augment import hflip, hsv_jitter, random_affine

        rng = np.random.default_rng((self.seed, self.epoch, i))
        sample = self.dataset[i]
        image, tf = stretch(sample.image, self.size)
        boxes = tf.to_network(sample.boxes.reshape(-1, 4))
        class_ids = sample.class_ids
        if self.affine and rng.random() < self.affine:  # off: the old random stream
            image, boxes, class_ids = random_affine(rng, image, boxes, class_ids)
        if rng.random() < self.hflip:
            image, boxes = hflip(image, boxes)
        if rng.random() < self.hsv:
            image = hsv_jitter(rng, image)
        return to_tensor(image), to_targets(boxes, class_ids)


def collate(batch: list) -> tuple[list, list]:
    return [b[0] for b in batch], [b[1] for b in batch]


@torch.no_grad()
def predict(model: nn.Module, images: list[np.ndarray], size: tuple[int, int],
            device: str = "cpu", batch: int = 8) -> list[Detections]:
    """Eager-mode detections in original-frame pixels, class ids 0-based."""
    model.eval()
    out: list[Detections] = []
    for start in range(0, len(images), batch):
        chunk = [stretch(im, size) for im in images[start:start + batch]]
        results = model([to_tensor(im).to(device) for im, _ in chunk])
        for (_, tf), res in zip(chunk, results, strict=True):
            out.append(Detections(tf.to_original(res["boxes"].cpu().numpy()),
                                  res["scores"].cpu().numpy(),
                                  res["labels"].cpu().numpy() - 1))
    return out


def validate(model: nn.Module, dataset: Any, size: tuple[int, int],
             device: str = "cpu") -> dict[str, float]:
    """COCO mAP@[.5:.95] and mAP@.5 of the eager model on ``dataset``."""
    from training.evaluate import coco_map

    start = time.perf_counter()
    preds: list[Detections] = []
    for i in tqdm(range(len(dataset)), desc="val", leave=False):
        preds += predict(model, [dataset[i].image], size, device)
    metrics = coco_map(dataset, preds)
    ms = (time.perf_counter() - start) * 1000 / max(1, len(dataset))
    return {"map": float(metrics["map"]), "map50": float(metrics["map50"]),
            "ms_per_image": round(ms, 1)}


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train; writes ``best.pt``/``last.pt``/``history.json`` under ``cfg.out``.

    Returns ``{"best": path, "last": path, "best_map": float, "history": [...]}``
    where each history row holds the epoch's mean of each loss and val metrics.
    """
    from training.checkpoint import load_checkpoint, save_checkpoint
    from training.data.datasets import load_dataset

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_ds = load_dataset(cfg.data, "train")
    val_ds = load_dataset(cfg.data, "val")
    ckpt = load_checkpoint(cfg.resume) if cfg.resume else None
    if ckpt is not None:  # options given now override the checkpoint's
        config = {**ckpt["config"], **cfg.model}
    else:
        first = train_ds[0].image.shape[:2]
        pretrained = bool(cfg.weights or cfg.backbone_weights)
        input_size = input_size_for(cfg.imgsz, first)
        options = dict(cfg.model)
        if cfg.anchors == "kmeans" and "anchor_sizes" not in options:
            from engines.nets.faster_rcnn import STRIDES
            from training.faster_rcnn.anchors import box_sizes, fit_anchors

            sizes, ratios = fit_anchors(box_sizes(train_ds, input_size),
                                        STRIDES[cfg.backbone])
            options.update(anchor_sizes=sizes, aspect_ratios=ratios)
            log.info("k-means anchors: sizes %s, aspect ratios %s", sizes, ratios)
        config = make_config(
            len(train_ds.class_names), backbone=cfg.backbone,
            input_size=list(input_size), norm="frozen" if pretrained else "batch",
            **options)
    size = (int(config["input_size"][0]), int(config["input_size"][1]))
    precision = resolve_precision(cfg.precision, cfg.device)
    model = channels_last(build_faster_rcnn(
        {**config, "weights": cfg.weights and str(cfg.weights),
         "backbone_weights": cfg.backbone_weights and str(cfg.backbone_weights)}
    ).to(cfg.device))
    meta = ModelMeta("faster_rcnn", list(train_ds.class_names), size, resize="stretch",
                     layout="torchvision", dynamic_batch=False,
                     extra={"label_offset": 1})
    data = TrainSet(train_ds, size, cfg.hflip, cfg.hsv, cfg.seed, cfg.affine)
    shuffle = torch.Generator()
    per_epoch = min(cfg.max_images or len(data), len(data))
    # ``max_images`` draws a fresh random subset every epoch (short epochs, frequent
    # validation and checkpoints, yet the whole dataset is seen)
    sampler = torch.utils.data.RandomSampler(data, num_samples=per_epoch,
                                             generator=shuffle)
    loader = torch.utils.data.DataLoader(
        data, batch_size=cfg.batch, sampler=sampler, collate_fn=collate,
        drop_last=per_epoch > cfg.batch)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, best_map, history, already = 0, -1.0, [], 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, best_map = ckpt["epoch"] + 1, ckpt.get("best_map", -1.0)
        history = list(ckpt.get("history", []))
        already = float(history[-1].get("seconds", 0.0)) if history else 0.0
        log.info("resumed %s at epoch %d", cfg.resume, start_epoch)
    budget = Budget(cfg.epochs, len(loader), cfg.minutes * 60, already)
    warmup = budget.warmup(cfg.warmup_iters, cfg.warmup_fraction)
    config = {k: v for k, v in config.items()
              if k not in ("weights", "backbone_weights")}
    cfg.out.mkdir(parents=True, exist_ok=True)
    best_path, last_path = cfg.out / "best.pt", cfg.out / "last.pt"
    span = f"{cfg.minutes:g} min" if budget.timed else str(cfg.epochs)
    step, epoch = start_epoch * len(loader), start_epoch
    while not budget.spent(step):
        model.train()
        # every epoch reseeds shuffling, augmentation and the RPN/RoI samplers,
        # so a resumed run repeats the epochs an uninterrupted one would see
        data.epoch = epoch
        shuffle.manual_seed(cfg.seed * 1000 + epoch)
        torch.manual_seed(cfg.seed * 1000 + epoch)
        sums = dict.fromkeys(LOSS_NAMES, 0.0)
        steps = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{span}")
        for images, targets in bar:
            if budget.spent(step):
                break
            for group in opt.param_groups:
                group["lr"] = cfg.lr * warmup_cosine(budget.progress(step), warmup,
                                                     start=0.001)
            images = [im.to(cfg.device) for im in images]
            targets = [{k: v.to(cfg.device) for k, v in t.items()} for t in targets]
            with autocast(cfg.device, precision):
                losses = to_float(model(images, targets))
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch "
                                         f"{epoch + 1}; lower --lr (now {cfg.lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            steps += 1
            step += 1
            for k in LOSS_NAMES:
                sums[k] += losses[k].item()
            bar.set_postfix({k.removeprefix("loss_")[:8]: f"{sums[k] / steps:.3f}"
                             for k in LOSS_NAMES})
        if steps == 0:  # the budget ran out before this epoch's first step
            break
        row: dict[str, Any] = {"epoch": epoch + 1, "steps": steps,
                               "lr": opt.param_groups[0]["lr"], "precision": precision}
        row.update({k: round(sums[k] / steps, 5) for k in LOSS_NAMES})
        if len(val_ds):
            row.update(validate(model, val_ds, size, cfg.device))
        row["seconds"] = round(budget.elapsed(), 1)
        history.append(row)
        log.info("epoch %d/%s: %s", epoch + 1, span, row)
        score = row.get("map", -row["loss_classifier"])
        state = {"optimizer": opt.state_dict(), "history": history,
                 "train_config": _plain(cfg)}
        if score > best_map:
            best_map = score
            save_checkpoint(best_path, "faster_rcnn", config, meta, model, epoch=epoch,
                            best_map=best_map, **state)
        save_checkpoint(last_path, "faster_rcnn", config, meta, model, epoch=epoch,
                        best_map=best_map, **state)
        (cfg.out / "history.json").write_text(json.dumps(history, indent=1))
        epoch += 1
    return {"best": best_path, "last": last_path, "best_map": best_map,
            "history": history}


def _plain(cfg: TrainConfig) -> dict[str, Any]:
    """The config as builtins (checkpoints are loaded with ``weights_only``)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
