"""Label videos and image folders with a teacher detector (pseudo-labelling).

The teacher (any model ``load_detector`` accepts, e.g. the HOG people detector)
labels every ``every``-th frame; its confident boxes become a YOLO-format dataset
a student can train on. Consecutive frames are near-duplicates, so the val split
is made of whole contiguous chunks of each source, never interleaved frames:
otherwise validation would measure memorisation of neighbouring training frames.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from core.formats import yolo_label_lines
from core.types import Detections
from engines.base import Detector

log = logging.getLogger(__name__)

CHUNKS_PER_SOURCE = 5  # each source is cut into this many contiguous chunks


def _frames(source: Path, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, BGR image) of every ``every``-th frame of a video, or of
    every ``every``-th image (sorted by name) of a folder or a single image."""
    from pipeline.sources import read_frames

    for frame in read_frames(source, stride=every):
        yield frame.index, frame.image


def _batched(items: Iterable, n: int) -> Iterator[list]:
    """Lists of up to ``n`` consecutive items (itertools.batched needs 3.12)."""
    group: list = []
    for item in items:
        group.append(item)
        if len(group) == n:
            yield group
            group = []
    if group:
        yield group


def _yolo_text(dets: Detections, size: tuple[int, int]) -> str:
    h, w = size
    xyxy = dets.xyxy.copy()
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    keep = (xyxy[:, 2:] - xyxy[:, :2] > 1).all(axis=1)
    return yolo_label_lines(xyxy[keep], dets.class_ids[keep], size, spec=".6f")


def _val_chunks(n: int, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) bool: True for items in the randomly chosen contiguous val chunks."""
    if n == 0:
        return np.zeros(0, bool)
    chunks = min(CHUNKS_PER_SOURCE, n)
    bounds = np.linspace(0, n, chunks + 1).round().astype(int)
    n_val = min(chunks, math.ceil(val_fraction * chunks - 1e-9))
    if val_fraction < 1:  # keep at least one training chunk
        n_val = min(n_val, chunks - 1)
    is_val = np.zeros(n, bool)
    for c in rng.choice(chunks, n_val, replace=False):
        is_val[bounds[c]:bounds[c + 1]] = True
    return is_val


def pseudo_label(detector: Detector, sources: list[str | Path], out_dir: str | Path,
                 every: int = 1, val_fraction: float = 0.2, conf: float = 0.5,
                 seed: int = 0) -> Path:
    """Label frames of ``sources`` with ``detector``; write a YOLO dataset.

    Each source (a video, an image folder or an image) is sampled every ``every``
    frames, and its samples are cut into ``CHUNKS_PER_SOURCE`` contiguous chunks;
    about ``val_fraction`` of the chunks (chosen with ``seed``) go to ``val``, the
    rest to ``train``, so held-out frames are never next to training frames.
    Boxes scoring >= ``conf`` become labels; frames without any stay as negatives.
    Returns the ``data.yaml`` path (class names are the teacher's).
    """
    import yaml

    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if not 0 <= val_fraction <= 1:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    out = Path(out_dir)
    if any((out / "images").glob("*/*")):
        raise ValueError(f"{out / 'images'} is not empty; pseudo-label into a new "
                         "folder so old frames do not leak into the splits")
    for sub in ("images/train", "images/val", "labels/train", "labels/val"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batch = max(1, detector.max_batch)
    counts = {"train": 0, "val": 0, "boxes": 0}
    for s, source in enumerate(sources):
        source = Path(source)
        if not source.exists():
            raise ValueError(f"source not found: {source}")
        written: list[str] = []  # file stems in order, all first written as train
        frames = tqdm(_frames(source, every), desc=f"label {source.name}", unit="frame")
        for items in _batched(frames, batch):
            found = detector.detect([image for _, image in items])
            for (index, image), dets in zip(items, found, strict=True):
                stem = f"{s:02d}_{source.stem}_{index:06d}"
                cv2.imwrite(str(out / "images/train" / f"{stem}.jpg"), image,
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                text = _yolo_text(dets[dets.scores >= conf], image.shape[:2])
                (out / "labels/train" / f"{stem}.txt").write_text(text)
                counts["boxes"] += text.count("\n")
                written.append(stem)
        is_val = _val_chunks(len(written), val_fraction, rng)
        for stem, val in zip(written, is_val.tolist(), strict=True):
            if val:
                for kind, ext in (("images", ".jpg"), ("labels", ".txt")):
                    (out / kind / "train" / f"{stem}{ext}").replace(
                        out / kind / "val" / f"{stem}{ext}")
        counts["val"] += int(is_val.sum())
        counts["train"] += len(written) - int(is_val.sum())
    data = {"path": str(out.resolve()), "train": "images/train", "val": "images/val",
            "names": dict(enumerate(detector.class_names))}
    yaml_path = out / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))
    log.info("pseudo-labelled %d train + %d val frames, %d boxes -> %s",
             counts["train"], counts["val"], counts["boxes"], yaml_path)
    return yaml_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="teacher: shipped name (hog, yolo, ...) or a model path")
    parser.add_argument("--source", nargs="+", action="extend", required=True,
                        type=Path, help="video file(s), image folder(s); repeatable")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder")
    parser.add_argument("--every", type=int, default=1, help="label every Nth frame")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="fraction of each source (in contiguous chunks) for val")
    parser.add_argument("--conf", type=float, default=0.5,
                        help="teacher score needed to become a label")
    parser.add_argument("--seed", type=int, default=0)
    from engines.build import FAMILIES

    parser.add_argument("--family", default=None, choices=sorted(FAMILIES),
                        help="override the model family")
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    from engines.build import load_detector

    with load_detector(args.model, device=args.device, family=args.family,
                       conf=args.conf) as detector:
        path = pseudo_label(detector, args.source, args.out, every=args.every,
                            val_fraction=args.val_fraction, conf=args.conf,
                            seed=args.seed)
    print(path)
    return 0
