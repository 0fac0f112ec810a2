"""Dalal & Triggs on the shapes classes: HOG windows, a linear SVM, hard negatives.

1. Positives: every labelled object, cut as a square window holding it in the
   inner ``cells - 2`` cells (plus its mirror image); negatives: random windows
   whose inner square overlaps no object (IoU < 0.3).
2. A linear SVM (scikit-learn's ``LinearSVC``, one-vs-rest over background + C
   classes) on the windows' HOG cells.
3. Hard-negative mining: slide the detector over training images, add its
   highest-scoring windows that overlap no object as negatives, refit; repeated
   ``rounds`` times (Dalal & Triggs used one round).

The result is ``engines.lineage.hog_svm``'s ``.npz`` model file.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.boxes import iou_matrix
from engines.lineage.dpm import hog32
from engines.lineage.hog_svm import HogSvmDetector, HogSvmModel
from training.lineage.data import square_crop

log = logging.getLogger(__name__)

CELLS = 8  # filter side in HOG cells (1-cell margin of context on each side)
SBIN = 4  # pixels per HOG cell
MIN_SIDE, MAX_SIDE = 24.0, 150.0  # object sides (px) the pyramid covers (cost: the
# first level is the largest image; 16 px objects would need 1.5x the frame)
LEVELS_PER_OCTAVE = 3
NEGATIVE_IOU = 0.3


def pyramid_scales(cells: int = CELLS, sbin: int = SBIN) -> list[float]:
    """Resize factors that bring objects of MIN_SIDE..MAX_SIDE px to the
    window's inner (cells - 2) * sbin px, 2^(1/LEVELS_PER_OCTAVE) apart."""
    inner = (cells - 2) * sbin
    top, bottom = inner / MIN_SIDE, inner / MAX_SIDE
    n = math.ceil(math.log2(top / bottom) * LEVELS_PER_OCTAVE) + 1
    return [top * 2 ** (-k / LEVELS_PER_OCTAVE) for k in range(n)]


def window_features(image: np.ndarray, cx: float, cy: float, inner_side: float,
                    cells: int = CELLS, sbin: int = SBIN) -> np.ndarray:
    """HOG (cells * cells * 32,) of the window whose inner square (side
    ``inner_side`` px) is centred at (cx, cy)."""
    crop_px = (cells + 2) * sbin  # hog32 drops one border cell on each side
    side = inner_side * (cells + 2) / (cells - 2)
    crop = square_crop(image, cx, cy, side, crop_px)
    return hog32(crop, sbin, 0, 0).reshape(-1)


def _random_negatives(rng: np.random.Generator, image: np.ndarray,
                      boxes: np.ndarray, count: int) -> list[np.ndarray]:
    h, w = image.shape[:2]
    out = []
    for _ in range(count * 3):
        if len(out) >= count:
            break
        side = math.exp(rng.uniform(math.log(MIN_SIDE), math.log(min(MAX_SIDE, h))))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        square = np.float32([[cx - side / 2, cy - side / 2, cx + side / 2,
                              cy + side / 2]])
        if len(boxes) and iou_matrix(square, boxes).max() >= NEGATIVE_IOU:
            continue
        out.append(window_features(image, cx, cy, side))
    return out


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int
         ) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=c, class_weight="balanced", max_iter=3000, random_state=seed)
    svm.fit(x, y)
    return svm.coef_[1:].astype(np.float32), svm.intercept_[1:].astype(np.float32)


def _save(out: Path, coef: np.ndarray, bias: np.ndarray, names: list[str],
          train_seconds: float) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, filters=coef.reshape(len(names), CELLS, CELLS, 32),
                        bias=bias, class_names=np.array(names), sbin=SBIN,
                        scales=np.array(pyramid_scales(), np.float32),
                        train_seconds=train_seconds)
    return out


def train_hog(dataset, out: Path, seed: int = 0, negatives_per_image: int = 10,
              rounds: int = 1, mine_images: int = 80, hard_per_image: int = 20,
              svm_c: float = 0.01) -> Path:
    """Fit the per-class linear SVMs on ``dataset`` (hard negatives from its first
    ``mine_images`` images) and write the model to ``out`` (``.npz``)."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    names = list(dataset.class_names)
    feats, labels = [], []
    for i in tqdm(range(len(dataset)), desc="hog windows"):
        s = dataset[i]
        for box, cid in zip(s.boxes, s.class_ids, strict=True):
            side = float(max(box[2] - box[0], box[3] - box[1]))
            if side < 6:
                continue
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            for flipped in (False, True):
                img = s.image[:, ::-1] if flipped else s.image
                x = s.image.shape[1] - cx if flipped else cx
                feats.append(window_features(img, x, cy, side))
                labels.append(int(cid) + 1)
        neg = _random_negatives(rng, s.image, s.boxes, negatives_per_image)
        feats += neg
        labels += [0] * len(neg)
    x, y = np.stack(feats), np.asarray(labels)
    log.info("hog: %d windows, %d positive", len(y), int((y > 0).sum()))
    coef, bias = _fit(x, y, svm_c, seed)
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            detector = HogSvmDetector(
                HogSvmModel(_save(Path(tmp) / "m.npz", coef, bias, names, 0)))
            hard = []
            for i in tqdm(range(min(mine_images, len(dataset))),
                          desc=f"hard negatives {r + 1}"):
                s = dataset[i]
                boxes, margins, _ = detector.detect_raw(s.image, threshold=-1.0)
                if len(s.boxes) and len(boxes):
                    boxes_ok = iou_matrix(boxes, s.boxes).max(1) < NEGATIVE_IOU
                    boxes, margins = boxes[boxes_ok], margins[boxes_ok]
                for b in boxes[np.argsort(-margins)[:hard_per_image]]:
                    hard.append(window_features(s.image, (b[0] + b[2]) / 2,
                                                (b[1] + b[3]) / 2, b[2] - b[0]))
        log.info("hog round %d: %d hard negatives", r + 1, len(hard))
        if not hard:
            break
        x = np.concatenate([x, np.stack(hard)])
        y = np.concatenate([y, np.zeros(len(hard), np.int64)])
        coef, bias = _fit(x, y, svm_c, seed)
    seconds = round(time.perf_counter() - start, 1)
    log.info("hog trained in %.0f s", seconds)
    return _save(out, coef, bias, names, seconds)
