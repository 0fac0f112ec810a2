"""Training of the lineage networks on generated data, each ending in an ONNX
file with ``ModelMeta`` (family ``lineage_*``; ``extra.train_seconds``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou_loss
from tqdm import tqdm

from core.boxes import iou_matrix
from core.image import stretch, to_tensor
from core.meta import ModelMeta
from engines.lineage.common import encode_deltas
from engines.lineage.proposals import DEFAULT_MAX_PROPOSALS, DEFAULT_MAX_SIDE
from engines.lineage.rcnn import warp_crops
from training.data.augment import hflip
from training.export import embed_metadata, max_abs_diff
from training.lineage.data import (
    overfeat_windows,
    proposals_for,
    sample_rois,
    single_object_scene,
)
from training.lineage.models import (
    FastRCNNHead,
    FastRCNNTrunk,
    LocNet,
    OverFeatNet,
    PooledHead,
    RCNNNet,
    truncated_svd,
)

log = logging.getLogger(__name__)

LOC_INPUT = (96, 168)
LOC_FRAME = (360, 640)  # training frames are rendered at this size, then resized
FAST_RCNN_INPUT = (224, 384)
FAST_RCNN_SVD_RANK = 64  # fc: 1600 x 256 -> 1600 x 64 + 64 x 256 (3.5x fewer MACs)
OVERFEAT_SCALES = (1.25, 0.83, 0.55, 0.37, 0.25, 0.17)


def _export(model: nn.Module, args: tuple, path: Path, inputs: list[str],
            outputs: list[str], dynamic: dict, meta: ModelMeta | None) -> float:
    """TorchScript-export ``model`` to ONNX, embed ``meta``; returns the largest
    |torch - onnxruntime| over the outputs on ``args``."""
    import onnxruntime as ort

    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, args, str(path), input_names=inputs, output_names=outputs,
                      dynamic_axes=dynamic, opset_version=17, dynamo=False)
    if meta is not None:
        embed_metadata(path, meta)
    with torch.no_grad():
        expected = model(*args)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {n: a.numpy() for n, a in zip(inputs, args,
                                                              strict=True)})
    diff = max_abs_diff([e.numpy() for e in expected], actual)
    log.info("exported %s (max |torch - onnxruntime| = %.2e)", path, diff)
    return diff


def _batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + size] for i in range(0, n, size)]


def train_loc(out: Path, class_names: list[str], epochs: int = 20,
              images: int = 8000, seed: int = 0,
              backgrounds: str | Path | None = None,
              input_size: tuple[int, int] = LOC_INPUT, giou: float = 1.0) -> Path:
    """Localization as regression on single-object images rendered at frame
    size and resized (over crops of ``backgrounds`` photographs when given); L2
    (+ ``giou`` x GIoU) box loss + cross-entropy, horizontal flips. Records val
    accuracy and mean IoU."""
    from training.data.generate import load_backgrounds

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    photos = load_backgrounds(backgrounds) if backgrounds is not None else None
    n_val = min(200, max(8, images // 10))
    h, w = input_size
    # rendered at frame size, then resized as the detector resizes: textures,
    # clutter and edges look as they do in downscaled frames
    data = []
    for _ in tqdm(range(images + n_val), desc="render"):
        image, box, class_id = single_object_scene(rng, LOC_FRAME, backgrounds=photos)
        small, transform = stretch(image, input_size)
        data.append((small, transform.to_network(box[None])[0], class_id))
    x = torch.from_numpy(np.stack([to_tensor(d[0]) for d in data]))
    boxes = torch.from_numpy(np.stack([d[1] for d in data]) / np.float32([w, h, w, h]))
    cls = torch.tensor([d[2] for d in data])
    x_val, box_val, cls_val = x[images:], boxes[images:], cls[images:]
    x, boxes, cls = x[:images], boxes[:images], cls[:images]
    model = LocNet(len(class_names), input_size)
    fit_loc(model, x, boxes, cls, epochs, rng, giou=giou)
    model.eval()
    with torch.no_grad():
        logits, pred = model(x_val)
    val_iou = float(np.mean(np.diag(iou_matrix(pred.numpy(), box_val.numpy()))))
    val_acc = float((logits.argmax(1) == cls_val).float().mean())
    log.info("loc val accuracy %.3f, mean IoU %.3f", val_acc, val_iou)
    meta = ModelMeta("lineage_loc", list(class_names), tuple(input_size),
                     resize="stretch",
                     extra={"train_seconds": round(time.perf_counter() - start, 1),
                            "val_iou": round(val_iou, 4),
                            "val_accuracy": round(val_acc, 4), "train_images": images,
                            "epochs": epochs})
    _export(model, (x_val[:2],), out, ["images"], ["logits", "box"],
            {"images": {0: "batch"}, "logits": {0: "batch"}, "box": {0: "batch"}},
            meta)
    return out


def fit_loc(model: nn.Module, x: torch.Tensor, boxes: torch.Tensor,
            cls: torch.Tensor, epochs: int, rng: np.random.Generator,
            batch: int = 64, lr: float = 3e-3, giou: float = 0.0) -> None:
    """Localization's two-task fit: cross-entropy on the class + 20 x L2 on the
    box (xyxy in [0, 1]) + ``giou`` x the GIoU loss (what the IoU score rewards);
    images mirrored at random (the box with them)."""
    opt = torch.optim.AdamW(model.parameters(), lr, weight_decay=1e-4)
    steps = epochs * len(_batches(len(x), batch, rng))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for idx in _batches(len(x), batch, rng):
            idx = torch.from_numpy(idx)
            xb, bb = x[idx], boxes[idx]
            mirror = torch.from_numpy(rng.random(len(idx)) < 0.5)
            xb = torch.where(mirror[:, None, None, None], xb.flip(3), xb)
            flipped = torch.stack([1 - bb[:, 2], bb[:, 1], 1 - bb[:, 0], bb[:, 3]], 1)
            bb = torch.where(mirror[:, None], flipped, bb)
            logits, box = model(xb)
            loss = F.cross_entropy(logits, cls[idx]) + 20 * F.mse_loss(box, bb)
            if giou:
                loss = loss + giou * generalized_box_iou_loss(box, bb, reduction="mean")
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log.info("loc epoch %d/%d loss %.4f", epoch + 1, epochs, total)
    model.eval()


def train_overfeat(dataset, out: Path, epochs: int = 10, seed: int = 0,
                   passes: int = 4) -> Path:
    """OverFeat classifier on object-centred vs background 32x32 windows, cut
    ``passes`` times (different jitter) from every training image."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    window = OverFeatNet.WINDOW
    crops, labels, targets = [], [], []
    for _ in range(passes):
        for i in tqdm(range(len(dataset)), desc="windows"):
            s = dataset[i]
            c, lab, t = overfeat_windows(rng, s.image, s.boxes, s.class_ids, window)
            crops += c
            labels += lab
            targets += t
    x = torch.from_numpy(np.stack([to_tensor(c) for c in crops]))
    y = torch.tensor(labels)
    t = torch.from_numpy(np.stack(targets))
    log.info("overfeat: %d windows, %d positive", len(y), int((y > 0).sum()))
    model = OverFeatNet(len(dataset.class_names))
    _fit_crops(model, x, y, t, epochs, rng, lambda o: (o[0][:, :, 0, 0],
                                                        o[1][:, :, 0, 0]),
               per_class_deltas=False)
    meta = ModelMeta("lineage_overfeat", list(dataset.class_names), (window, window),
                     resize="none", extra={
                         "window": window, "stride": OverFeatNet.STRIDE,
                         "scales": list(OVERFEAT_SCALES),
                         "train_seconds": round(time.perf_counter() - start, 1),
                         "train_windows": len(y), "epochs": epochs})
    dyn = {"images": {2: "height", 3: "width"}, "scores": {2: "h", 3: "w"},
           "offsets": {2: "h", 3: "w"}}
    _export(model, (torch.rand(1, 3, 64, 96),), out, ["images"],
            ["scores", "offsets"], dyn, meta)
    return out


