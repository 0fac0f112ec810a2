"""``python -m training compare``: the detection lineage on one held-out set.

Every detector runs on the same generated images (or ``--data``) on the same
machine and is scored the same way (``evaluate_detector``: COCO mAP, and
``detect`` wall time per image; for R-CNN and Fast R-CNN also without the
proposal step: a second pass fed the first pass's proposals, as the papers time
detection "excluding proposals"). mAP@.5
comes with a bootstrap interval over images (``BOOTSTRAP_ROUNDS`` resamples, 5th
to 95th percentile), so a ranking can be read against its noise. Localization
as regression is also scored as the lecture scores it: on single-object images,
classification accuracy and mean IoU of its one box. Writes ``compare.json``,
``compare.csv`` and ``compare.png`` (accuracy vs speed, log-scale ms) and prints
the table.

Detections whose class name is not in the dataset are dropped before scoring
(counted in ``foreign_per_image``): HOG and DPM find people, the generated set
holds shapes, so their AP there is 0 by construction -- they are listed for
their speed, not hidden.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.meta import ModelError
from core.types import Detections
from engines.base import Detector, Prepared
from engines.build import SHIPPED, load_detector
from training.data.generate import CLASS_NAMES

log = logging.getLogger(__name__)

# The lecture's order: localization -> sliding window -> HOG -> DPM -> R-CNN ->
# Fast R-CNN -> Faster R-CNN -> YOLO (grid head, then the modern head).
LINEAGE = ("lineage-loc", "lineage-overfeat", "hog", "lineage-hog", "lineage-dpm",
           "lineage-rcnn", "lineage-fast-rcnn", "faster-rcnn", "yolo-grid", "yolo")
BOOTSTRAP_ROUNDS = 50
SINGLE_OBJECT_SIZE = (360, 640)
QUICK_OPTIONS: dict[str, dict[str, Any]] = {
    "lineage-rcnn": {"max_proposals": 50, "proposal_side": 128},
    "lineage-fast-rcnn": {"max_proposals": 50, "proposal_side": 128},
    "lineage-dpm": {"max_width": 320},
}
FIELDS = ("model", "status", "map50", "map50_lo", "map50_hi", "map", "ms_per_image",
          "ms_without_proposals", "proposals_per_image", "proposal_ms",
          "train_seconds", "detections_per_image", "foreign_per_image",
          "single_accuracy", "single_iou", "classes")


class _Scored(Detector):
    """Wraps a detector for scoring: maps its class ids to the dataset's by name,
    drops classes the dataset lacks, and records each frame's proposals and their
    time."""

    def __init__(self, inner: Detector, dataset_names: list[str]) -> None:
        self.inner = inner
        self.class_names = list(dataset_names)
        index = {n: i for i, n in enumerate(dataset_names)}
        self.mapping = np.array([index.get(n, -1) for n in inner.class_names],
                                np.int64)
        self.proposals: list[np.ndarray] = []
        self.proposal_seconds: list[float] = []
        self.kept: list[int] = []
        self.foreign: list[int] = []
        self.outputs: list[Detections] = []

    @property
    def max_batch(self) -> int:
        return 1

    def prepare(self, image: np.ndarray) -> Prepared:
        return self.inner.prepare(image)

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        out = []
        for dets in self.inner.infer(batch):
            proposer = getattr(self.inner, "proposer", None)
            if proposer is not None:
                self.proposals.append(proposer.last_boxes)
                self.proposal_seconds.append(proposer.last_seconds)
            ids = self.mapping[dets.class_ids] if len(dets) else dets.class_ids
            keep = ids >= 0
            self.kept.append(int(keep.sum()))
            self.foreign.append(int((~keep).sum()))
            out.append(Detections(dets.xyxy[keep], dets.scores[keep], ids[keep]))
        self.outputs += out
        return out


def held_out_set(out: Path, images: int, seed: int,
                 backgrounds: Path | None = None) -> Path:
    """A generated val split of ``images`` images for ``seed`` (reused if present),
    over the photographs in ``backgrounds`` when given."""
    from training.data.generate import generate_dataset

    kind = "photos" if backgrounds else "procedural"
    folder = out / f"data_{kind}_seed{seed}_n{images}"
    if (folder / "data.yaml").is_file() and len(list(
            (folder / "images" / "val").glob("*.jpg"))) == images:
        return folder / "data.yaml"
    return generate_dataset(folder, 0, images, seed=seed, backgrounds=backgrounds)


class _Resampled:
    """Images ``index`` of ``dataset`` (repeats allowed), ground truth only."""

    def __init__(self, truths: list[Any], index: np.ndarray,
                 class_names: list[str]) -> None:
        self.truths, self.index, self.class_names = truths, index, class_names

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Any:
        return self.truths[self.index[i]]


def bootstrap_map50(dataset: Any, predictions: list[Detections],
                    rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
                    ) -> tuple[float, float]:
    """5th and 95th percentile of mAP@.5 over ``rounds`` resamples of the images
    (with replacement)."""
    from training.data.datasets import Sample
    from training.evaluate import coco_map, ground_truth

    truths = []
    for i in range(len(dataset)):
        boxes, class_ids, (h, w) = ground_truth(dataset, i)
        image = np.broadcast_to(np.zeros(1, np.uint8), (h, w, 3))  # shape only
        truths.append(Sample(image, boxes, class_ids, i, Path()))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        index = rng.integers(0, len(dataset), len(dataset))
        view = _Resampled(truths, index, list(dataset.class_names))
        values.append(coco_map(view, [predictions[i] for i in index])["map50"])
    lo, hi = np.percentile(values, [5, 95])
    return float(lo), float(hi)


def single_object_scores(detector: Detector, images: int, seed: int,
                         backgrounds: list[np.ndarray] | None = None
                         ) -> tuple[float, float]:
    """The lecture's localization metrics on ``images`` generated single-object
    frames: accuracy of the top detection's class, and mean IoU of its box with
    the object (0 when the detector gives no box)."""
    from core.boxes import iou_matrix
    from training.lineage.data import single_object_scene

    rng = np.random.default_rng([seed, 2])
    correct, ious = [], []
    for _ in range(images):
        image, box, class_id = single_object_scene(rng, SINGLE_OBJECT_SIZE,
                                                   backgrounds=backgrounds)
        (dets,) = detector.detect([image])
        if not len(dets):
            correct.append(False)
            ious.append(0.0)
            continue
        top = int(np.argmax(dets.scores))
        name = detector.class_names[int(dets.class_ids[top])]
        correct.append(name == CLASS_NAMES[class_id])
        ious.append(float(iou_matrix(dets.xyxy[top:top + 1], box[None])[0, 0]))
    return float(np.mean(correct)), float(np.mean(ious))


def _train_seconds(detector: Detector) -> float | None:
    if getattr(detector, "train_seconds", None) is not None:
        return float(detector.train_seconds)
    backend = getattr(detector, "backend", None)
    meta = getattr(backend, "meta", None)
    value = meta.train_seconds if meta is not None else None
    return float(value) if value is not None else None


def compare(models: list[tuple[str, str]], dataset, quick: bool = False,
            warmup: int = 2, single_images: int = 0, seed: int = 0,
            backgrounds: list[np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Evaluate each (name, model) on ``dataset``; one row dict per model.

    With ``single_images``, localization as regression (family ``lineage_loc``)
    is also scored on that many single-object frames (``single_object_scores``).
    """
    from training.evaluate import evaluate_detector

    rows = []
    n = len(dataset)
    for name, model in models:
        row: dict[str, Any] = dict.fromkeys(FIELDS)
        row["model"] = name
        options = QUICK_OPTIONS.get(name, {}) if quick else {}
        try:
            detector = load_detector(model, **options)
        except (ModelError, FileNotFoundError) as exc:
            log.warning("skipping %s: %s", name, exc)
            row["status"] = f"missing ({exc})"
            rows.append(row)
            continue
        with detector:
            scored = _Scored(detector, dataset.class_names)
            row["classes"] = ",".join(detector.class_names)
            log.info("evaluating %s on %d images", name, n)
            result = evaluate_detector(scored, dataset, warmup=warmup)
            outputs = scored.outputs[-n:]
            without = (ms_on_stored_proposals(detector, dataset, scored.proposals[-n:])
                       if scored.proposals else result["ms_per_image"])
            meta = getattr(getattr(detector, "backend", None), "meta", None)
            if single_images and meta is not None and meta.family == "lineage_loc":
                acc, iou = single_object_scores(detector, single_images, seed,
                                                backgrounds)
                row.update(single_accuracy=round(acc, 4), single_iou=round(iou, 4))
        lo, hi = bootstrap_map50(dataset, outputs, 10 if quick else BOOTSTRAP_ROUNDS)
        row.update(map50_lo=round(lo, 4), map50_hi=round(hi, 4))
        row.update(status="ok", map50=round(result["map50"], 4),
                   map=round(result["map"], 4),
                   ms_per_image=round(result["ms_per_image"], 2),
                   train_seconds=_train_seconds(detector),
                   detections_per_image=round(float(np.mean(scored.kept[-n:])), 2),
                   foreign_per_image=round(float(np.mean(scored.foreign[-n:])), 2))
        row["ms_without_proposals"] = round(without, 2)
        if scored.proposals:
            row["proposals_per_image"] = round(float(np.mean(
                [len(b) for b in scored.proposals[-n:]])), 1)
            row["proposal_ms"] = round(1000 * float(np.mean(
                scored.proposal_seconds[-n:])), 2)
        rows.append(row)
    return rows


