"""YOLO training (both heads): AdamW, warm-up + cosine, EMA, COCO-mAP validation.

The loop itself (budget, schedule, bf16, checkpoints, history, resume) is
``training.loop``; here are the YOLO parts: letterboxed data and augmentation,
the model and its loss, the EMA of the weights, and validation. Validation runs
the EMA model through the same ``engines.yolo.YoloDetector`` used at inference
(built by ``engines.build``), so the mAP is the deployed one. Checkpoints hold
the raw and EMA weights.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from core.image import letterbox, parse_imgsz, to_tensor
from core.meta import ModelMeta
from engines.base import Backend
from engines.build import build_detector
from engines.nets.yolo import SCALES, YoloModel
from training.checkpoint import load_checkpoint
from training.loop import EpochCallback, LoopConfig, StepCallback, Trainer
from training.precision import check_precision
from training.schedule import WARMUP_FRACTION
from training.yolo.grid import GridLoss, GridYolo
from training.yolo.loss import DetectionLoss

log = logging.getLogger(__name__)

HEADS = ("modern", "grid")
MIN_BOX_PX = 2.0  # boxes thinner than this after resizing are dropped from targets


@dataclass
class TrainConfig:
    """Everything a run depends on (stored in checkpoints, so resume repeats it).

    ``imgsz`` is (height, width) of the network input, multiples of 32.
    ``lr`` is AdamW's peak rate; it warms up linearly over ``warmup_steps`` (over
    ``warmup_fraction`` of the budget with ``minutes``) and decays by a half
    cosine to ``lr * final_lr_ratio``. ``minutes > 0`` trains for that much wall
    clock (validation included) instead of ``epochs``. ``weights``: a checkpoint
    (of either head) to start from wherever names and shapes match, e.g. the
    backbone, as YOLO v1 started from pretrained conv layers. ``precision``:
    ``auto`` (bf16 autocast where the device computes bf16 natively, else fp32),
    ``fp32`` or ``bf16`` (``training.precision``).
    """

    data: str
    head: str = "modern"
    scale: str = "nano"
    imgsz: tuple[int, int] = (320, 320)
    epochs: int = 30
    minutes: float = 0.0
    warmup_fraction: float = WARMUP_FRACTION
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 200
    final_lr_ratio: float = 0.05
    ema_decay: float = 0.999
    ema_tau: float = 300.0
    augment: bool = True
    val_every: int = 1
    max_val_images: int = 0  # 0: the whole val split
    workers: int = 0
    seed: int = 0
    device: str = "cpu"
    out: str = "runs/yolo"
    grid: int = 7
    boxes_per_cell: int = 2
    weights: str = ""
    precision: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head {self.head!r} is not one of {HEADS}")
        if self.scale not in SCALES:
            raise ValueError(f"scale {self.scale!r} is not one of {sorted(SCALES)}")
        self.imgsz = parse_imgsz(self.imgsz, multiple=32)
        for name in ("epochs", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.minutes < 0:
            raise ValueError(f"minutes must be >= 0, got {self.minutes}")
        check_precision(self.precision)


class LetterboxedSet(Dataset):
    """Samples of a ``DetectionDataset`` (optionally augmented), letterboxed.

    Items: ``image`` [3, H, W] float32 RGB in [0, 1] and ``targets`` [K, 5]
    (class_id, x1, y1, x2, y2) in input pixels.
    """

    def __init__(self, dataset: Any, imgsz: tuple[int, int], augmenter: Any = None,
                 seed: int = 0) -> None:
        self.dataset, self.imgsz, self.augmenter = dataset, imgsz, augmenter
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.augmenter is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            image, boxes, class_ids = self.augmenter(rng, self.dataset, i)
        else:
            s = self.dataset[i]
            image, boxes, class_ids = s.image, s.boxes, s.class_ids
        boxed, transform = letterbox(image, self.imgsz)
        boxes = transform.to_network(np.asarray(boxes, np.float32).reshape(-1, 4))
        wh = boxes[:, 2:] - boxes[:, :2]
        keep = (wh > MIN_BOX_PX).all(1)
        targets = np.concatenate([np.asarray(class_ids, np.float32)[keep, None],
                                  boxes[keep]], 1)
        return torch.from_numpy(to_tensor(boxed)), torch.from_numpy(targets)


def collate(items: list[tuple[torch.Tensor, torch.Tensor]]
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images; targets become [K, 6] rows (image_index, class, x1, y1, x2, y2)."""
    images = torch.stack([im for im, _ in items])
    rows = [torch.cat([torch.full((len(t), 1), float(i)), t], 1)
            for i, (_, t) in enumerate(items)]
    return images, torch.cat(rows) if rows else torch.zeros(0, 6)


