"""Step 4, the deformable part model (Felzenszwalb et al.), INRIA person model.

A root filter (coarse HOG template of the whole person) plus 8 part filters at
twice the resolution, each allowed to move around its anchor at a quadratic
deformation cost; score = bias + root + sum over parts of max(part - cost).
Two mirrored components; a HOG feature pyramid covers scale.

OpenCV-contrib ships this detector (``cv2.dpm``) but its Python binding exposes
no ``create``/``detect``, so this module reads OpenCV's model file
(``models/inriaperson.xml``) and scores it in NumPy: Felzenszwalb's 32-d HOG,
filter responses as one matrix product per filter cell, and the deformation max
(a bounded generalised distance transform) as two separable 1-D passes. It is
the exact (non-cascade) score, so it is slower than OpenCV's star-cascade.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from core.boxes import BoxTransform, nms
from core.meta import ModelError
from core.types import Detections
from engines.base import Detector, Prepared

DEFORM_RADIUS = 4  # a part moves at most this many part-level cells from its anchor
ORIENT_U = np.array([1.0, 0.9397, 0.7660, 0.5, 0.1736, -0.1736, -0.5, -0.7660,
                     -0.9397], np.float32)
ORIENT_V = np.array([0.0, 0.3420, 0.6428, 0.8660, 0.9848, 0.9848, 0.8660, 0.6428,
                     0.3420], np.float32)


def hog32(image: np.ndarray, sbin: int, pad_x: int, pad_y: int) -> np.ndarray:
    """Felzenszwalb's HOG: HxWx3 BGR -> (h, w, 32) float32 cells (18 signed + 9
    unsigned orientations, 4 texture energies, 1 truncation feature that is 1 in
    the ``pad_x``/``pad_y`` padding cells and 0 inside)."""
    img = image.astype(np.float32)
    h, w = img.shape[:2]
    bw, bh = round(w / sbin), round(h / sbin)
    out_h, out_w = max(bh - 2, 0) + 2 * pad_y, max(bw - 2, 0) + 2 * pad_x
    feat = np.zeros((out_h, out_w, 32), np.float32)
    feat[..., 31] = 1
    if bh < 3 or bw < 3:
        return feat
    ys = np.minimum(np.arange(1, bh * sbin - 1), h - 2)
    xs = np.minimum(np.arange(1, bw * sbin - 1), w - 2)
    dy = img[ys + 1][:, xs] - img[ys - 1][:, xs]  # (Y, X, 3)
    dx = img[ys][:, xs + 1] - img[ys][:, xs - 1]
    mag = dx * dx + dy * dy
    ch = np.argmax(mag[..., ::-1], axis=2)  # red first on ties, as OpenCV does
    ch = 2 - ch
    pick = np.take_along_axis
    dx = pick(dx, ch[..., None], 2)[..., 0]
    dy = pick(dy, ch[..., None], 2)[..., 0]
    v = np.sqrt(pick(mag, ch[..., None], 2)[..., 0])
    dots = dx[..., None] * ORIENT_U + dy[..., None] * ORIENT_V
    orient = np.argmax(np.concatenate([dots, -dots], axis=2), axis=2)
    # Bilinear votes into the 4 cells around each pixel.
    yp = (np.arange(1, bh * sbin - 1, dtype=np.float32) + 0.5) / sbin - 0.5
    xp = (np.arange(1, bw * sbin - 1, dtype=np.float32) + 0.5) / sbin - 0.5
    iy, ix = np.floor(yp).astype(np.int64), np.floor(xp).astype(np.int64)
    vy0, vx0 = yp - iy, xp - ix
    hist = np.zeros(bh * bw * 18, np.float32)
    for oy, wy in ((0, 1 - vy0), (1, vy0)):
        for ox, wx in ((0, 1 - vx0), (1, vx0)):
            cy, cx = iy + oy, ix + ox
            ok = ((cy >= 0) & (cy < bh))[:, None] & ((cx >= 0) & (cx < bw))[None]
            idx = ((cy[:, None] * bw + cx[None]) * 18 + orient)[ok]
            hist += np.bincount(idx, (wy[:, None] * wx[None] * v)[ok],
                                minlength=hist.size).astype(np.float32)
    hist = hist.reshape(bh, bw, 18)
    norm = ((hist[..., :9] + hist[..., 9:]) ** 2).sum(2)
    block = norm[:-1, :-1] + norm[1:, :-1] + norm[:-1, 1:] + norm[1:, 1:]
    inv = 1.0 / np.sqrt(block + 1e-4)
    ns = [inv[1:, 1:], inv[:-1, 1:], inv[1:, :-1], inv[:-1, :-1]]  # n1..n4
    cells = hist[1:-1, 1:-1]
    unsigned = cells[..., :9] + cells[..., 9:]
    clipped = [np.minimum(cells * n[..., None], 0.2) for n in ns]
    inner = np.concatenate([
        0.5 * sum(clipped),
        0.5 * sum(np.minimum(unsigned * n[..., None], 0.2) for n in ns),
        0.2357 * np.stack([c.sum(2) for c in clipped], axis=2),
        np.zeros((*cells.shape[:2], 1), np.float32)], axis=2)
    feat[pad_y:out_h - pad_y, pad_x:out_w - pad_x] = inner
    return feat


def correlate(feat: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """(H, W, C) features x (F, fh, fw, C) filters -> (F, H-fh+1, W-fw+1) valid
    cross-correlation, one matrix product per filter cell."""
    n, fh, fw, _ = filters.shape
    oh, ow = feat.shape[0] - fh + 1, feat.shape[1] - fw + 1
    if oh <= 0 or ow <= 0:
        return np.full((n, max(oh, 0), max(ow, 0)), -np.inf, np.float32)
    out = np.zeros((oh, ow, n), np.float32)
    for y in range(fh):
        for x in range(fw):
            out += feat[y:y + oh, x:x + ow] @ filters[:, y, x, :].T
    return out.transpose(2, 0, 1)


def deformation_max(scores: np.ndarray, deform: np.ndarray, radius: int
                    ) -> np.ndarray:
    """max over |dx|, |dy| <= radius of score(y - dy, x - dx) - cost(dx, dy), with
    cost = d0 dx^2 + d1 dx + d2 dy^2 + d3 dy (separable: two 1-D passes)."""
    d = np.arange(-radius, radius + 1)
    pad = np.pad(scores, radius, constant_values=-np.inf)
    h, w = scores.shape
    cost_x = -deform[0] * d * d - deform[1] * d
    cost_y = -deform[2] * d * d - deform[3] * d
    # placed x = anchor x - d (OpenCV's delta = anchor - placed)
    row = np.max([pad[radius:radius + h, radius - k:radius - k + w] + cost_x[i]
                  for i, k in enumerate(d)], axis=0)
    pad = np.pad(row, ((radius, radius), (0, 0)), constant_values=-np.inf)
    return np.max([pad[radius - k:radius - k + h] + cost_y[i]
                   for i, k in enumerate(d)], axis=0).astype(np.float32)


class DPMModel:
    """The parameters of an OpenCV DPM cascade model file (full filters only)."""

    def __init__(self, path: str | Path) -> None:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        if not fs.isOpened() or fs.getNode("RootFilters").empty():
            raise ModelError(f"{path}: not an OpenCV DPM model file")

        def seq(node: cv2.FileNode) -> list[float]:
            return [node.at(i).real() for i in range(node.size())]

        def mats(name: str) -> list[np.ndarray]:
            node = fs.getNode(name)
            return [node.at(i).mat() for i in range(node.size())]

        self.sbin = int(fs.getNode("SBin").real())
        self.interval = int(fs.getNode("Interval").real())
        self.pad_x = int(fs.getNode("MaxSizeX").real())
        self.pad_y = int(fs.getNode("MaxSizeY").real())
        self.bias = seq(fs.getNode("Bias"))
        self.num_parts = [int(v) for v in seq(fs.getNode("NumParts"))]
        loc = fs.getNode("LocationWeight")
        self.location = [seq(loc.at(i)) for i in range(loc.size())]
        nf = int(fs.getNode("NumFeatures").real())
        self.roots = [m.reshape(m.shape[0], -1, nf).astype(np.float32)
                      for m in mats("RootFilters")]
        parts = mats("PartFilters")
        self.parts = np.stack([m.reshape(m.shape[0], -1, nf) for m in parts]).astype(
            np.float32)
        anchors, defs = fs.getNode("Anchor"), fs.getNode("Deformation")
        self.anchors = np.array([seq(anchors.at(i)) for i in range(anchors.size())],
                                np.int64)
        self.defs = np.array([seq(defs.at(i)) for i in range(defs.size())],
                             np.float32)
        fs.release()


class DPMDetector(Detector):
    """Person detector: DPM over a HOG pyramid; class 0 = person.

    ``model``: the parameters (``DPMModel``, read by ``engines.build``).
    ``score_threshold`` on the raw DPM score (the model's own threshold is
    -0.5); reported scores are logistic(raw), and ``conf`` (the pipeline's
    ``--conf``), when given, replaces it as a threshold on those, so it must lie
    strictly between 0 and 1.
    The root window is 120 px tall (person + context), so people under ~100 px
    need ``upscale`` > 1 (the frame is resized by ``min(upscale, max_width /
    width)`` first).
    """

    options = ("conf", "iou", "max_det")
    uses_backend = False
    conf_open_interval = True
    class_names = ["person"]

    def __init__(self, model: DPMModel, *, score_threshold: float = -0.5,
                 conf: float | None = None, iou: float = 0.3, max_det: int = 100,
                 classes: frozenset[int] | None = None, max_width: int = 1280,
                 upscale: float = 1.0) -> None:
        if max_width < 64:
            raise ValueError(f"max_width must be >= 64, got {max_width}")
        if upscale <= 0:
            raise ValueError(f"upscale must be > 0, got {upscale}")
        if conf is not None:
            score_threshold = math.log(conf / (1 - conf))
        self.upscale = upscale
        self.model = model
        self.score_threshold = score_threshold
        self.conf = conf
        self.iou = iou
        self.max_width = max_width
        self.max_det = max_det
        self.classes = classes

    def prepare(self, image: np.ndarray) -> Prepared:
        h, w = image.shape[:2]
        factor = min(self.upscale, self.max_width / w)
        if factor != 1.0:
            size = (round(w * factor), round(h * factor))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA
                               if factor < 1 else cv2.INTER_LINEAR)
        return Prepared(image, BoxTransform(factor, factor, 0.0, 0.0, w, h))

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        out = []
        for p in batch:
            boxes, raw = self.detect_raw(p.input)
            keep = raw >= self.score_threshold
            boxes, raw = boxes[keep], raw[keep]
            order = nms(boxes, raw, None, self.iou, self.max_det)
            scores = 1 / (1 + np.exp(-raw[order]))
            out.append(Detections(p.transform.to_original(boxes[order]), scores,
                                  np.zeros(len(order), np.int32)))
        return out

    def detect_raw(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All root placements of both components: xyxy (N, 4), raw score (N,)."""
        m = self.model
        sf = 2.0 ** (1.0 / m.interval)
        h, w = image.shape[:2]
        levels = 1 + math.floor(math.log(min(w, h) / (m.sbin * 5.0)) / math.log(sf))
        if levels < m.interval:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        pad = (m.pad_x + 1, m.pad_y + 1)
        scales = [sf ** -j for j in range(levels)]
        resized = [image if j == 0 else cv2.resize(
            image, (max(1, round(w * s)), max(1, round(h * s))),
            interpolation=cv2.INTER_AREA) for j, s in enumerate(scales)]
        coarse = [hog32(im, m.sbin, *pad) for im in resized]
        boxes, scores = [], []
        for j in range(levels):
            # parts live at twice the root's resolution
            fine = (coarse[j - m.interval] if j >= m.interval
                    else hog32(resized[j], m.sbin // 2, *pad))
            loc_w = 1 if j < m.interval else (2 if j < 5 * m.interval else None)
            part_scores = correlate(fine, m.parts)
            first = 0
            for comp, root in enumerate(m.roots):
                n = m.num_parts[comp]
                ids = np.arange(first, first + n)
                first += n
                b, s = self._score_level(coarse[j], part_scores, root, ids, comp,
                                         loc_w, m.sbin / scales[j])
                boxes.append(b)
                scores.append(s)
        return np.concatenate(boxes), np.concatenate(scores)

    def _score_level(self, coarse: np.ndarray, part_scores: np.ndarray,
                     root: np.ndarray, ids: np.ndarray, comp: int,
                     loc_w: int | None, cell: float
                     ) -> tuple[np.ndarray, np.ndarray]:
        m = self.model
        score = correlate(coarse, root[None])[0]
        rows, cols = score.shape
        mx, my = math.ceil(m.pad_x / 2), math.ceil(m.pad_y / 2)
        if rows <= 2 * my or cols <= 2 * mx:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        ry, rx = np.mgrid[my:rows - my, mx:cols - mx]
        total = score[ry, rx] + m.bias[comp] + (
            m.location[comp][loc_w] if loc_w is not None else 0.0)
        for pid in ids:
            dt = deformation_max(part_scores[pid], m.defs[pid], DEFORM_RADIUS)
            py = 2 * ry + m.anchors[pid, 1] - m.pad_y
            px = 2 * rx + m.anchors[pid, 0] - m.pad_x
            ok = (py >= 0) & (py < dt.shape[0]) & (px >= 0) & (px < dt.shape[1])
            vals = np.full(py.shape, -np.inf, np.float32)
            vals[ok] = dt[py[ok], px[ok]]
            total = total + vals
        keep = np.isfinite(total) & (total >= min(self.score_threshold, -1.0))
        rh, rw = root.shape[:2]
        x1 = (rx[keep] - m.pad_x) * cell
        y1 = (ry[keep] - m.pad_y) * cell
        boxes = np.stack([x1, y1, x1 + rw * cell - 1, y1 + rh * cell - 1], 1)
        return boxes.astype(np.float32), total[keep].astype(np.float32)
