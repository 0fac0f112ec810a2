"""Step 3, Dalal & Triggs on the shapes classes: HOG + linear SVM, sliding window.

One linear SVM per class (one-vs-rest, background included) scores a window of
``cells`` x ``cells`` HOG cells; the window slides over every cell of a HOG
pyramid, so a filter response map per level is one correlation. The features are
Felzenszwalb's 32-d HOG cells (``engines.lineage.dpm.hog32``: the same
block-normalised, clipped orientation histograms, projected), so this is DPM's
root filter without parts. The window holds the object in its inner
``cells - 2`` cells (a one-cell margin of context, as Dalal & Triggs' 64x128
window holds a 48x96 person); the reported box is that inner square.

The model file is a ``.npz``: ``filters`` (C, cells, cells, 32), ``bias`` (C,),
``class_names``, ``sbin``, ``scales`` (image resize factors of the pyramid).
Trained by ``python -m training lineage train --model hog`` (hard-negative
mining included); OpenCV's pretrained people detector stays ``hog``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.boxes import nms
from core.meta import ModelError
from core.types import Detections
from engines.base import Detector, Prepared
from engines.lineage.dpm import correlate, hog32


class HogSvmModel:
    """The arrays of a trained model file (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                self.filters = f["filters"].astype(np.float32)
                self.bias = f["bias"].astype(np.float32)
                self.class_names = [str(n) for n in f["class_names"]]
                self.sbin = int(f["sbin"])
                self.scales = [float(s) for s in f["scales"]]
                self.train_seconds = (float(f["train_seconds"])
                                      if "train_seconds" in f.files else None)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: not a HOG + SVM model file ({exc})") from exc
        c, fh, fw, d = self.filters.shape
        if fh != fw or d != 32 or len(self.bias) != c or len(self.class_names) != c:
            raise ModelError(f"{path}: filters {self.filters.shape}, bias "
                             f"{self.bias.shape} and {len(self.class_names)} names "
                             "do not fit together")
        self.cells = fh


def window_boxes(ys: np.ndarray, xs: np.ndarray, cells: int, sbin: int,
                 scale: float) -> np.ndarray:
    """Inner boxes (N, 4) xyxy original px of windows at HOG output cells (y, x).

    ``hog32`` drops the border cell, so output cell i starts at pixel
    (i + 1) * sbin; the inner square skips one more cell on each side."""
    x1 = (xs + 2) * sbin / scale
    y1 = (ys + 2) * sbin / scale
    side = (cells - 2) * sbin / scale
    return np.stack([x1, y1, x1 + side, y1 + side], 1).astype(np.float32)


class HogSvmDetector(Detector):
    """Sliding-window HOG + linear SVM over the model's pyramid; boxes xyxy px.

    ``model``: the trained arrays (``HogSvmModel``, read by ``engines.build``).
    ``score_threshold`` is on the SVM margin (0 = the decision boundary; lower
    keeps more candidates for ranking); reported scores are logistic(margin), and
    ``conf`` (the pipeline's ``--conf``), when given, replaces it as a threshold
    on those, so it must lie strictly between 0 and 1.
    """

    options = ("conf", "iou", "max_det")
    uses_backend = False
    conf_open_interval = True

    def __init__(self, model: HogSvmModel, *, score_threshold: float = -0.5,
                 conf: float | None = None, iou: float = 0.3, max_det: int = 100,
                 classes: frozenset[int] | None = None) -> None:
        if conf is not None:
            score_threshold = float(np.log(conf / (1 - conf)))
        self.model = model
        self.class_names = list(model.class_names)
        self.train_seconds = model.train_seconds
        self.score_threshold = score_threshold
        self.conf = conf
        self.iou = iou
        self.max_det = max_det
        self.classes = classes

    def prepare(self, image: np.ndarray) -> Prepared:
        return Prepared.whole(image)

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        out = []
        for p in batch:
            boxes, margins, cls = self.detect_raw(p.input)
            h, w = p.input.shape[:2]
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)  # windows can overhang
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)  # by a rounding
            keep = nms(boxes, margins, cls, self.iou, self.max_det)
            scores = 1 / (1 + np.exp(-margins[keep]))
            out.append(Detections(boxes[keep], scores.astype(np.float32),
                                  cls[keep].astype(np.int32)))
        return out

    def detect_raw(self, image: np.ndarray, threshold: float | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every window of every level with margin >= ``threshold``: boxes (N, 4)
        xyxy px, margins (N,), class ids (N,)."""
        m = self.model
        thr = self.score_threshold if threshold is None else threshold
        h, w = image.shape[:2]
        boxes, margins, classes = [], [], []
        for s in m.scales:
            size = (round(w * s), round(h * s))
            if min(size) < (m.cells + 2) * m.sbin:
                continue
            level = cv2.resize(image, size, interpolation=cv2.INTER_AREA if s < 1
                               else cv2.INTER_LINEAR)
            resp = correlate(hog32(level, m.sbin, 0, 0), m.filters)
            resp += m.bias[:, None, None]
            c, ys, xs = np.nonzero(resp >= thr)
            boxes.append(window_boxes(ys, xs, m.cells, m.sbin, s))
            margins.append(resp[c, ys, xs])
            classes.append(c)
        if not boxes:
            return (np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                    np.zeros(0, np.int64))
        return np.concatenate(boxes), np.concatenate(margins), np.concatenate(classes)
