"""``python -m training compare``: the detection lineage on one held-out set.

Every detector runs on the same generated images (or ``--data``) on the same
machine and is scored the same way (``evaluate_detector``: COCO mAP, and
``detect`` wall time per image). Writes ``compare.json``, ``compare.csv`` and
``compare.png`` (accuracy vs speed, log-scale ms) and prints the table.

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

from core.meta import ModelError
from core.types import Detections
from engines.base import Detector, Prepared
from engines.registry import SHIPPED, load_detector

log = logging.getLogger(__name__)

# The lecture's order: localization -> sliding window -> HOG -> DPM -> R-CNN ->
# Fast R-CNN -> Faster R-CNN -> YOLO (grid head, then the modern head).
LINEAGE = ("lineage-loc", "lineage-overfeat", "hog", "lineage-dpm", "lineage-rcnn",
           "lineage-fast-rcnn", "faster-rcnn", "yolo-grid", "yolo")
QUICK_OPTIONS: dict[str, dict[str, Any]] = {
    "lineage-rcnn": {"max_proposals": 50, "proposal_side": 128},
    "lineage-fast-rcnn": {"max_proposals": 50, "proposal_side": 128},
    "lineage-dpm": {"max_width": 320},
}
FIELDS = ("model", "status", "map50", "map", "ms_per_image", "proposals_per_image",
          "proposal_ms", "train_seconds", "detections_per_image",
          "foreign_per_image", "classes")


class _Scored(Detector):
    """Wraps a detector for scoring: maps its class ids to the dataset's by name,
    drops classes the dataset lacks, and records proposal counts/times."""

    def __init__(self, inner: Detector, dataset_names: list[str]) -> None:
        self.inner = inner
        self.class_names = list(dataset_names)
        index = {n: i for i, n in enumerate(dataset_names)}
        self.mapping = np.array([index.get(n, -1) for n in inner.class_names],
                                np.int64)
        self.proposals: list[int] = []
        self.proposal_seconds: list[float] = []
        self.kept: list[int] = []
        self.foreign: list[int] = []

    @property
    def max_batch(self) -> int:
        return 1

    def prepare(self, image: np.ndarray) -> Prepared:
        return self.inner.prepare(image)

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        out = []
        for dets in self.inner.infer(batch):
            if hasattr(self.inner, "last_proposals"):
                self.proposals.append(self.inner.last_proposals)
                self.proposal_seconds.append(self.inner.last_proposal_seconds)
            ids = self.mapping[dets.class_ids] if len(dets) else dets.class_ids
            keep = ids >= 0
            self.kept.append(int(keep.sum()))
            self.foreign.append(int((~keep).sum()))
            out.append(Detections(dets.xyxy[keep], dets.scores[keep], ids[keep]))
        return out


def held_out_set(out: Path, images: int, seed: int) -> Path:
    """A generated val split of ``images`` images for ``seed`` (reused if present)."""
    from training.data.generate import generate_dataset

    folder = out / f"data_seed{seed}_n{images}"
    if (folder / "data.yaml").is_file() and len(list(
            (folder / "images" / "val").glob("*.jpg"))) == images:
        return folder / "data.yaml"
    return generate_dataset(folder, 0, images, seed=seed)


def _train_seconds(detector: Detector) -> float | None:
    backend = getattr(detector, "backend", None)
    meta = getattr(backend, "meta", None)
    value = meta.extra.get("train_seconds") if meta is not None else None
    return float(value) if value is not None else None


def compare(models: list[tuple[str, str]], dataset, quick: bool = False,
            warmup: int = 2) -> list[dict[str, Any]]:
    """Evaluate each (name, model) on ``dataset``; one row dict per model."""
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
        row.update(status="ok", map50=round(result["map50"], 4),
                   map=round(result["map"], 4),
                   ms_per_image=round(result["ms_per_image"], 2),
                   train_seconds=_train_seconds(detector),
                   detections_per_image=round(float(np.mean(scored.kept[-n:])), 2),
                   foreign_per_image=round(float(np.mean(scored.foreign[-n:])), 2))
        if scored.proposals:
            row["proposals_per_image"] = round(float(np.mean(scored.proposals[-n:])),
                                               1)
            row["proposal_ms"] = round(1000 * float(np.mean(
                scored.proposal_seconds[-n:])), 2)
        rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A plain-text table (what ``run`` prints and docs/lineage.md quotes)."""
    head = ("model", "mAP@.5", "mAP@[.5:.95]", "ms/frame", "proposals",
            "proposal ms", "train s", "dets/img", "note")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        def f(key: str, fmt: str = "{}") -> str:
            return "" if r[key] is None else fmt.format(r[key])

        note = r["status"] if r["status"] != "ok" else (
            "no such class in the set: AP 0 by construction" if r["foreign_per_image"]
            and not r["detections_per_image"] else "")
        if r["status"] == "ok" and r["classes"] == "person":
            note = "person detector on a shape set: AP 0 by construction"
        lines.append(" | ".join([r["model"], f("map50", "{:.3f}"), f("map", "{:.3f}"),
                                 f("ms_per_image", "{:.1f}"),
                                 f("proposals_per_image", "{:.0f}"),
                                 f("proposal_ms", "{:.1f}"),
                                 f("train_seconds", "{:.0f}"),
                                 f("detections_per_image", "{:.1f}"), note]))
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
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))


def run(args: argparse.Namespace) -> int:
    from training.data.datasets import load_dataset

    images = 3 if args.quick else args.images
    if images < 1:
        raise ValueError(f"--images must be >= 1, got {images}")
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data or held_out_set(args.out, images, args.seed)
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
        models.append((name, path))
    start = time.perf_counter()
    rows = compare(models, dataset, quick=args.quick, warmup=1 if args.quick else 2)
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