class ModelEMA:
    """Exponential moving average of weights; decay ramps up as d(1 - e^(-n/tau))."""

    def __init__(self, model: nn.Module, decay: float, tau: float) -> None:
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend ``model``'s weights in with one fused ``lerp`` over all float
        tensors (it runs after every step: a Python loop per tensor would cost
        more than the step of a small model)."""
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        msd = model.state_dict()
        floats, targets = [], []
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                floats.append(v)
                targets.append(msd[k].detach())
            else:
                v.copy_(msd[k])
        torch._foreach_lerp_(floats, targets, 1.0 - d)


class ModuleBackend(Backend):
    """An in-memory torch module behind the ``Backend`` interface (for validation)."""

    def __init__(self, model: nn.Module, meta: ModelMeta, device: str) -> None:
        self.model = model
        super().__init__(Path(f"<{type(model).__name__}>"), device)
        self.meta = meta
        self.input_shape = ("batch", 3, *meta.input_size)

    def load(self) -> None:
        pass

    @torch.no_grad()
    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        out = self.model(torch.from_numpy(batch).to(self.device))
        return [out.float().cpu().numpy()]


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    if cfg.head == "grid":
        return GridYolo(num_classes, cfg.scale, cfg.grid, cfg.boxes_per_cell)
    return YoloModel(num_classes, cfg.scale)


def load_matching(model: nn.Module, path: str | Path) -> int:
    """Copy checkpoint ``path``'s EMA weights (else its raw ones) into ``model``
    wherever a tensor's name and shape match; returns how many were copied."""
    ckpt = load_checkpoint(path)
    source = ckpt.get("ema") or ckpt["model"]
    own = model.state_dict()
    matched = {k: v for k, v in source.items()
               if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not matched:
        raise ValueError(f"{path}: no weights match this model (another scale or "
                         "architecture?)")
    model.load_state_dict(matched, strict=False)
    log.info("started from %s: %d of %d tensors (the rest start fresh)", path,
             len(matched), len(own))
    return len(matched)


def model_config(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    """What the checkpoint builder needs (``training.checkpoint.ARCHS``)."""
    config: dict[str, Any] = {"num_classes": num_classes, "scale": cfg.scale}
    if cfg.head == "grid":
        config.update(grid=cfg.grid, boxes_per_cell=cfg.boxes_per_cell)
    return config


def model_meta(cfg: TrainConfig, class_names: list[str]) -> ModelMeta:
    extra: dict[str, Any] = {"scale": cfg.scale}
    if cfg.head == "grid":
        extra.update(grid=cfg.grid, boxes_per_cell=cfg.boxes_per_cell)
    return ModelMeta(family="yolo", class_names=list(class_names),
                     input_size=tuple(cfg.imgsz),
                     layout="grid" if cfg.head == "grid" else "anchor_free",
                     extra=extra)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only, not on norms and biases."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def evaluate_model(model: nn.Module, meta: ModelMeta, dataset: Any, device: str,
                   max_images: int = 0, batch: int = 16) -> dict[str, Any]:
    """COCO mAP of ``model`` (switched to export form) on ``dataset``."""
    from training.evaluate import coco_map

    was_export = model.export
    model.eval()
    model.export = True
    try:
        detector = build_detector(ModuleBackend(model, meta, device),
                                  conf=0.001, iou=0.6)
        n = len(dataset) if not max_images else min(max_images, len(dataset))
        subset = _Subset(dataset, n)
        preds = []
        for start in range(0, n, batch):
            preds += detector.detect([subset[i].image for i in
                                      range(start, min(n, start + batch))])
        return coco_map(subset, preds)
    finally:
        model.export = was_export


class _Subset:
    """The first ``n`` samples of a dataset, with its class names."""

    def __init__(self, dataset: Any, n: int) -> None:
        self.dataset, self.n = dataset, n
        self.class_names = dataset.class_names

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.dataset[i]

    def __iter__(self):
        return (self[i] for i in range(self.n))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dataset, name)


# YOLO v1's augmentation (Redmon et al. 2016, sec. 2.2): random scaling and
# translation of up to 20 %, exposure and saturation up to 1.5x; no mosaic, whose
# quarter-size objects crowd several centres into one cell of a 7x7 grid.
GRID_AUGMENT = {"mosaic": 0.0, "scale": (0.8, 1.2), "translate": 0.2,
                "hsv_s": 0.5, "hsv_v": 0.5}


