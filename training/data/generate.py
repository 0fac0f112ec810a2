"""Procedural labelled images and videos: shapes on cluttered backgrounds.

Backgrounds are procedural (gradients, blobs, clutter) or, with ``backgrounds``,
random crops of photographs from a folder (``--backgrounds DIR``), so detectors
meet textures and edges no generator of ours draws.

Every label is exact because it is computed from the pixels each object painted:
an image box is the visible extent (after later objects cover earlier ones and
after clipping to the image); a video ground-truth box is the object's whole extent
clipped to the frame (the MOTChallenge convention), with ``visibility`` = the
fraction of the object's pixels that are seen. Images and videos share one
renderer, so detectors trained on generated images work on generated videos.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from core.formats import yolo_label_lines

log = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("disc", "square", "triangle", "star")
TEXTURES = ("solid", "stripes", "noise")
SHIFT = 4  # OpenCV sub-pixel bits: shapes move smoothly between whole pixels
MIN_SIZE, MAX_SIZE = 16.0, 120.0  # object extent in px at 360 px image height
MIN_VISIBLE = 0.5  # scenes reject placements that leave an object less visible
MIN_CONTRAST = 90  # L1 distance (sum over BGR) between object and background


@dataclass
class Shape:
    """One object to paint: class, pose, size and texture (image pixels)."""

    class_id: int
    cx: float
    cy: float
    radius: float  # half the extent of the unrotated shape
    angle: float  # radians
    aspect: float  # width / height of discs and squares
    texture: str
    colors: np.ndarray  # (2, 3) uint8 BGR: main colour, stripe colour
    period: float  # stripe period in px
    stripe_angle: float
    noise: np.ndarray  # (K, K, 3) int16 fixed noise patch, moves with the object

    def local_mask(self) -> tuple[np.ndarray, int, int]:
        """Unclipped uint8 mask of the shape on a local canvas, and its top-left."""
        reach = math.ceil(self.radius * 1.2) + 2
        x0, y0 = math.floor(self.cx) - reach, math.floor(self.cy) - reach
        side = 2 * reach + 1
        mask = np.zeros((side, side), np.uint8)
        lx, ly = self.cx - x0, self.cy - y0
        scale = 1 << SHIFT
        if self.class_id == 0:  # disc (slightly elliptic)
            axes = (round(self.radius * math.sqrt(self.aspect) * scale),
                    round(self.radius / math.sqrt(self.aspect) * scale))
            cv2.ellipse(mask, (round(lx * scale), round(ly * scale)), axes,
                        math.degrees(self.angle), 0, 360, 1, -1, cv2.LINE_8, SHIFT)
        else:
            pts = self.polygon(lx, ly)
            cv2.fillPoly(mask, [np.round(pts * scale).astype(np.int32)], 1,
                         cv2.LINE_8, SHIFT)
        return mask, x0, y0

    def polygon(self, lx: float, ly: float) -> np.ndarray:
        """(K, 2) vertices of a square, triangle or star around (lx, ly)."""
        if self.class_id == 1:
            hw = self.radius * math.sqrt(self.aspect) / math.sqrt(2)
            hh = self.radius / math.sqrt(self.aspect) / math.sqrt(2)
            pts = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
        else:
            k = 3 if self.class_id == 2 else 10
            t = np.arange(k) * (2 * math.pi / k) - math.pi / 2
            r = np.full(k, self.radius)
            if self.class_id == 3:
                r[1::2] *= 0.45
            pts = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
        c, s = math.cos(self.angle), math.sin(self.angle)
        return pts @ np.array([[c, s], [-s, c]]) + (lx, ly)

    def texture_patch(self, side: int, x0: int, y0: int) -> np.ndarray:
        """(side, side, 3) uint8 texture in the object's own frame."""
        if self.texture == "solid":
            return np.broadcast_to(self.colors[0], (side, side, 3))
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
        dx, dy = xx + x0 - self.cx, yy + y0 - self.cy
        if self.texture == "stripes":
            a = self.stripe_angle + self.angle
            phase = (dx * math.cos(a) + dy * math.sin(a)) / self.period
            on = (np.floor(phase) % 2).astype(bool)
            return np.where(on[..., None], self.colors[1], self.colors[0])
        k = len(self.noise)
        iy = np.clip(dy.astype(np.int32) + k // 2, 0, k - 1)
        ix = np.clip(dx.astype(np.int32) + k // 2, 0, k - 1)
        return np.clip(self.colors[0].astype(np.int16) + self.noise[iy, ix], 0,
                       255).astype(np.uint8)


def paste(image: np.ndarray, shape: Shape) -> tuple[np.ndarray, int]:
    """Paint ``shape`` on ``image`` in place.

    Returns the (H, W) bool mask of pixels it painted (clipped to the image) and
    the shape's full pixel count (including any part outside the image).
    """
    h, w = image.shape[:2]
    mask, x0, y0 = shape.local_mask()
    side = mask.shape[0]
    full = int(mask.sum())
    painted = np.zeros((h, w), bool)
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if ax0 >= ax1 or ay0 >= ay1:
        return painted, full
    local = mask[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0].astype(bool)
    tex = shape.texture_patch(side, x0, y0)[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    region = image[ay0:ay1, ax0:ax1]
    region[local] = tex[local]
    painted[ay0:ay1, ax0:ax1] = local
    return painted, full


def mask_boxes(masks: list[np.ndarray]) -> np.ndarray:
    """(N, 4) float32 xyxy pixel-edge extents of (H, W) bool masks; empty -> zeros."""
    out = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        cols, rows = np.flatnonzero(m.any(0)), np.flatnonzero(m.any(1))
        if len(cols):
            out[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return out


def _random_color(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(60, 256),
                      rng.integers(60, 256)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]


def random_shape(rng: np.random.Generator, size: tuple[int, int],
                 class_id: int | None = None, center: tuple[float, float] | None = None
                 ) -> Shape:
    """A random object of any class, size scaled with the image height."""
    h, w = size
    scale = h / 360
    extent = math.exp(rng.uniform(math.log(MIN_SIZE), math.log(MAX_SIZE))) * scale
    cid = int(rng.integers(len(CLASS_NAMES))) if class_id is None else class_id
    cx, cy = center if center is not None else (rng.uniform(0, w), rng.uniform(0, h))
    k = int(extent) + 8
    return Shape(
        class_id=cid, cx=float(cx), cy=float(cy), radius=extent / 2,
        angle=float(rng.uniform(0, 2 * math.pi)),
        aspect=float(rng.uniform(0.8, 1.25)),
        texture=str(rng.choice(TEXTURES)),
        colors=np.stack([_random_color(rng), _random_color(rng)]),
        period=float(rng.uniform(3, 10) * max(scale, 0.5)),
        stripe_angle=float(rng.uniform(0, math.pi)),
        noise=rng.normal(0, rng.uniform(15, 45), (k, k, 3)).astype(np.int16),
    )


def _ensure_contrast(shape: Shape, background: np.ndarray) -> None:
    """Invert the object's colours where they would vanish into the background."""
    h, w = background.shape[:2]
    r = int(shape.radius)
    x0, y0 = int(np.clip(shape.cx - r, 0, w - 1)), int(np.clip(shape.cy - r, 0, h - 1))
    x1, y1 = int(np.clip(shape.cx + r + 1, x0 + 1, w)), int(np.clip(shape.cy + r + 1,
                                                                     y0 + 1, h))
    mean = background[y0:y1, x0:x1].reshape(-1, 3).mean(0)
    if np.abs(shape.colors[0] - mean).sum() < MIN_CONTRAST:
        shape.colors = (255 - shape.colors).astype(np.uint8)
        if np.abs(shape.colors[0] - mean).sum() < MIN_CONTRAST:  # mid-grey background
            shape.colors[0] = 0 if mean.mean() > 127 else 255


def render_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8: a gradient or blotchy noise, fine grain, and clutter that is not
    an object (lines, rings, outlines, blurred blobs)."""
    h, w = size
    sh, sw = max(h // 4, 2), max(w // 4, 2)  # smooth layers are drawn small
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if rng.random() < 0.5:
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        t = xx * math.cos(a) / sw + yy * math.sin(a) / sh
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    else:
        small = rng.random((int(rng.integers(2, 7)), int(rng.integers(3, 10))))
        t = cv2.resize(small.astype(np.float32), (sw, sh),
                       interpolation=cv2.INTER_CUBIC).clip(0, 1)
    low = (c0 + (c1 - c0) * t[..., None]).astype(np.float32)
    for _ in range(int(rng.integers(2, 10))):  # blurred blobs
        blob = np.zeros((sh, sw), np.float32)
        center = (int(rng.integers(0, sw)), int(rng.integers(0, sh)))
        cv2.circle(blob, center, int(rng.integers(3, max(sh // 3, 4))), 1.0, -1)
        alpha = cv2.GaussianBlur(blob, (0, 0), sh / 30 + 1)[..., None] * 0.4
        low = low * (1 - alpha) + _random_color(rng).astype(np.float32) * alpha
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    img += rng.normal(0, rng.uniform(2, 14), (h, w, 3)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 15))):  # thin, non-filled clutter
        color = tuple(int(c) for c in _random_color(rng))
        thick = int(rng.integers(1, 3))
        p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        kind = rng.integers(4)
        if kind == 0:
            q = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p, q, color, thick, cv2.LINE_AA)
        elif kind == 1:
            cv2.ellipse(img, p, (int(rng.integers(5, 60)), int(rng.integers(5, 60))),
                        float(rng.uniform(0, 360)), 0, float(rng.uniform(90, 300)),
                        color, thick, cv2.LINE_AA)
        elif kind == 2:
            q = (p[0] + int(rng.integers(-80, 80)), p[1] + int(rng.integers(-80, 80)))
            cv2.rectangle(img, p, q, color, thick, cv2.LINE_AA)
        else:
            pts = rng.integers(0, (w, h), (int(rng.integers(3, 7)), 2))
            cv2.polylines(img, [pts.astype(np.int32)], False, color, thick, cv2.LINE_AA)
    return img


PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MIN_PHOTO_SIDE = 64  # smaller images are icons, not scenes


def load_backgrounds(folder: str | Path) -> list[np.ndarray]:
    """Every readable photograph (BGR uint8) under ``folder``, sorted by path.

    Files smaller than ``MIN_PHOTO_SIDE`` on a side are skipped; an empty result
    is an error naming the folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"backgrounds folder {root} does not exist")
    photos = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None and min(image.shape[:2]) >= MIN_PHOTO_SIDE:
            photos.append(image)
    if not photos:
        raise ValueError(f"{root}: no photographs ({', '.join(PHOTO_SUFFIXES)}) of "
                         f"at least {MIN_PHOTO_SIDE} px")
    log.info("%d background photographs from %s", len(photos), root)
    return photos


def photo_background(rng: np.random.Generator, size: tuple[int, int],
                     photos: list[np.ndarray]) -> np.ndarray:
    """HxWx3 uint8: a random crop of a random photograph (random scale, flip,
    brightness), resized to ``size``."""
    h, w = size
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    aspect = w / h
    # the largest crop of the output's aspect, then shrunk by up to 2x
    ch = min(ph, pw / aspect) * rng.uniform(0.5, 1.0)
    cw = ch * aspect
    y0, x0 = rng.uniform(0, ph - ch), rng.uniform(0, pw - cw)
    crop = photo[int(y0):int(y0 + ch), int(x0):int(x0 + cw)]
    img = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    gain = rng.uniform(0.7, 1.3)
    return np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, size: tuple[int, int] = (360, 640),
                 backgrounds: list[np.ndarray] | None = None,
                 max_objects: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One labelled image, on a procedural background or a crop of one of
    ``backgrounds`` (photographs), with 1..``max_objects`` objects.

    Returns the HxWx3 uint8 BGR image, boxes (N, 4) float32 xyxy pixels (the
    visible extent of each object, clipped to the image) and class_ids (N,) int64.
    Objects may overlap or leave the image, but each keeps at least
    ``MIN_VISIBLE`` of its pixels visible.
    """
    image = (photo_background(rng, size, backgrounds) if backgrounds
             else render_background(rng, size))
    visible: list[np.ndarray] = []
    areas: list[int] = []
    classes: list[int] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _try in range(20):
            shape = random_shape(rng, size)
            _ensure_contrast(shape, image)
            trial = image.copy()
            painted, full = paste(trial, shape)
            left = [int((v & ~painted).sum()) for v in visible]
            if painted.sum() >= MIN_VISIBLE * full and all(
                    n >= MIN_VISIBLE * a for n, a in zip(left, areas, strict=True)):
                image = trial
                visible = [v & ~painted for v in visible] + [painted]
                areas.append(full)
                classes.append(shape.class_id)
                break
    grain = rng.uniform(0, 5)
    if grain > 1:
        image = np.clip(image + rng.normal(0, grain, image.shape), 0, 255).astype(
            np.uint8)
    return image, mask_boxes(visible), np.asarray(classes, np.int64)


def generate_dataset(out_dir: str | Path, n_train: int, n_val: int,
                     size: tuple[int, int] = (360, 640), seed: int = 0,
                     coco: bool = False, backgrounds: str | Path | None = None,
                     max_objects: int = 8) -> Path:
    """Write a YOLO-format dataset (Ultralytics layout); returns ``data.yaml``.

    ``backgrounds``: a folder of photographs to draw the objects over (see
    ``load_backgrounds``); ``max_objects``: objects per image are 1..this (1
    gives the single-object images localization is scored on).

    ``images/{train,val}/NNNNNN.jpg``, ``labels/{train,val}/NNNNNN.txt`` (``class
    cx cy w h`` normalised), ``data.yaml``; with ``coco`` also
    ``annotations/{train,val}.json`` (xywh pixels, category ids 1..C, image and
    annotation ids from 1). Deterministic for a seed.
    """
    import json

    import yaml

    if n_train < 0 or n_val < 0:
        raise ValueError(f"image counts must be >= 0, got train={n_train} val={n_val}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    photos = load_backgrounds(backgrounds) if backgrounds is not None else None
    out = Path(out_dir)
    for split, n, split_seed in (("train", n_train, 0), ("val", n_val, 1)):
        rng = np.random.default_rng([seed, split_seed])
        old = list((out / "images" / split).glob("*.jpg"))
        if len(old) > n:  # stale images would silently join the dataset
            raise ValueError(f"{out / 'images' / split} already holds {len(old)} "
                             f"images (> {n}); use an empty folder")
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in tqdm(range(n), desc=f"generate {split}", disable=n < 50):
            image, boxes, class_ids = render_scene(rng, size, photos, max_objects)
            name = f"{i:06d}"
            cv2.imwrite(str(out / "images" / split / f"{name}.jpg"), image,
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
            (out / "labels" / split / f"{name}.txt").write_text(
                yolo_label_lines(boxes, class_ids, size, spec=".6f"))
            images.append({"id": i + 1, "file_name": f"{name}.jpg",
                           "height": size[0], "width": size[1]})
            for (x1, y1, x2, y2), c in zip(boxes.tolist(), class_ids.tolist(),
                                           strict=True):
                annotations.append({
                    "id": len(annotations) + 1, "image_id": i + 1,
                    "category_id": c + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        if coco:
            (out / "annotations").mkdir(exist_ok=True)
            categories = [{"id": i + 1, "name": n} for i, n in enumerate(CLASS_NAMES)]
            (out / "annotations" / f"{split}.json").write_text(json.dumps(
                {"images": images, "annotations": annotations,
                 "categories": categories}))
    data = {"path": str(out.resolve()), "train": "images/train", "val": "images/val",
            "names": dict(enumerate(CLASS_NAMES))}
    yaml_path = out / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))
    log.info("wrote %d train + %d val images to %s", n_train, n_val, out)
    return yaml_path


@dataclass
class _Mover:
    """A shape with a life in the video: constant speed, slowly turning heading."""

    track_id: int
    shape: Shape
    speed: float
    heading: float
    turn: float
    spin: float
    seen: bool = False  # has been inside the frame at least once

    def step(self, rng: np.random.Generator) -> None:
        self.turn = float(np.clip(self.turn + rng.normal(0, 0.004), -0.03, 0.03))
        self.heading += self.turn
        self.shape.cx += self.speed * math.cos(self.heading)
        self.shape.cy += self.speed * math.sin(self.heading)
        self.shape.angle += self.spin


def _spawn(rng: np.random.Generator, track_id: int, background: np.ndarray,
           inside: bool, others: list[_Mover]) -> _Mover:
    """A new mover, inside the frame apart from ``others``, or just outside an
    edge heading inwards."""
    h, w = background.shape[:2]
    shape = random_shape(rng, (h, w))
    shape.radius = min(shape.radius, 0.6 * MAX_SIZE / 2 * h / 360 + 10)
    if inside:
        for _ in range(50):
            start = (rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h))
            if all(math.dist(start, (o.shape.cx, o.shape.cy)) > 1.3 * (
                    shape.radius + o.shape.radius) for o in others):
                break
    else:  # just outside an edge, so it shows up within a few frames
        edge, along = rng.integers(4), rng.uniform(0.1, 0.9)
        m = shape.radius * 1.2 + 1
        start = [(along * w, -m), (along * w, h + m), (-m, along * h),
                 (w + m, along * h)][edge]
    shape.cx, shape.cy = float(start[0]), float(start[1])
    _ensure_contrast(shape, background)  # once: colours must not flicker
    target = (rng.uniform(0.25 * w, 0.75 * w), rng.uniform(0.25 * h, 0.75 * h))
    heading = math.atan2(target[1] - start[1], target[0] - start[0])
    if inside:
        heading += rng.uniform(-1.0, 1.0)
    return _Mover(track_id, shape, speed=float(rng.uniform(1.5, 4.5) * h / 360),
                  heading=heading, turn=float(rng.normal(0, 0.01)),
                  spin=float(rng.normal(0, 0.02)))


def generate_video(path: str | Path, n_frames: int = 150,
                   size: tuple[int, int] = (360, 640), fps: float = 15.0,
                   seed: int = 0, n_objects: int = 6) -> Path:
    """Write an MP4 (``mp4v``) of moving objects and its MOTChallenge ground truth.

    Objects move at constant speed with slowly turning headings, cross and occlude
    each other (higher ids are drawn on top), enter and leave the frame; a new id
    replaces each that leaves, keeping about ``n_objects`` alive. Ground truth is
    ``<stem>_gt.txt`` beside the video: ``frame,id,x,y,w,h,1,class,visibility`` per
    line, frame 1-based, box = whole object extent clipped to the frame (xywh px),
    class 1-based into ``CLASS_NAMES``, visibility = fraction of the object's
    pixels seen (0 when fully covered; rows exist while any of the object's extent
    is inside the frame). Returns the ground-truth path.
    """
    if n_frames < 1 or n_objects < 1 or fps <= 0:
        raise ValueError(f"need frames >= 1, objects >= 1, fps > 0; got {n_frames}, "
                         f"{n_objects}, {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    rng = np.random.default_rng(seed)
    background = render_background(rng, size)
    next_id = 1
    movers: list[_Mover] = []
    for i in range(n_objects):
        movers.append(_spawn(rng, next_id, background,
                             inside=i < max(1, 2 * n_objects // 3), others=movers))
        next_id += 1
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise ValueError(f"cannot open a video writer for {path}")
    rows: list[str] = []
    try:
        for frame in tqdm(range(1, n_frames + 1), desc="generate video"):
            image = background.copy()
            painted, fulls, extents = [], [], []
            for m in movers:
                mask, full = paste(image, m.shape)
                local, x0, y0 = m.shape.local_mask()
                xs = np.flatnonzero(local.any(0)) + x0
                ys = np.flatnonzero(local.any(1)) + y0
                extents.append((xs[0], ys[0], xs[-1] + 1, ys[-1] + 1))
                painted.append(mask)
                fulls.append(full)
            covered = np.zeros((h, w), bool)
            for k in range(len(movers) - 1, -1, -1):  # top-most first
                seen = int((painted[k] & ~covered).sum())
                covered |= painted[k]
                x1, y1, x2, y2 = extents[k]
                x1, x2 = max(x1, 0), min(x2, w)
                y1, y2 = max(y1, 0), min(y2, h)
                if x2 <= x1 or y2 <= y1:
                    continue
                m = movers[k]
                m.seen = True
                rows.append(f"{frame},{m.track_id},{x1},{y1},{x2 - x1},{y2 - y1},1,"
                            f"{m.shape.class_id + 1},{seen / max(fulls[k], 1):.3f}")
            writer.write(image)
            alive = []
            for m in movers:
                m.step(rng)
                x, y, r = m.shape.cx, m.shape.cy, m.shape.radius * 1.2
                outside = x + r < 0 or x - r > w or y + r < 0 or y - r > h
                far = abs(x - w / 2) > w or abs(y - h / 2) > h
                if not ((outside and m.seen) or far):
                    alive.append(m)
            while len(alive) < n_objects:
                alive.append(_spawn(rng, next_id, background, False, alive))
                next_id += 1
            movers = alive
    finally:
        writer.release()
    rows.sort(key=lambda r: tuple(int(v) for v in r.split(",")[:2]))
    gt_path = path.with_name(f"{path.stem}_gt.txt")
    gt_path.write_text("\n".join(rows) + "\n")
    log.info("wrote %s (%d frames) and %s (%d ids)", path, n_frames, gt_path,
             next_id - 1)
    return gt_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", required=True)
    ds = sub.add_parser("dataset", allow_abbrev=False,
                        help="YOLO-format images + labels (+ COCO json)")
    ds.add_argument("--out", type=Path, required=True, help="dataset folder")
    ds.add_argument("--train", type=int, required=True, help="training images")
    ds.add_argument("--val", type=int, required=True, help="validation images")
    ds.add_argument("--size", type=int, nargs=2, default=(360, 640),
                    metavar=("H", "W"))
    ds.add_argument("--seed", type=int, default=0)
    ds.add_argument("--coco", action="store_true", help="also write COCO json")
    ds.add_argument("--backgrounds", type=Path, default=None, metavar="DIR",
                    help="draw the objects over random crops of the photographs in "
                         "DIR (e.g. /usr/share/doc/opencv-doc/examples/data)")
    ds.add_argument("--max-objects", type=int, default=8,
                    help="objects per image: 1..N (1: single-object images)")
    vid = sub.add_parser("video", allow_abbrev=False,
                         help="MP4 of moving objects + MOT ground truth")
    vid.add_argument("--out", type=Path, required=True, help="FILE.mp4")
    vid.add_argument("--frames", type=int, default=150)
    vid.add_argument("--size", type=int, nargs=2, default=(360, 640),
                     metavar=("H", "W"))
    vid.add_argument("--fps", type=float, default=15.0)
    vid.add_argument("--objects", type=int, default=6, help="objects alive at once")
    vid.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    size = (int(args.size[0]), int(args.size[1]))
    if args.what == "dataset":
        path = generate_dataset(args.out, args.train, args.val, size=size,
                                seed=args.seed, coco=args.coco,
                                backgrounds=args.backgrounds,
                                max_objects=args.max_objects)
    else:
        path = generate_video(args.out, n_frames=args.frames, size=size,
                              fps=args.fps, seed=args.seed, n_objects=args.objects)
    print(path)
    return 0
