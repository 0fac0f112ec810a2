"""Faster R-CNN training: the four torchvision losses trained jointly.

Images are stretched to the fixed network input (what ``engines.faster_rcnn``
and the ONNX export see), flipped, colour-jittered and, with ``affine > 0``,
zoomed and shifted. Labels cross the torchvision boundary here: dataset class
ids 0..C-1 become labels 1..C (0 is background) in ``to_targets``, and
predictions go back to 0-based in ``predict``. The loop (budget, schedule,
bf16, checkpoints, history, resume) is ``training.loop``; ``FasterRCNNTrainer``
supplies the model, its data and its validation.
"""

from __future__ import annotations

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
from training.loop import EpochCallback, LoopConfig, StepCallback, Trainer
from training.precision import check_precision
from training.schedule import WARMUP_FRACTION

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


class FasterRCNNTrainer(Trainer):
    """The Faster R-CNN family's hooks into ``training.loop.Trainer``: the four
    torchvision losses, summed, are the loss."""

    loss_names = LOSS_NAMES

    def __init__(self, cfg: TrainConfig, *, on_step: StepCallback | None = None,
                 on_epoch: EpochCallback | None = None) -> None:
        loop = LoopConfig(out=Path(cfg.out), epochs=cfg.epochs, lr=cfg.lr,
                          warmup_steps=cfg.warmup_iters, lr_start=0.001,
                          lr_floor=0.05, minutes=cfg.minutes,
                          warmup_fraction=cfg.warmup_fraction, seed=cfg.seed,
                          device=cfg.device, precision=cfg.precision)
        super().__init__(loop, on_step=on_step, on_epoch=on_epoch)
        self.cfg = cfg

    def setup(self, ckpt: dict[str, Any] | None) -> None:
        from training.data.datasets import load_dataset

        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        train_ds = load_dataset(cfg.data, "train")
        self.val_set = load_dataset(cfg.data, "val")
        if ckpt is not None:  # options given now override the checkpoint's
            config = {**ckpt["config"], **cfg.model}
        else:
            config = self._new_config(train_ds)
        self.size = (int(config["input_size"][0]), int(config["input_size"][1]))
        self.model = self.place(build_faster_rcnn(
            {**config, "weights": cfg.weights and str(cfg.weights),
             "backbone_weights": cfg.backbone_weights and str(cfg.backbone_weights)}))
        self.arch = "faster_rcnn"
        self.model_config = {k: v for k, v in config.items()
                             if k not in ("weights", "backbone_weights")}
        self.meta = ModelMeta("faster_rcnn", list(train_ds.class_names), self.size,
                              resize="stretch", layout="torchvision",
                              dynamic_batch=False, extra={"label_offset": 1})
        self.epoch_data = TrainSet(train_ds, self.size, cfg.hflip, cfg.hsv, cfg.seed,
                                   cfg.affine)
        self.shuffle = torch.Generator()
        per_epoch = min(cfg.max_images or len(self.epoch_data), len(self.epoch_data))
        # ``max_images`` draws a fresh random subset every epoch (short epochs,
        # frequent validation and checkpoints, yet the whole dataset is seen)
        sampler = torch.utils.data.RandomSampler(self.epoch_data, num_samples=per_epoch,
                                                 generator=self.shuffle)
        self.loader = torch.utils.data.DataLoader(
            self.epoch_data, batch_size=cfg.batch, sampler=sampler, collate_fn=collate,
            drop_last=per_epoch > cfg.batch)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=cfg.lr,
                                               weight_decay=cfg.weight_decay)

    def _new_config(self, train_ds: Any) -> dict[str, Any]:
        """``build_faster_rcnn``'s config for a fresh run (k-means anchors if asked)."""
        cfg = self.cfg
        pretrained = bool(cfg.weights or cfg.backbone_weights)
        input_size = input_size_for(cfg.imgsz, train_ds[0].image.shape[:2])
        options = dict(cfg.model)
        if cfg.anchors == "kmeans" and "anchor_sizes" not in options:
            from engines.nets.faster_rcnn import STRIDES
            from training.faster_rcnn.anchors import box_sizes, fit_anchors

            sizes, ratios = fit_anchors(box_sizes(train_ds, input_size),
                                        STRIDES[cfg.backbone])
            options.update(anchor_sizes=sizes, aspect_ratios=ratios)
            log.info("k-means anchors: sizes %s, aspect ratios %s", sizes, ratios)
        return make_config(
            len(train_ds.class_names), backbone=cfg.backbone,
            input_size=list(input_size), norm="frozen" if pretrained else "batch",
            **options)

    def prepare_batch(self, batch: tuple[list, list]) -> tuple[list, list]:
        images, targets = batch
        device = self.cfg.device
        return ([im.to(device) for im in images],
                [{k: v.to(device) for k, v in t.items()} for t in targets])

    def forward(self, batch: tuple[list, list]) -> dict[str, torch.Tensor]:
        return self.model(*batch)

    def loss(self, outputs: dict[str, torch.Tensor], batch: tuple[list, list]
             ) -> tuple[torch.Tensor, torch.Tensor]:
        parts = torch.stack([outputs[k] for k in LOSS_NAMES]).detach()
        return sum(outputs.values()), parts

    def evaluate(self) -> dict[str, float]:
        if not len(self.val_set):
            return {}
        return validate(self.model, self.val_set, self.size, self.cfg.device)

    def score(self, record: dict[str, Any]) -> float | None:
        """Val mAP; without val images, the lowest classifier loss wins."""
        return record.get("map", -record["loss"]["loss_classifier"])

    def train_config(self) -> dict[str, Any]:
        return _plain(self.cfg)


def train(cfg: TrainConfig, *, on_step: StepCallback | None = None,
          on_epoch: EpochCallback | None = None) -> dict[str, Any]:
    """Train (resuming ``cfg.resume`` if set); writes ``best.pt``/``last.pt``/
    ``history.json`` under ``cfg.out``. Returns ``Trainer.fit``'s report: paths
    ``best``/``last``, ``best_map``, and ``history`` (per epoch: the mean of each
    loss under ``loss``, and the val metrics)."""
    return FasterRCNNTrainer(cfg, on_step=on_step, on_epoch=on_epoch).fit(cfg.resume)


def _plain(cfg: TrainConfig) -> dict[str, Any]:
    """The config as builtins (checkpoints are loaded with ``weights_only``)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
