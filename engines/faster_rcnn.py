"""Faster R-CNN pre/post-processing for any backend running a torchvision-style graph.

The network takes one RGB image in [0, 1] — ``[1, 3, H, W]`` (streamdet's fixed-size
export) or ``[3, H, W]`` (torchvision's documented ``torch.onnx.export(model,
([x],))``) — and returns ``boxes`` [N, 4] xyxy in input pixels, ``labels`` [N]
int64 and ``scores`` [N], with NMS already done inside. Labels count from 1
(0 is torchvision's background), so ``class_id = label - label_offset``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from core.boxes import BoxTransform, nms
from core.image import preprocess
from core.meta import ModelError
from core.types import Detections
from engines.base import Backend, Detector, Prepared

log = logging.getLogger(__name__)

OUTPUTS = ("boxes", "labels", "scores")
DEFAULT_LABEL_OFFSET = 1  # torchvision: label 0 is background
WARMUP_SIZE = (320, 320)  # (H, W) for models with a dynamic input size


def classifier_outputs(model: Any) -> int | None:
    """Number of classifier outputs (background included) of a torchvision Faster
    R-CNN ONNX graph (an ``onnx.ModelProto``): the rows of the weight feeding its
    only ``Softmax``; None when the graph does not have that shape."""
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


def static_input_size(backend: Backend) -> tuple[int, int] | None:
    """The fixed (height, width) of a ``[3, H, W]`` / ``[1, 3, H, W]`` input,
    None when it is dynamic."""
    shape = tuple(backend.input_shape)
    if len(shape) not in (3, 4):
        raise ModelError(f"{backend.path}: expected a [3, H, W] or [1, 3, H, W] "
                         f"input, got {list(shape)}")
    hw = shape[-2:]
    if all(isinstance(d, int) and d > 0 for d in hw):
        return int(hw[0]), int(hw[1])
    return None


class FasterRCNNDetector(Detector):
    """torchvision-style Faster R-CNN on any ``Backend`` (one image per run).

    ``class_names``, ``label_offset`` (model label of class 0) and ``mean``/``std``
    come from the file's metadata, resolved by ``engines.build``. ``conf`` drops
    boxes below that score, ``max_det`` keeps the best. The graph already ran
    per-class NMS at its own threshold; a given ``iou`` runs one more
    (class-aware) pass, which can only tighten.
    """

    options = ("conf", "iou", "max_det")

    def __init__(self, backend: Backend, class_names: list[str], *,
                 conf: float = 0.5, iou: float | None = None, max_det: int = 100,
                 classes: frozenset[int] | None = None,
                 label_offset: int = DEFAULT_LABEL_OFFSET,
                 mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 std: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
        self.backend = backend
        self.class_names = list(class_names)
        self.conf = float(conf)
        self.iou = iou
        self.max_det = int(max_det)
        self.classes = classes
        self.label_offset = int(label_offset)
        self.rank = len(backend.input_shape)
        self.imgsz = static_input_size(backend)
        self._mean, self._std = tuple(mean), tuple(std)
        names = [n.lower() for n in getattr(backend, "output_names", [])]
        self._order = ([names.index(n) for n in OUTPUTS] if set(OUTPUTS) <= set(names)
                       else [0, 1, 2])

    def prepare(self, image: np.ndarray) -> Prepared:
        """BGR uint8 frame -> [3, H, W] float32 RGB in [0, 1], stretched to the fixed
        input (or kept at frame size for dynamic-size models)."""
        x, transform = preprocess(image, self.imgsz, "stretch", self._mean,
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
        keep = np.flatnonzero((scores >= self.conf) & (class_ids >= 0))
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        if self.iou is not None and len(keep):
            keep = keep[nms(boxes[keep], scores[keep], class_ids[keep], self.iou,
                            self.max_det)]
        keep = keep[:self.max_det]
        if not len(keep):
            return Detections.empty()
        return Detections(transform.to_original(boxes[keep]), scores[keep],
                          class_ids[keep])

    def warmup(self) -> None:
        h, w = self.imgsz or WARMUP_SIZE
        x = np.zeros((3, h, w), np.float32)
        for _ in range(2):
            self._run(x)

    def close(self) -> None:
        self.backend.close()
