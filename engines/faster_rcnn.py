"""Faster R-CNN pre/post-processing for any backend running a torchvision-style graph.

The network takes one RGB image in [0, 1] — ``[1, 3, H, W]`` (streamdet's fixed-size
export) or ``[3, H, W]`` (torchvision's documented ``torch.onnx.export(model,
([x],))``) — and returns ``boxes`` [N, 4] xyxy in input pixels, ``labels`` [N]
int64 and ``scores`` [N], with NMS already done inside. Labels count from 1
(0 is torchvision's background), so ``class_id = label - label_offset``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core.boxes import BoxTransform, nms
from core.image import preprocess
from core.meta import ModelError, ModelMeta
from core.types import Detections
from engines.base import Backend, Detector, Prepared
from engines.registry import open_backend

log = logging.getLogger(__name__)

OUTPUTS = ("boxes", "labels", "scores")
DEFAULT_LABEL_OFFSET = 1  # torchvision: label 0 is background
WARMUP_SIZE = (320, 320)  # (H, W) for models with a dynamic input size


def onnx_class_count(path: str | Path) -> int | None:
    """Number of classifier outputs (background included) of a torchvision Faster
    R-CNN ONNX graph: the rows of the weight feeding its only ``Softmax``; None
    when the graph does not have that shape."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # unreadable files are reported by the backend itself
        return None
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    weights = {init.name: list(init.dims) for init in graph.initializer}
    softmax = [n for n in graph.node if n.op_type == "Softmax"]
    if len(softmax) != 1:
        return None
    node = producers.get(softmax[0].input[0])
    for _ in range(4):  # Softmax <- (Add <-) Gemm/MatMul
        if node is None:
            return None
        if node.op_type in ("Gemm", "MatMul"):
            dims = weights.get(node.input[1])
            if not dims or len(dims) != 2:
                return None
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            return dims[0] if node.op_type == "Gemm" and trans_b else dims[1]
        node = producers.get(node.input[0])
    return None


class FasterRCNNDetector(Detector):
    """torchvision-style Faster R-CNN on any ``Backend`` (one image per run).

    ``backend``: an open backend or a model path. ``conf_threshold`` drops boxes
    below that score, ``max_detections`` keeps the best. ``class_names`` and
    ``label_offset`` override the file's metadata; without metadata the labels
    are taken as torchvision's (offset 1) and named ``class{k}``.
    """

    option_kwargs = {"conf": "conf_threshold", "iou": "iou_threshold",
                     "max_det": "max_detections"}

    def __init__(self, backend: Backend | str | Path, conf_threshold: float = 0.5,
                 max_detections: int = 100, class_names: list[str] | None = None,
                 label_offset: int | None = None, device: str = "cpu",
                 iou_threshold: float | None = None) -> None:
        if not 0.0 <= conf_threshold <= 1.0:
            raise ValueError(f"conf_threshold must be in [0, 1], got {conf_threshold}")
        if max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        if backend is None:
            raise ValueError("FasterRCNNDetector needs a model file or backend")
        if not isinstance(backend, Backend):
            backend = open_backend(backend, device=device)
        self.backend = backend
        self.conf_threshold = float(conf_threshold)
        # The graph already ran per-class NMS at its own threshold; a given
        # ``iou_threshold`` runs one more (class-aware) pass, which can only tighten.
        self.iou_threshold = iou_threshold
        self.max_detections = int(max_detections)
        self.path = backend.path
        self.meta: ModelMeta | None = backend.meta
        shape = tuple(backend.input_shape)
        if len(shape) not in (3, 4):
            raise ModelError(f"{self.path}: expected a [3, H, W] or [1, 3, H, W] "
                             "input, "
                             f"got {list(shape)}")
        self.rank = len(shape)
        hw = shape[-2:]
        self.input_size: tuple[int, int] | None = (
            (int(hw[0]), int(hw[1])) if all(isinstance(d, int) and d > 0 for d in hw)
            else None)
        self._check_meta()
        count = (onnx_class_count(self.path) if self.path.suffix.lower() == ".onnx"
                 else None)
        named = len(self.meta.class_names) if self.meta else None
        if named is not None and count is not None and count - 1 != named:
            raise ModelError(f"{self.path}: metadata names {named} classes but the "
                             f"model predicts {count - 1} (+ background)")
        meta_offset = self.meta.extra.get("label_offset") if self.meta else None
        self.label_offset = int(label_offset if label_offset is not None else
                                meta_offset if meta_offset is not None else
                                DEFAULT_LABEL_OFFSET)
        if class_names is not None:
            self.class_names = list(class_names)
        elif self.meta is not None:
            self.class_names = list(self.meta.class_names)
        else:
            n = (count or 91) - 1
            self.class_names = [f"class{k}" for k in range(n)]
        mean = self.meta.mean if self.meta else (0.0, 0.0, 0.0)
        std = self.meta.std if self.meta else (1.0, 1.0, 1.0)
        self._mean, self._std = tuple(mean), tuple(std)
        names = [n.lower() for n in getattr(backend, "output_names", [])]
        self._order = ([names.index(n) for n in OUTPUTS] if set(OUTPUTS) <= set(names)
                       else [0, 1, 2])

    def _check_meta(self) -> None:
        meta = self.meta
        if meta is None:
            return
        if meta.family.replace("-", "_") != "faster_rcnn":
            raise ModelError(f"{self.path}: metadata family is {meta.family!r}, "
                             "not 'faster_rcnn'")
        if self.input_size is not None and tuple(meta.input_size) != self.input_size:
            raise ModelError(f"{self.path}: metadata input_size "
                             f"{tuple(meta.input_size)} "
                             f"but the model's input is {self.input_size} (H, W)")

    def prepare(self, image: np.ndarray) -> Prepared:
        """BGR uint8 frame -> [3, H, W] float32 RGB in [0, 1], stretched to the fixed
        input (or kept at frame size for dynamic-size models)."""
        x, transform = preprocess(image, self.input_size, "stretch", self._mean,
                                  self._std)
        return Prepared(x, transform)

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        """Runs each frame on its own: these graphs return one image's boxes."""
        return [self._decode(self._run(p.input), p.transform) for p in batch]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        outputs = self.backend.infer(x[None] if self.rank == 4 else x)
        return [np.asarray(outputs[i]) for i in self._order]

    def _decode(self, outputs: list[np.ndarray], transform: BoxTransform) -> Detections:
        boxes, labels, scores = outputs
        boxes = boxes.reshape(-1, 4)
        scores = scores.reshape(-1).astype(np.float32)
        class_ids = labels.reshape(-1).astype(np.int64) - self.label_offset
        keep = np.flatnonzero((scores >= self.conf_threshold) & (class_ids >= 0))
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        if self.iou_threshold is not None and len(keep):
            keep = keep[nms(boxes[keep], scores[keep], class_ids[keep],
                            self.iou_threshold, self.max_detections)]
        keep = keep[:self.max_detections]
        if not len(keep):
            return Detections.empty()
        return Detections(transform.to_original(boxes[keep]), scores[keep],
                          class_ids[keep])

    def warmup(self) -> None:
        h, w = self.input_size or WARMUP_SIZE
        x = np.zeros((3, h, w), np.float32)
        for _ in range(2):
            self._run(x)

    def close(self) -> None:
        self.backend.close()
