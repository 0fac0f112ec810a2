"""COCO mAP of any detector on a dataset, and a side-by-side comparison CLI.

``python -m training evaluate --model yolo --model runs/best.onnx --data data.yaml``
scores every model on the same images with the same speed measure: wall time of
``Detector.detect`` (pre-processing + inference + decoding), warm-up excluded,
image decoding from disk excluded.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.types import Detections
from engines.base import Detector
from training.data.datasets import DetectionDataset, Sample

log = logging.getLogger(__name__)


def _class_names(dataset: Any) -> list[str]:
    """Class names of a dataset or of a wrapper around one (e.g. torch ``Subset``)."""
    for obj in (dataset, getattr(dataset, "dataset", None)):
        names = getattr(obj, "class_names", None)
        if names is not None:
            return list(names)
    raise ValueError(f"{type(dataset).__name__} has no class_names")


def ground_truth(dataset: Any, i: int
                  ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Boxes (N, 4) xyxy px, class ids and (height, width) of image ``i``; a
    ``DetectionDataset`` that already knows the image size skips reading it."""
    if isinstance(dataset, DetectionDataset) and dataset.sizes[i] is not None:
        size = dataset.sizes[i]
        return (*dataset.targets(i, size), size)
    sample = dataset[i]
    return sample.boxes.reshape(-1, 4), sample.class_ids, sample.image.shape[:2]


def coco_map(dataset: DetectionDataset | Sequence[Sample],
             predictions: list[Detections]) -> dict:
    """COCO box mAP of ``predictions`` (one ``Detections`` per dataset image, xyxy
    original-image pixels, 0-based class ids in the dataset's class order).

    ``dataset`` is a ``DetectionDataset`` or any sequence of ``Sample`` with
    ``class_names`` (or wrapping one as ``.dataset``, like torch ``Subset``).
    Returns ``map`` (AP@[.5:.95]), ``map50`` (AP@.5), ``per_class`` {name:
    AP@[.5:.95], NaN for a class with no ground truth}. Uses faster-coco-eval with
    the standard settings (100 detections per image, all areas).
    """
    from faster_coco_eval import COCO, COCOeval_faster

    if len(predictions) != len(dataset):
        raise ValueError(f"{len(predictions)} predictions for {len(dataset)} images")
    class_names = _class_names(dataset)
    num_classes = len(class_names)
    images, annotations, rows = [], [], []
    for i, dets in enumerate(predictions):
        boxes, class_ids, (h, w) = ground_truth(dataset, i)
        images.append({"id": i + 1, "height": h, "width": w})
        wh = boxes[:, 2:] - boxes[:, :2]
        for (x, y), (bw, bh), c in zip(boxes[:, :2].tolist(), wh.tolist(),
                                       class_ids.tolist(), strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": c + 1, "bbox": [x, y, bw, bh],
                                "area": bw * bh, "iscrowd": 0})
        if len(dets):
            bad = (dets.class_ids < 0) | (dets.class_ids >= num_classes)
            if bad.any():
                raise ValueError(f"image {i}: predicted class ids "
                                 f"{sorted(set(dets.class_ids[bad].tolist()))} outside "
                                 f"[0, {num_classes - 1}] ({class_names})")
            xy = dets.xyxy[:, :2]
            xywh = np.concatenate([xy, dets.xyxy[:, 2:] - xy], axis=1)
            rows.append(np.column_stack([np.full(len(dets), i + 1), xywh, dets.scores,
                                         dets.class_ids + 1]).astype(np.float64))
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(class_names)]
    gt_counts = np.bincount([a["category_id"] - 1 for a in annotations],
                            minlength=num_classes)
    result: dict[str, Any] = {
        "map": 0.0, "map50": 0.0,
        "per_class": {n: (0.0 if gt_counts[k] else float("nan"))
                      for k, n in enumerate(class_names)}}
    if not rows or not annotations:
        return result  # nothing predicted (or nothing to find): AP is 0
    gt = COCO({"images": images, "annotations": annotations, "categories": categories},
              print_function=log.debug)
    dt = gt.loadRes(np.concatenate(rows))
    evaluator = COCOeval_faster(gt, dt, "bbox", print_function=log.debug)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    precision = evaluator.eval["precision"]  # [IoU, recall, class, area, maxDets]
    result["map"] = max(float(evaluator.stats[0]), 0.0)
    result["map50"] = max(float(evaluator.stats[1]), 0.0)
    for k, name in enumerate(class_names):
        p = precision[:, :, k, 0, -1]
        result["per_class"][name] = float(p[p > -1].mean()) if (p > -1).any() else (
            float("nan"))
    return result


