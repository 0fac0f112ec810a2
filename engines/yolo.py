"""YOLO pre/post-processing for our heads and the common external ONNX layouts.

Output layouts (per batch item), all in network-input pixels:

* ``anchor_free``  ``[B, 4 + C, N]``: cx, cy, w, h, then C class scores
  (ours, YOLOv8, YOLO11). Score = max class score.
* ``anchor_based`` ``[B, N, 5 + C]``: cx, cy, w, h, objectness, C class
  probabilities (YOLOv5, YOLOv7). Score = objectness x class probability.
* ``end2end``      ``[B, N, 6]``: x1, y1, x2, y2, score, class id, already
  NMS-free or NMS-ed (YOLOv10, YOLO26, Ultralytics ``nms=True`` exports).
* ``grid``         ``[B, S, S, 5K + C]``: YOLO v1, K boxes per cell of
  (x, y offsets in the cell, w, h as fractions of the input, confidence), then C
  class probabilities. Score = confidence x class probability.

Every layout is decoded vectorised to xyxy + one class per box, then filtered by
``conf_threshold`` and class-aware NMS.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import numpy as np

from core.boxes import cxcywh_to_xyxy, nms
from core.image import preprocess
from core.meta import ModelError, ModelMeta
from core.types import Detections
from engines.base import Backend, Detector, Prepared
from engines.registry import open_backend

log = logging.getLogger(__name__)

LAYOUTS = ("anchor_free", "anchor_based", "end2end", "grid")
END2END_MAX_BOXES = 1000  # [B, N, 6] with N up to this is a post-NMS output
DEFAULT_INPUT_SIZE = 640
DYNAMIC_MAX_BATCH = 16  # batch cap when the model's batch axis is dynamic
MAX_CANDIDATES = 3000  # boxes entering NMS, best first (bounds its cost)


ULTRALYTICS_DEFAULTS = {"conf_threshold": 0.25, "iou_threshold": 0.7}  # predict()'s
OUR_IOU = 0.45


def ultralytics_metadata(backend: Backend) -> dict[str, str]:
    """The ONNX file's custom metadata (Ultralytics writes ``names``, ``task``,
    ``imgsz``, ``stride``, ...): ONNX Runtime's session, or the
    ``custom_metadata`` a backend read itself (OpenVINO); empty otherwise."""
    session = getattr(backend, "session", None)
    if session is None:
        return dict(getattr(backend, "custom_metadata", None) or {})
    return dict(session.get_modelmeta().custom_metadata_map)


def ultralytics_names(backend: Backend) -> list[str] | None:
    """Class names from an ONNX file's Ultralytics ``names`` metadata, if any.

    The value is a Python dict literal, e.g. ``"{0: 'person', 1: 'bicycle'}"``.
    """
    raw = ultralytics_metadata(backend).get("names")
    if not raw:
        return None
    try:
        names = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        log.warning("%s: unreadable 'names' metadata %r", backend.path, raw[:80])
        return None
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list | tuple):
        return [str(n) for n in names]
    return None


def guess_layout(shape: tuple[int, ...], num_classes: int | None = None) -> str:
    """Layout from an output shape (batch first) and, when known, the class count."""
    if len(shape) == 4:
        return "grid"
    if len(shape) != 3:
        raise ValueError(f"cannot infer a YOLO layout from output shape {shape}")
    _, a, b = shape
    # [B, N, 6] is also YOLOv5 with one class, but that has thousands of anchors
    if (b == 6 and a <= END2END_MAX_BOXES and num_classes in (None, 1)) or (
            b == 6 and num_classes not in (None, 1)):
        return "end2end"
    if num_classes is not None:
        if a == 4 + num_classes:
            return "anchor_free"
        if b == 5 + num_classes:
            return "anchor_based"
    return "anchor_free" if a < b else "anchor_based"


def decode_anchor_free(out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[4 + C, N]`` -> xyxy (N, 4), score (N,), class (N,)."""
    cls = out[4:]
    class_ids = cls.argmax(0)
    scores = np.take_along_axis(cls, class_ids[None], 0)[0]
    return cxcywh_to_xyxy(out[:4].T), scores, class_ids