def _fit_crops(model: nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
               epochs: int, rng: np.random.Generator, head=lambda o: o,
               per_class_deltas: bool = True, batch: int = 128) -> None:
    """Multi-task fit on fixed-size crops: cross-entropy + smooth-L1 on the
    positives' box targets (class-specific deltas when ``per_class_deltas``)."""
    opt = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=1e-4)
    steps = epochs * len(_batches(len(y), batch, rng))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for idx in _batches(len(y), batch, rng):
            idx = torch.from_numpy(idx)
            logits, box = head(model(x[idx]))
            loss = F.cross_entropy(logits, y[idx]) + _box_loss(
                box, y[idx], t[idx], per_class_deltas)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log.info("epoch %d/%d loss %.4f", epoch + 1, epochs, total)
    model.eval()


def _box_loss(box: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
              per_class: bool) -> torch.Tensor:
    pos = torch.nonzero(labels > 0).squeeze(1)
    if len(pos) == 0:
        return box.sum() * 0
    if per_class:
        box = box.view(len(box), -1, 4)[pos, labels[pos] - 1]
    else:
        box = box[pos]
    return F.smooth_l1_loss(box, targets[pos], beta=1 / 9, reduction="sum") / max(
        len(labels), 1) * 4


def _cached_proposals(dataset, cache: Path | None, side: int, count: int
                      ) -> list[np.ndarray]:
    """Selective Search on every training image, cached in an .npz beside the
    output (keyed by image paths and settings): R-CNN and Fast R-CNN share it."""
    key = [str(p) for p in dataset.image_paths] + [f"{side}/{count}"]
    if cache is not None and cache.is_file():
        data = np.load(cache, allow_pickle=False)
        if list(data["key"]) == key:
            return [data[f"p{i}"] for i in range(len(dataset))]
    props = proposals_for(dataset, side, count)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, key=np.array(key), **{f"p{i}": p for i, p in enumerate(props)})
    return props


