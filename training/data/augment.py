"""Training augmentations in NumPy/OpenCV that move boxes exactly with the pixels.

Boxes are (N, 4) float32 xyxy in pixel-edge coordinates (a box ``[0, 0, 1, 1]``
covers exactly pixel (0, 0)); class ids (N,) int64 follow the boxes they label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import cv2
import numpy as np

from core.boxes import box_area
from core.image import letterbox
from training.data.datasets import Sample

PAD_VALUE = 114  # the grey letterbox also uses


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right; ``x -> width - x`` (x1 and x2 swap roles)."""
    w = image.shape[1]
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = w - out[:, [2, 0]]
    return np.ascontiguousarray(image[:, ::-1]), out


def _clip_and_filter(boxes: np.ndarray, class_ids: np.ndarray,
                     region: tuple[float, float, float, float], min_area_frac: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to ``region`` (x1 y1 x2 y2); drop those keeping less than
    ``min_area_frac`` of their area or thinner than 2 px."""
    before = box_area(boxes)
    out = boxes.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(region[0], region[2])
    out[:, [1, 3]] = out[:, [1, 3]].clip(region[1], region[3])
    wh = out[:, 2:] - out[:, :2]
    keep = ((box_area(out) >= min_area_frac * np.maximum(before, 1e-6)) &
            (wh > 2).all(axis=1))
    return out[keep], class_ids[keep]


def random_affine(rng: np.random.Generator, image: np.ndarray, boxes: np.ndarray,
                  class_ids: np.ndarray, scale: tuple[float, float] = (0.5, 1.5),
                  translate: float = 0.1, min_area_frac: float = 0.3
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zoom about the centre by ``uniform(*scale)`` and shift by up to
    ``translate`` of each side; same output size, grey fill.

    No rotation or shear, so axis-aligned boxes stay exact. Boxes are clipped to
    the image and dropped when they keep less than ``min_area_frac`` of their area.
    """
    h, w = image.shape[:2]
    s = float(rng.uniform(*scale))
    tx = float(rng.uniform(-translate, translate) * w)
    ty = float(rng.uniform(-translate, translate) * h)
    return affine(image, boxes, class_ids, s, tx, ty, min_area_frac)


def affine(image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, s: float,
           tx: float, ty: float, min_area_frac: float = 0.3
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The deterministic part of ``random_affine``: edge coordinates map as
    ``x' = s * (x - w/2) + w/2 + tx`` (likewise y)."""
    h, w = image.shape[:2]
    bx, by = (1 - s) * w / 2 + tx, (1 - s) * h / 2 + ty
    # warpAffine maps pixel centres (edge - 0.5), so shift the offset to match.
    m = np.array([[s, 0, bx + 0.5 * s - 0.5], [0, s, by + 0.5 * s - 0.5]])
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(PAD_VALUE,) * 3)
    moved = np.asarray(boxes, np.float32).reshape(-1, 4) * s + (bx, by, bx, by)
    moved, ids = _clip_and_filter(moved.astype(np.float32), np.asarray(class_ids),
                                  (0, 0, w, h), min_area_frac)
    return out, moved, ids


def hsv_jitter(rng: np.random.Generator, image: np.ndarray, h: float = 0.015,
               s: float = 0.7, v: float = 0.4) -> np.ndarray:
    """Multiply hue, saturation and value by random gains in ``1 ± (h, s, v)``
    (hue wraps), via lookup tables. Boxes are unchanged."""
    gains = rng.uniform(-1, 1, 3) * (h, s, v) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def mosaic(rng: np.random.Generator, samples: list[Sample], size: tuple[int, int],
           min_area_frac: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tile 4 samples around a random centre into one ``size`` = (H, W) image.

    Each sample is letterboxed to a random fraction (0.5-1.0) of ``size`` and
    placed with a corner at the centre (top-left image's bottom-right corner, and
    so on), so every image keeps the part nearest the centre. Boxes are moved,
    clipped to the visible part and filtered like ``random_affine``.
    """
    if len(samples) != 4:
        raise ValueError(f"mosaic needs 4 samples, got {len(samples)}")
    out_h, out_w = size
    xc = int(rng.uniform(0.25, 0.75) * out_w)
    yc = int(rng.uniform(0.25, 0.75) * out_h)
    canvas = np.full((out_h, out_w, 3), PAD_VALUE, np.uint8)
    all_boxes, all_ids = [], []
    for k, sample in enumerate(samples):
        frac = rng.uniform(0.5, 1.0)
        kh, kw = max(int(out_h * frac), 1), max(int(out_w * frac), 1)
        img, tf = letterbox(sample.image, (kh, kw), PAD_VALUE)
        ox = xc - kw if k in (0, 2) else xc  # top-left corner of the placed image
        oy = yc - kh if k in (0, 1) else yc
        x1, y1 = max(ox, 0), max(oy, 0)
        x2, y2 = min(ox + kw, out_w), min(oy + kh, out_h)
        canvas[y1:y2, x1:x2] = img[y1 - oy:y2 - oy, x1 - ox:x2 - ox]
        moved = tf.to_network(sample.boxes.reshape(-1, 4)) + np.array([ox, oy] * 2)
        b, c = _clip_and_filter(moved.astype(np.float32), sample.class_ids,
                                (x1, y1, x2, y2), min_area_frac)
        all_boxes.append(b)
        all_ids.append(c)
    return (canvas, np.concatenate(all_boxes).astype(np.float32),
            np.concatenate(all_ids).astype(np.int64))


@dataclass
class AugmentConfig:
    """Probabilities and strengths of each augmentation (Ultralytics-like defaults).

    ``mosaic``/``affine``/``hflip``/``hsv``: probability of applying each.
    ``scale``: zoom range of the affine; ``translate``: max shift as a fraction of
    each side; ``hsv_h/s/v``: jitter gains; ``min_area_frac``: boxes keeping less
    of their area after a crop are dropped.
    """

    mosaic: float = 0.5
    affine: float = 0.7
    hflip: float = 0.5
    hsv: float = 0.8
    scale: tuple[float, float] = (0.5, 1.5)
    translate: float = 0.1
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    min_area_frac: float = 0.3

    def __post_init__(self) -> None:
        for name in ("mosaic", "affine", "hflip", "hsv"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"AugmentConfig.{name} is a probability in [0, 1], "
                                 f"got {p}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError("AugmentConfig.scale must be 0 < lo <= hi, got "
                             f"{self.scale}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation (validation): only the letterbox to the output size."""
        return cls(**{f.name: 0.0 for f in fields(cls)
                      if f.name in ("mosaic", "affine", "hflip", "hsv")})


class Augmenter:
    """Turns dataset item ``index`` into a training image of ``size`` = (H, W).

    Order: mosaic (with 3 random other items) or letterbox, then affine, flip and
    HSV jitter, each with its configured probability. Returns the image (H, W, 3)
    uint8 BGR, boxes (N, 4) float32 xyxy in output pixels, class ids (N,) int64.
    """

    def __init__(self, config: AugmentConfig | None = None,
                 size: tuple[int, int] = (640, 640)) -> None:
        self.config = config or AugmentConfig()
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, rng: np.random.Generator, dataset: Sequence[Sample], index: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.config
        sample = dataset[index]
        if len(dataset) > 1 and rng.random() < cfg.mosaic:
            others = rng.integers(0, len(dataset), 3)
            items = [sample, *(dataset[int(i)] for i in others)]
            image, boxes, ids = mosaic(rng, items, self.size, cfg.min_area_frac)
        else:
            image, tf = letterbox(sample.image, self.size, PAD_VALUE)
            boxes, ids = tf.to_network(sample.boxes.reshape(-1, 4)), sample.class_ids
        if rng.random() < cfg.affine:
            image, boxes, ids = random_affine(rng, image, boxes, ids, cfg.scale,
                                              cfg.translate, cfg.min_area_frac)
        if rng.random() < cfg.hflip:
            image, boxes = hflip(image, boxes)
        if rng.random() < cfg.hsv:
            image = hsv_jitter(rng, image, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v)
        return image, boxes.astype(np.float32), np.asarray(ids, np.int64)