def decode_anchor_based(out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[N, 5 + C]`` -> xyxy (N, 4), objectness x class prob (N,), class (N,)."""
    cls = out[:, 5:]
    class_ids = cls.argmax(1)
    scores = out[:, 4] * np.take_along_axis(cls, class_ids[:, None], 1)[:, 0]
    return cxcywh_to_xyxy(out[:, :4]), scores, class_ids


def decode_end2end(out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[N, 6]`` x1 y1 x2 y2 score class -> xyxy (N, 4), score (N,), class (N,)."""
    return out[:, :4], out[:, 4], out[:, 5].round().astype(np.int64)


def decode_grid(out: np.ndarray, boxes_per_cell: int, input_size: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[S, S, 5K + C]`` -> xyxy (S*S*K, 4) input px, conf x class prob, class."""
    s_rows, s_cols, _ = out.shape
    k = boxes_per_cell
    h, w = input_size
    boxes = out[..., : 5 * k].reshape(s_rows, s_cols, k, 5)
    probs = out[..., 5 * k:]
    class_ids = np.broadcast_to(probs.argmax(-1)[:, :, None], (s_rows, s_cols, k))
    best = probs.max(-1)[:, :, None]
    rows = np.arange(s_rows, dtype=np.float32)[:, None, None]
    cols = np.arange(s_cols, dtype=np.float32)[None, :, None]
    cxcywh = np.stack([(boxes[..., 0] + cols) / s_cols * w,
                       (boxes[..., 1] + rows) / s_rows * h,
                       boxes[..., 2] * w, boxes[..., 3] * h], -1)
    scores = boxes[..., 4] * best
    return (cxcywh_to_xyxy(cxcywh.reshape(-1, 4)), scores.reshape(-1),
            class_ids.reshape(-1))


class YoloDetector(Detector):
    """Letterbox + normalise, run the backend, decode a YOLO output, NMS.

    ``backend`` is an opened ``Backend`` (or a model path). ``layout``,
    ``class_names`` and ``input_size`` (height, width, or one int) override what
    the model's metadata / shapes say. Boxes come back as xyxy original-frame px.
    """

    option_kwargs = {"conf": "conf_threshold", "iou": "iou_threshold",
                     "max_det": "max_detections", "imgsz": "input_size"}

    def __init__(self, backend: Backend | str | Path, conf_threshold: float = 0.25,
                 iou_threshold: float | None = None, max_detections: int = 300,
                 layout: str | None = None, class_names: list[str] | None = None,
                 input_size: int | tuple[int, int] | None = None) -> None:
        if not 0 <= conf_threshold <= 1:
            raise ValueError(f"conf_threshold must be in [0, 1], got {conf_threshold}")
        if iou_threshold is not None and not 0 < iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        if layout is not None and layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
        if not isinstance(backend, Backend):
            backend = open_backend(backend)
        self.backend = backend
        external = ultralytics_metadata(backend) if backend.meta is None else {}
        task = external.get("task", "detect").strip().lower()
        if task != "detect":
            raise ModelError(f"{backend.path}: an Ultralytics '{task}' export; only "
                             "detection exports (task 'detect') are supported")
        self.conf_threshold = conf_threshold
        # an Ultralytics export gets predict()'s defaults, so the same command
        # gives the same boxes
        self.iou_threshold = iou_threshold or (
            ULTRALYTICS_DEFAULTS["iou_threshold"] if "names" in external else OUR_IOU)
        self.max_detections = max_detections
        meta = backend.meta
        self.input_size = self._input_size(meta, input_size)
        names = (class_names or (meta.class_names if meta else None)
                 or ultralytics_names(backend))
        shape = self._output_shape()
        self.layout = layout or (meta.layout if meta and meta.layout else None) or \
            guess_layout(shape, len(names) if names else None)
        self.boxes_per_cell = int((meta.extra if meta else {}).get("boxes_per_cell", 0))
        nc = self._num_classes(shape, len(names) if names else None)
        if names is None:
            names = [f"class{i}" for i in range(nc)]
        elif len(names) != nc:
            raise ModelError(f"{backend.path}: output {shape} ({self.layout}) has {nc} "
                             f"classes but the metadata names {len(names)}: {names}")
        self.class_names = list(names)
        # models without streamdet metadata: Ultralytics convention, RGB / 255
        self.mean = np.asarray(meta.mean if meta else (0, 0, 0), np.float32)
        self.std = np.asarray(meta.std if meta else (1, 1, 1), np.float32)
        self.resize = "stretch" if meta and meta.resize == "stretch" else "letterbox"
        log.info("YOLO %s: layout %s, input %s, %d classes", backend.path.name,
                 self.layout, self.input_size, nc)

    def _input_size(self, meta: ModelMeta | None,
                    override: int | tuple[int, int] | None) -> tuple[int, int]:
        dims = tuple(self.backend.input_shape[2:4])
        static = len(dims) == 2 and all(isinstance(d, int) and d > 0 for d in dims)
        meta_size = tuple(meta.input_size) if meta and all(meta.input_size) else None
        if isinstance(override, int):
            override = (override, override)
        if static:
            if meta_size and meta_size != dims:
                raise ModelError(f"{self.backend.path}: input shape {dims} disagrees "
                                 f"with metadata input_size {meta_size}")
            if override and tuple(override) != dims:
                raise ValueError(f"input_size {override} differs from the model's "
                                 f"static input {dims}")
            return dims  # type: ignore[return-value]
        size = override or meta_size or (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)
        return int(size[0]), int(size[1])

    def _output_shape(self) -> tuple[int, ...]:
        """Static output shape when declared, else from one dummy run."""
        shapes = getattr(self.backend, "output_shapes", None)
        if shapes and all(isinstance(d, int) and d > 0 for d in shapes[0][1:]):
            return tuple(shapes[0])
        dummy = np.zeros((1, 3, *self.input_size), np.float32)
        return tuple(self.backend.infer(dummy)[0].shape)

    def _num_classes(self, shape: tuple[int, ...], named: int | None) -> int:
        path = self.backend.path
        if self.layout == "anchor_free" and len(shape) == 3:
            return shape[1] - 4
        if self.layout == "anchor_based" and len(shape) == 3:
            return shape[2] - 5
        if self.layout == "end2end" and len(shape) == 3 and shape[2] == 6:
            if named is None:
                raise ModelError(f"{path}: a post-NMS output {shape} does not say how "
                                 "many classes there are; pass class names")
            return named
        if self.layout == "grid" and len(shape) == 4:
            depth = shape[3]
            if not self.boxes_per_cell:
                if named is None:
                    raise ModelError(f"{path}: a grid output {shape} needs class names "
                                     "or boxes_per_cell metadata")
                self.boxes_per_cell = (depth - named) // 5
            nc = depth - 5 * self.boxes_per_cell
            if nc < 1:
                raise ModelError(f"{path}: grid output {shape} leaves no classes for "
                                 f"{self.boxes_per_cell} boxes per cell")
            return nc
        raise ModelError(f"{path}: output shape {shape} does not fit layout "
                         f"{self.layout!r}")

    @property
    def max_batch(self) -> int:
        # the backend's own cap first: a TensorRT profile, or parallel requests
        # on a fixed-batch CPU model
        if getattr(self.backend, "max_batch", 0):
            return int(self.backend.max_batch)
        b = self.backend.input_shape[0] if self.backend.input_shape else 1
        return b if isinstance(b, int) and b > 0 else DYNAMIC_MAX_BATCH

    @property
    def calls_in_flight(self) -> int:
        # decoding is pure NumPy, so calls overlap wherever the backend allows
        return self.backend.calls_in_flight

    def prepare(self, image: np.ndarray) -> Prepared:
        """BGR uint8 (H, W, 3) -> (3, H, W) float32 RGB, (x/255 - mean) / std."""
        x, transform = preprocess(image, self.input_size, self.resize, self.mean,
                                  self.std)
        return Prepared(x, transform)

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        if not batch:
            return []
        results: list[Detections] = []
        for start in range(0, len(batch), self.max_batch):
            chunk = batch[start:start + self.max_batch]
            out = self.backend.infer(np.stack([p.input for p in chunk]))[0]
            results.extend(self.postprocess(o, p)
                           for o, p in zip(out, chunk, strict=True))
        return results

    def decode(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One image's raw output -> xyxy (network px), scores, class ids."""
        out = np.asarray(out, np.float32)
        if self.layout == "anchor_free":
            return decode_anchor_free(out)
        if self.layout == "anchor_based":
            return decode_anchor_based(out)
        if self.layout == "end2end":
            return decode_end2end(out)
        return decode_grid(out, self.boxes_per_cell, self.input_size)

    def postprocess(self, out: np.ndarray, prepared: Prepared) -> Detections:
        """Decode, threshold, class-aware NMS, map back to the original frame."""
        boxes, scores, class_ids = self.decode(out)
        keep = scores > self.conf_threshold
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        if len(scores) > MAX_CANDIDATES:
            top = np.argpartition(-scores, MAX_CANDIDATES)[:MAX_CANDIDATES]
            boxes, scores, class_ids = boxes[top], scores[top], class_ids[top]
        if self.layout == "end2end":  # the model already removed duplicates
            idx = np.argsort(-scores, kind="stable")[: self.max_detections]
        else:
            idx = nms(boxes, scores, class_ids, self.iou_threshold,
                      self.max_detections)
        return Detections(prepared.transform.to_original(boxes[idx]), scores[idx],
                          class_ids[idx].astype(np.int32))

    def warmup(self) -> None:
        self.backend.infer(np.zeros((1, 3, *self.input_size), np.float32))

    def close(self) -> None:
        self.backend.close()

    def describe(self) -> dict[str, Any]:
        return {"layout": self.layout, "input_size": self.input_size,
                "class_names": self.class_names}
