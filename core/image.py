"""The one image preprocessing: every detector, the trainers, the exporters and
the int8/TensorRT calibrators call these, so training and inference see the same
inputs (resize mode, padding value, channel order, scaling, normalisation)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from core.boxes import BoxTransform

PAD_VALUE = 114  # letterbox padding grey (YOLO convention)
RESIZE_MODES = ("letterbox", "stretch")


def letterbox(
    image: np.ndarray, size: tuple[int, int], pad_value: int = PAD_VALUE
) -> tuple[np.ndarray, BoxTransform]:
    """Resize keeping aspect ratio into ``size`` = (height, width), pad centred.

    The resize writes straight into the padded canvas (one pass, no border copy).
    """
    h, w = image.shape[:2]
    out_h, out_w = size
    scale = min(out_h / h, out_w / w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    pad_x, pad_y = (out_w - new_w) // 2, (out_h - new_h) // 2
    out = np.full((out_h, out_w, 3), pad_value, np.uint8)
    window = out[pad_y:pad_y + new_h, pad_x:pad_x + new_w]
    if (new_w, new_h) == (w, h):
        window[...] = image
    else:
        cv2.resize(image, (new_w, new_h), dst=window, interpolation=cv2.INTER_LINEAR)
    return out, BoxTransform(new_w / w, new_h / h, pad_x, pad_y, w, h)


def stretch(
    image: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, BoxTransform]:
    """Resize to ``size`` = (height, width) without keeping aspect ratio."""
    h, w = image.shape[:2]
    out_h, out_w = size
    if (out_h, out_w) == (h, w):
        return image, BoxTransform.identity(w, h)
    out = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return out, BoxTransform(out_w / w, out_h / h, 0.0, 0.0, w, h)


def resize(
    image: np.ndarray,
    size: tuple[int, int] | None,
    mode: str = "letterbox",
    pad_value: int = PAD_VALUE,
) -> tuple[np.ndarray, BoxTransform]:
    """``letterbox`` or ``stretch`` to ``size`` (H, W); ``None`` keeps the frame."""
    if size is None:
        h, w = image.shape[:2]
        return image, BoxTransform.identity(w, h)
    if mode == "letterbox":
        return letterbox(image, size, pad_value)
    if mode == "stretch":
        return stretch(image, size)
    raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZE_MODES}")


def _write_rgb_chw(images: np.ndarray, out: np.ndarray,
                   mean: Sequence[float] | None, std: Sequence[float] | None
                   ) -> np.ndarray:
    """``out[..., c, :, :] = (images[..., 2 - c] / 255 - mean[c]) / std[c]`` for
    ``images`` (..., H, W, 3) BGR. One multiply per channel straight into
    ``out``: a third of ``blobFromImage``'s CPU time, which converts the whole
    image before reordering it."""
    if images.ndim < 3 or images.shape[-1] != 3:
        raise ValueError(f"expected H×W×3 BGR images, got shape {images.shape}")
    for c in range(3):
        m = float(mean[c]) if mean is not None else 0.0
        s = float(std[c]) if std is not None else 1.0
        channel = out[..., c, :, :]
        np.multiply(images[..., 2 - c], np.float32(1 / (255 * s)), out=channel)
        if m:
            channel -= np.float32(m / s)
    return out


def to_tensor(
    image: np.ndarray,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """H×W×3 uint8 BGR -> 3×H×W float32 RGB in [0, 1], then ``(x - mean) / std``."""
    h, w = image.shape[:2]
    return _write_rgb_chw(image, np.empty((3, h, w), np.float32), mean, std)


def to_tensors(
    images: Sequence[np.ndarray] | np.ndarray,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """N same-size BGR uint8 images -> N×3×H×W float32 RGB (as ``to_tensor``)."""
    if len(images) == 0:
        return np.zeros((0, 3, 0, 0), np.float32)
    stacked = np.asarray(images) if isinstance(images, np.ndarray) else np.stack(images)
    n, h, w = stacked.shape[:3]
    return _write_rgb_chw(stacked, np.empty((n, 3, h, w), np.float32), mean, std)


def preprocess(
    image: np.ndarray,
    size: tuple[int, int] | None,
    mode: str = "letterbox",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    pad_value: int = PAD_VALUE,
) -> tuple[np.ndarray, BoxTransform]:
    """BGR uint8 frame -> (3×H×W float32 network input, transform back to the frame)."""
    resized, transform = resize(image, size, mode, pad_value)
    return to_tensor(resized, mean, std), transform


def parse_imgsz(value: int | str | Sequence[int], multiple: int = 1) -> tuple[int, int]:
    """``--imgsz`` everywhere: ``N`` -> (N, N); ``"H,W"`` / ``"HxW"`` / (H, W) ->
    (H, W). Each side a positive multiple of ``multiple`` (32 for training)."""
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
        if not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"imgsz: expected N or H,W, got {value!r}")
        value = [int(p) for p in parts]
    sides = [value] if isinstance(value, int) else [int(v) for v in value]
    if len(sides) == 1:
        sides = sides * 2
    if len(sides) != 2 or any(s < max(1, multiple) or s % multiple for s in sides):
        what = f"multiples of {multiple}" if multiple > 1 else "positive sizes"
        raise ValueError(f"imgsz: expected N or H,W ({what}), got {value!r}")
    return sides[0], sides[1]