def ms_on_stored_proposals(detector: Detector, dataset,
                           proposals: list[np.ndarray]) -> float:
    """``detect`` ms per image over ``dataset`` with each frame's proposals given
    (``detector.proposer.replay``): the detector without its proposal step, on a
    warm detector, frame after frame."""
    elapsed = 0.0
    with detector.proposer.replay(proposals):
        for i in tqdm(range(len(dataset)), desc="stored proposals", leave=False):
            image = dataset[i].image
            start = time.perf_counter()
            detector.detect([image])
            elapsed += time.perf_counter() - start
    return 1000.0 * elapsed / len(dataset)


NOTES = {
    "lineage-loc": "one box per image (cannot count objects)",
    "hog": "OpenCV's pretrained people detector: speed only",
    "lineage-dpm": "INRIA people model: speed only",
    "lineage-hog": "HOG + linear SVM trained on the shapes",
}


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A plain-text table (what ``run`` prints and docs/lineage.md quotes)."""
    head = ("model", "mAP@.5 [90% CI]", "mAP@[.5:.95]", "ms/frame",
            "ms w/o proposals", "proposals", "train s", "dets/img",
            "1-object acc / IoU", "note")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        def f(key: str, fmt: str = "{}") -> str:
            return "" if r[key] is None else fmt.format(r[key])

        note = r["status"] if r["status"] != "ok" else NOTES.get(r["model"], "")
        if r["status"] == "ok" and r["classes"] == "person":
            note = NOTES.get(r["model"], "person detector: AP 0 by construction")
        ci = (f"{r['map50']:.3f} [{r['map50_lo']:.3f}, {r['map50_hi']:.3f}]"
              if r["map50_lo"] is not None else f("map50", "{:.3f}"))
        single = (f"{r['single_accuracy']:.2f} / {r['single_iou']:.2f}"
                  if r["single_accuracy"] is not None else "")
        lines.append(" | ".join([r["model"], ci, f("map", "{:.3f}"),
                                 f("ms_per_image", "{:.1f}"),
                                 f("ms_without_proposals", "{:.1f}"),
                                 f("proposals_per_image", "{:.0f}"),
                                 f("train_seconds", "{:.0f}"),
                                 f("detections_per_image", "{:.1f}"), single, note]))
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """mAP@.5 against ms/frame (log x) for every model that ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in ok:
        ax.scatter(r["ms_per_image"], r["map50"], s=40)
        ax.annotate(r["model"], (r["ms_per_image"], r["map50"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("ms per frame (log scale)")
    ax.set_ylabel("mAP@.5")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=None,
                        help="data.yaml / COCO json to score on (its val split); "
                             "default: a generated held-out set")
    parser.add_argument("--split", default="val")
    parser.add_argument("--images", type=int, default=40,
                        help="generated held-out images (ignored with --data)")
    parser.add_argument("--seed", type=int, default=2026,
                        help="seed of the generated held-out set")
    parser.add_argument("--models", default=",".join(LINEAGE),
                        help="comma-separated shipped names or model paths")
    parser.add_argument("--extra", action="append", default=[],
                        metavar="NAME=PATH", help="another model to include")
    parser.add_argument("--quick", action="store_true",
                        help="CI size: 3 images, 50 proposals, 1 warm-up call")
    parser.add_argument("--backgrounds", type=Path, default=None, metavar="DIR",
                        help="generated sets draw their objects over the "
                             "photographs in DIR")
    parser.add_argument("--single-images", type=int, default=200,
                        help="single-object frames localization is scored on")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))