def make_augmenter(cfg: TrainConfig) -> Any:
    """The augmenter: ``(rng, dataset, i) -> (image, boxes, ids)``; the grid head
    defaults to the paper's (``GRID_AUGMENT``), ``extra["augment"]`` overrides."""
    if not cfg.augment:
        return None
    from training.data.augment import AugmentConfig, Augmenter

    defaults = GRID_AUGMENT if cfg.head == "grid" else {}
    aug_cfg = AugmentConfig(**{**defaults, **cfg.extra.get("augment", {})})
    return Augmenter(aug_cfg, size=tuple(cfg.imgsz))




class YoloTrainer(Trainer):
    """The YOLO family's hooks into ``training.loop.Trainer``."""

    def __init__(self, cfg: TrainConfig, *, on_step: StepCallback | None = None,
                 on_epoch: EpochCallback | None = None) -> None:
        loop = LoopConfig(out=Path(cfg.out), epochs=cfg.epochs, lr=cfg.lr,
                          warmup_steps=cfg.warmup_steps, lr_start=0.01,
                          lr_floor=cfg.final_lr_ratio, minutes=cfg.minutes,
                          warmup_fraction=cfg.warmup_fraction, seed=cfg.seed,
                          device=cfg.device, precision=cfg.precision,
                          val_every=cfg.val_every)
        super().__init__(loop, on_step=on_step, on_epoch=on_epoch)
        self.cfg = cfg
        self.loss_names = (("coord", "obj", "noobj", "cls") if cfg.head == "grid"
                           else ("box", "cls", "dfl"))
        self.last_metrics: dict[str, Any] = {}

    def setup(self, ckpt: dict[str, Any] | None) -> None:
        from training.data.datasets import load_dataset

        cfg = self.cfg
        train_set = load_dataset(cfg.data, "train")
        self.val_set = load_dataset(cfg.data, "val")
        names = train_set.class_names
        self.model = self.place(build_model(cfg, len(names)))
        if cfg.weights and ckpt is None:
            load_matching(self.model, cfg.weights)
        self.arch = "yolo_grid" if cfg.head == "grid" else "yolo"
        self.model_config = model_config(cfg, len(names))
        self.meta = model_meta(cfg, names)
        self.criterion: Callable[..., tuple[torch.Tensor, torch.Tensor]] = (
            GridLoss(self.model) if cfg.head == "grid" else DetectionLoss(self.model))
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay),
                                           lr=cfg.lr, betas=(0.9, 0.999))
        self.ema = ModelEMA(self.model, cfg.ema_decay, cfg.ema_tau)
        self.epoch_data = LetterboxedSet(train_set, cfg.imgsz, make_augmenter(cfg),
                                         cfg.seed)
        self.shuffle = torch.Generator().manual_seed(cfg.seed)
        self.loader = DataLoader(self.epoch_data, batch_size=cfg.batch, shuffle=True,
                                 drop_last=True, num_workers=cfg.workers,
                                 collate_fn=collate, generator=self.shuffle,
                                 persistent_workers=cfg.workers > 0)
        if len(self.loader) == 0:
            raise ValueError(f"{cfg.data}: {len(train_set)} training images is fewer "
                             f"than one batch of {cfg.batch}")

    def prepare_batch(self, batch: tuple[torch.Tensor, torch.Tensor]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = batch
        images = images.to(self.cfg.device, non_blocking=True).contiguous(
            memory_format=torch.channels_last)
        return images, targets

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> Any:
        return self.model(batch[0])

    def loss(self, outputs: Any, batch: tuple[torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.head == "grid":
            return self.criterion(outputs, batch[1], self.cfg.imgsz)
        return self.criterion(outputs, batch[1])

    def optimizer_stepped(self) -> None:
        self.ema.update(self.model)

    def evaluate(self) -> dict[str, float]:
        self.last_metrics = evaluate_model(self.ema.ema, self.meta, self.val_set,
                                           self.cfg.device, self.cfg.max_val_images)
        return {"map": self.last_metrics["map"], "map50": self.last_metrics["map50"]}

    def train_config(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self.cfg)))

    def state(self) -> dict[str, Any]:
        return {"ema": self.ema.ema.state_dict(), "ema_updates": self.ema.updates}

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.ema.ema.load_state_dict(ckpt["ema"])
        self.ema.updates = int(ckpt.get("ema_updates", 0))


def train(cfg: TrainConfig, resume: str | Path | None = None, *,
          on_step: StepCallback | None = None,
          on_epoch: EpochCallback | None = None) -> dict[str, Any]:
    """Train (``resume``: a ``last.pt`` to continue); returns ``Trainer.fit``'s
    report plus ``last_metrics``, the last validation's full COCO metrics."""
    trainer = YoloTrainer(cfg, on_step=on_step, on_epoch=on_epoch)
    report = trainer.fit(resume)
    report["last_metrics"] = trainer.last_metrics
    return report
