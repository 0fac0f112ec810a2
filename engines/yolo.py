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
``conf`` and class-aware NMS.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from core.boxes import cxcywh_to_xyxy, nms
from core.image import preprocess
from core.meta import ModelError, ModelMeta
from core.types import Detections
from engines.base import Backend, Detector, Prepared

log = logging.getLogger(__name__)

LAYOUTS = ("anchor_free", "anchor_based", "end2end", "grid")
END2END_MAX_BOXES = 1000  # [B, N, 6] with N up to this is a post-NMS output
DEFAULT_INPUT_SIZE = 640
DYNAMIC_MAX_BATCH = 16  # batch cap when the model's batch axis is dynamic
MAX_CANDIDATES = 3000  # boxes entering NMS, best first (bounds its cost)


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


def decode_grid(out: np.ndarray, boxes_per_cell: int, imgsz: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[S, S, 5K + C]`` -> xyxy (S*S*K, 4) input px, conf x class prob, class."""
    s_rows, s_cols, _ = out.shape
    k = boxes_per_cell
    h, w = imgsz
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


def input_size(backend: Backend, meta: ModelMeta | None,
               imgsz: int | tuple[int, int] | None) -> tuple[int, int]:
    """The network input (height, width): the model's static one (which ``imgsz``
    and the metadata must match), else ``imgsz``, the metadata's, or 640."""
    dims = tuple(backend.input_shape[2:4])
    static = len(dims) == 2 and all(isinstance(d, int) and d > 0 for d in dims)
    meta_size = tuple(meta.input_size) if meta and all(meta.input_size) else None
    if isinstance(imgsz, int):
        imgsz = (imgsz, imgsz)
    if static:
        if meta_size and meta_size != dims:
            raise ModelError(f"{backend.path}: input shape {dims} disagrees "
                             f"with metadata input_size {meta_size}")
        if imgsz and tuple(imgsz) != dims:
            raise ValueError(f"imgsz {tuple(imgsz)} differs from the model's "
                             f"static input {dims}")
        return int(dims[0]), int(dims[1])
    size = imgsz or meta_size or (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)
    return int(size[0]), int(size[1])


def output_shape(backend: Backend, imgsz: tuple[int, int]) -> tuple[int, ...]:
    """The first output's static shape when declared, else from one dummy run."""
    shapes = getattr(backend, "output_shapes", None)
    if shapes and all(isinstance(d, int) and d > 0 for d in shapes[0][1:]):
        return tuple(shapes[0])
    dummy = np.zeros((1, 3, *imgsz), np.float32)
    return tuple(backend.infer(dummy)[0].shape)


def count_classes(path: object, shape: tuple[int, ...], layout: str,
                  named: int | None, boxes_per_cell: int = 0) -> tuple[int, int]:
    """(classes, boxes per cell) an output of ``shape`` in ``layout`` holds;
    ``named``: how many classes the metadata names, if it does."""
    if layout == "anchor_free" and len(shape) == 3:
        return shape[1] - 4, boxes_per_cell
    if layout == "anchor_based" and len(shape) == 3:
        return shape[2] - 5, boxes_per_cell
    if layout == "end2end" and len(shape) == 3 and shape[2] == 6:
        if named is None:
            raise ModelError(f"{path}: a post-NMS output {shape} does not say how "
                             "many classes there are; pass class names")
        return named, boxes_per_cell
    if layout == "grid" and len(shape) == 4:
        depth = shape[3]
        if not boxes_per_cell:
            if named is None:
                raise ModelError(f"{path}: a grid output {shape} needs class names "
                                 "or boxes_per_cell metadata")
            boxes_per_cell = (depth - named) // 5
        count = depth - 5 * boxes_per_cell
        if count < 1:
            raise ModelError(f"{path}: grid output {shape} leaves no classes for "
                             f"{boxes_per_cell} boxes per cell")
        return count, boxes_per_cell
    raise ModelError(f"{path}: output shape {shape} does not fit layout {layout!r}")


class YoloDetector(Detector):
    """Letterbox + normalise, run the backend, decode a YOLO output, NMS.

    ``backend`` runs the network; ``class_names``, ``layout`` (one of
    ``LAYOUTS``), ``imgsz`` (network input height, width), ``boxes_per_cell``
    (grid layout), ``mean``/``std``/``resize`` come from the model's metadata,
    resolved by ``engines.build``. ``conf``, ``iou``: score and NMS thresholds;
    ``max_det`` caps the NMS; ``classes`` keeps only those ids. Boxes come back
    as xyxy original-frame pixels.
    """

    options = ("conf", "iou", "max_det", "imgsz")

    def __init__(self, backend: Backend, class_names: list[str], layout: str,
                 imgsz: tuple[int, int], *, conf: float = 0.25, iou: float = 0.45,
                 max_det: int = 300, classes: frozenset[int] | None = None,
                 boxes_per_cell: int = 0,
                 mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 std: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 resize: str = "letterbox") -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
        self.backend = backend
        self.class_names = list(class_names)
        self.layout = layout
        self.imgsz = (int(imgsz[0]), int(imgsz[1]))
        self.conf = conf
        self.iou = iou
        self.max_det = max_det
        self.classes = classes
        self.boxes_per_cell = boxes_per_cell
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.resize = resize
        log.info("YOLO %s: layout %s, input %s, %d classes", backend.path.name,
                 layout, self.imgsz, len(self.class_names))
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
        x, transform = preprocess(image, self.imgsz, self.resize, self.mean,
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
        return decode_grid(out, self.boxes_per_cell, self.imgsz)

    def postprocess(self, out: np.ndarray, prepared: Prepared) -> Detections:
        """Decode, threshold, class-aware NMS, map back to the original frame."""
        boxes, scores, class_ids = self.decode(out)
        keep = scores > self.conf
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        if len(scores) > MAX_CANDIDATES:
            top = np.argpartition(-scores, MAX_CANDIDATES)[:MAX_CANDIDATES]
            boxes, scores, class_ids = boxes[top], scores[top], class_ids[top]
        if self.layout == "end2end":  # the model already removed duplicates
            idx = np.argsort(-scores, kind="stable")[: self.max_det]
        else:
            idx = nms(boxes, scores, class_ids, self.iou, self.max_det)
        return Detections(prepared.transform.to_original(boxes[idx]), scores[idx],
                          class_ids[idx].astype(np.int32))

    def warmup(self) -> None:
        self.backend.infer(np.zeros((1, 3, *self.imgsz), np.float32))

    def close(self) -> None:
        self.backend.close()

    def describe(self) -> dict[str, Any]:
        return {"layout": self.layout, "imgsz": self.imgsz,
                "class_names": self.class_names}