def run(args: argparse.Namespace) -> int:
    from training.data.datasets import load_dataset

    images = 3 if args.quick else args.images
    if images < 1:
        raise ValueError(f"--images must be >= 1, got {images}")
    args.out.mkdir(parents=True, exist_ok=True)
    from training.data.generate import load_backgrounds

    photos = load_backgrounds(args.backgrounds) if args.backgrounds else None
    data = args.data or held_out_set(args.out, images, args.seed, args.backgrounds)
    dataset = load_dataset(data, args.split)
    if args.data is not None and args.quick:
        dataset.image_paths = dataset.image_paths[:images]
        dataset.labels = dataset.labels[:images]
        dataset.image_ids = dataset.image_ids[:images]
        dataset.sizes = dataset.sizes[:images]
    models = []
    for name in [m for m in args.models.split(",") if m]:
        if name not in SHIPPED and not Path(name).is_file():
            models.append((name, name))  # reported as missing, not silently dropped
        else:
            models.append((Path(name).stem if Path(name).is_file() else name, name))
    for item in args.extra:
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--extra expects NAME=PATH, got {item!r}")
        models = [m for m in models if m[0] != name]  # e.g. yolo-grid: the file given
        models.append((name, path))
    start = time.perf_counter()
    rows = compare(models, dataset, quick=args.quick, warmup=1 if args.quick else 2,
                   single_images=3 if args.quick else args.single_images,
                   seed=args.seed, backgrounds=photos)
    setting = (f"{len(dataset)} images from {data}; {platform.machine()} CPU, "
               f"{platform.node()}")
    (args.out / "compare.json").write_text(json.dumps(
        {"setting": setting, "quick": args.quick, "rows": rows,
         "seconds": round(time.perf_counter() - start, 1)}, indent=2,
        default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
    with open(args.out / "compare.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "compare.png", setting)
    print(format_rows(rows))
    print(f"\nwrote {args.out / 'compare.json'}, compare.csv, compare.png")
    return 0
