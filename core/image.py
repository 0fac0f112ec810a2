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


def _normalise(
    x: np.ndarray, mean: Sequence[float] | None, std: Sequence[float] | None
) -> np.ndarray:
    if mean is not None and any(mean):
        x -= np.asarray(mean, np.float32).reshape(-1, 1, 1)
    if std is not None and any(v != 1.0 for v in std):
        x /= np.asarray(std, np.float32).reshape(-1, 1, 1)
    return x


def to_tensor(
    image: np.ndarray,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """H×W×3 uint8 BGR -> 3×H×W float32 RGB in [0, 1], then ``(x - mean) / std``.

    One C++ pass (``blobFromImage``) does BGR->RGB, HWC->CHW and the scaling.
    """
    x = cv2.dnn.blobFromImage(image, 1 / 255.0, swapRB=True)[0]
    return _normalise(x, mean, std)


def to_tensors(
    images: Sequence[np.ndarray] | np.ndarray,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """N same-size BGR uint8 images -> N×3×H×W float32 RGB (as ``to_tensor``)."""
    if len(images) == 0:
        return np.zeros((0, 3, 0, 0), np.float32)
    x = cv2.dnn.blobFromImages(list(images), 1 / 255.0, swapRB=True)
    if mean is not None and any(mean):
        x -= np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    if std is not None and any(v != 1.0 for v in std):
        x /= np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return x


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