def evaluate_detector(detector: Detector, dataset: DetectionDataset | Sequence[Sample],
                      batch: int = 1,
                      warmup: int = 2) -> dict:
    """Run ``detector`` over every image and score it with ``coco_map``.

    Adds ``ms_per_image`` (``detect`` wall time per image: pre-processing +
    inference + decoding, excluding ``warmup`` untimed calls on the first image and
    image reading) and ``images``. ``batch`` is capped at ``detector.max_batch``.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if batch > detector.max_batch:
        log.warning("batch %d > detector.max_batch %d; using %d", batch,
                    detector.max_batch, detector.max_batch)
        batch = detector.max_batch
    if len(dataset) == 0:
        raise ValueError("the dataset has no images")
    first = dataset[0].image
    for _ in range(warmup):
        detector.detect([first] * batch)
    predictions: list[Detections] = []
    elapsed = 0.0
    with tqdm(total=len(dataset), desc="evaluate", unit="img") as bar:
        for start in range(0, len(dataset), batch):
            images = [dataset[i].image for i in range(start,
                                                      min(start + batch, len(dataset)))]
            t0 = time.perf_counter()
            predictions += detector.detect(images)
            elapsed += time.perf_counter() - t0
            bar.update(len(images))
    result = coco_map(dataset, predictions)
    result["ms_per_image"] = 1000.0 * elapsed / len(dataset)
    result["images"] = len(dataset)
    return result


def format_table(results: dict[str, dict], class_names: list[str]) -> str:
    """Metrics as rows, models as columns."""
    names = list(results)
    rows: list[tuple[str, list[str]]] = [
        ("mAP@[.5:.95]", [f"{r['map']:.4f}" for r in results.values()]),
        ("mAP@.5", [f"{r['map50']:.4f}" for r in results.values()]),
    ]
    for c in class_names:
        rows.append((f"AP {c}", [f"{r['per_class'].get(c, float('nan')):.4f}"
                                 for r in results.values()]))
    rows.append(("ms/image", [f"{r['ms_per_image']:.1f}" for r in results.values()]))
    rows.append(("images", [str(r["images"]) for r in results.values()]))
    first = max(len(r[0]) for r in rows)
    widths = [max(len(n), *(len(r[1][j]) for r in rows)) for j, n in enumerate(names)]
    lines = ["  ".join([" " * first] + [n.rjust(w) for n, w in zip(names, widths,
                                                                   strict=True)])]
    for label, values in rows:
        lines.append("  ".join([label.ljust(first)] + [
            v.rjust(w) for v, w in zip(values, widths, strict=True)]))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", action="extend", required=True,
                        help="shipped name (hog, yolo, ...) or .onnx/.engine/.pt path; "
                             "repeat to compare several")
    parser.add_argument("--data", type=Path, required=True,
                        help="YOLO data.yaml or COCO .json")
    parser.add_argument("--split", default="val")
    parser.add_argument("--image-root", type=Path, default=None,
                        help="COCO images folder (default: beside the json)")
    from engines.build import FAMILIES

    parser.add_argument("--family", default=None, choices=sorted(FAMILIES),
                        help="override the model family")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--conf", type=float, default=0.001,
                        help="detector confidence threshold (low for mAP)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--json", type=Path, default=None, help="write results here")


def run(args: argparse.Namespace) -> int:
    from engines.build import load_detector
    from training.data.datasets import load_dataset

    dataset = load_dataset(args.data, args.split, image_root=args.image_root)
    if args.limit is not None:
        n = min(args.limit, len(dataset))
        dataset = DetectionDataset(dataset.image_paths[:n], dataset.labels[:n],
                                   dataset.class_names, dataset.normalized,
                                   dataset.image_ids[:n])
    results: dict[str, dict] = {}
    for model in args.model:
        with load_detector(model, device=args.device, family=args.family,
                           conf=args.conf) as detector:
            if list(detector.class_names) != dataset.class_names:
                log.warning("%s classes %s differ from the dataset's %s; class ids "
                            "are compared by position", model, detector.class_names,
                            dataset.class_names)
            key = str(model) if str(model) not in results else f"{model}#{len(results)}"
            results[key] = evaluate_detector(detector, dataset, args.batch)
    print(format_table(results, dataset.class_names))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        clean = json.loads(json.dumps(results), parse_constant=lambda _: None)
        args.json.write_text(json.dumps({"data": str(args.data), "split": args.split,
                                         "results": clean}, indent=2))
        log.info("wrote %s", args.json)
    return 0