def train_rcnn(dataset, out: Path, epochs: int = 40, seed: int = 0,
               proposal_side: int = DEFAULT_MAX_SIDE,
               max_proposals: int = DEFAULT_MAX_PROPOSALS, rois_per_image: int = 48,
               cache: Path | None = None) -> Path:
    """R-CNN: warp IoU-labelled proposals (>= 0.5 object, < 0.3 background) to
    the network's square input and fit it with classification + class-specific
    box regression."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    props = _cached_proposals(dataset, cache, proposal_side, max_proposals)
    model = RCNNNet(len(dataset.class_names))
    xs, ys, ts = [], [], []
    for i in tqdm(range(len(dataset)), desc="warp proposals"):
        s = dataset[i]
        rois, labels, matched = sample_rois(rng, props[i], s.boxes, s.class_ids,
                                            rois_per_image)
        xs.append(warp_crops(s.image, rois, model.size))
        ys.append(labels)
        ts.append(encode_deltas(rois, matched))
    x, y = torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))
    t = torch.from_numpy(np.concatenate(ts))
    log.info("rcnn: %d crops, %d positive", len(y), int((y > 0).sum()))
    _fit_crops(model, x, y, t, epochs, rng)
    meta = ModelMeta("lineage_rcnn", list(dataset.class_names),
                     (model.size, model.size), resize="stretch", extra={
                         "proposal_side": proposal_side, "max_proposals": max_proposals,
                         "train_seconds": round(time.perf_counter() - start, 1),
                         "train_crops": len(y), "epochs": epochs})
    _export(model, (x[:3],), out, ["crops"], ["logits", "deltas"],
            {"crops": {0: "n"}, "logits": {0: "n"}, "deltas": {0: "n"}}, meta)
    return out


def train_fast_rcnn(dataset, out: Path, epochs: int = 40, seed: int = 0,
                    proposal_side: int = DEFAULT_MAX_SIDE,
                    max_proposals: int = DEFAULT_MAX_PROPOSALS,
                    rois_per_image: int = 64, cache: Path | None = None,
                    input_size: tuple[int, int] = FAST_RCNN_INPUT,
                    stride: int = FastRCNNTrunk.STRIDE,
                    images_per_step: int = 2, pooling: str = "align",
                    svd_rank: int | None = FAST_RCNN_SVD_RANK) -> Path:
    """Fast R-CNN end to end: per step, the trunk once per image
    (``images_per_step``, mirrored at random), RoI-pool sampled proposals,
    multi-task loss (cross-entropy + smooth-L1 on class-specific deltas).
    ``pooling``: "align" (RoIAlign, one sample per bin) or "max" (the paper's RoI
    max pooling; ``FastRCNNHead``). The head's first fc layer is exported as its
    rank-``svd_rank`` truncated SVD (``truncated_svd``; None keeps it whole)."""
    import cv2

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    props = _cached_proposals(dataset, cache, proposal_side, max_proposals)
    h, w = input_size
    # each image read once: resized, with its boxes and proposals at that size
    images, targets = [], []
    for i in range(len(dataset)):
        s = dataset[i]
        scale = np.float32([w / s.image.shape[1], h / s.image.shape[0]] * 2)
        images.append(cv2.resize(s.image, (w, h), interpolation=cv2.INTER_AREA))
        targets.append((s.boxes * scale, s.class_ids, props[i] * scale))
    n_classes = len(dataset.class_names)
    trunk = FastRCNNTrunk(stride=stride)
    head = FastRCNNHead(n_classes, stride=trunk.stride, pooling=pooling)
    params = list(trunk.parameters()) + list(head.parameters())
    steps = epochs * len(_batches(len(dataset), images_per_step, rng))
    opt = torch.optim.AdamW(params, 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    for epoch in range(epochs):
        trunk.train()
        head.train()
        total = 0.0
        for batch in tqdm(_batches(len(dataset), images_per_step, rng),
                          desc=f"epoch {epoch + 1}", leave=False):
            x, r, y, t = [], [], [], []
            for j, i in enumerate(batch):
                image = images[i]
                boxes, class_ids, proposals = targets[i]
                if rng.random() < 0.5:  # mirror image, boxes and proposals
                    image, both = hflip(image, np.concatenate([boxes, proposals]))
                    boxes, proposals = both[:len(boxes)], both[len(boxes):]
                rois, labels, matched = sample_rois(rng, proposals, boxes, class_ids,
                                                    rois_per_image)
                x.append(torch.from_numpy(to_tensor(image)))
                r.append(np.concatenate([np.full((len(rois), 1), j, np.float32),
                                         rois], 1))
                y.append(labels)
                t.append(encode_deltas(rois, matched))
            y_all = torch.from_numpy(np.concatenate(y))
            logits, deltas = head(trunk(torch.stack(x)),
                                  torch.from_numpy(np.concatenate(r)))
            loss = F.cross_entropy(logits, y_all) + _box_loss(
                deltas, y_all, torch.from_numpy(np.concatenate(t)), True)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log.info("fast-rcnn epoch %d/%d loss %.4f", epoch + 1, epochs, total)
    trunk.eval()
    head.eval()
    if svd_rank:
        head.fc[1] = truncated_svd(head.fc[1], svd_rank)
    head_path = out.with_name(out.stem + "_head.onnx")
    meta = ModelMeta("lineage_fast_rcnn", list(dataset.class_names), tuple(input_size),
                     resize="stretch", extra={
                         "head": head_path.name, "proposal_side": proposal_side,
                         "max_proposals": max_proposals, "pool": head.pool,
                         "spatial_scale": head.spatial_scale, "pooling": pooling,
                         "pooled_layout": "channels_last",
                         "sampling_ratio": head.sampling_ratio,
                         "train_seconds": round(time.perf_counter() - start, 1),
                         "train_images": len(dataset), "epochs": epochs,
                         "images_per_step": images_per_step, "svd_rank": svd_rank})
    x = torch.from_numpy(to_tensor(images[0]))[None]
    _export(trunk, (x,), out, ["images"], ["features"],
            {"images": {0: "batch"}, "features": {0: "batch"}}, meta)
    pooled = torch.rand(3, head.pool, head.pool, trunk(x).shape[1])  # channels last
    _export(PooledHead(head), (pooled,), head_path, ["pooled"], ["logits", "deltas"],
            {"pooled": {0: "k"}, "logits": {0: "k"}, "deltas": {0: "k"}}, None)
    return out
