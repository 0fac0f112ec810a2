"""Step 1, localization as regression: classify the image and regress ONE box.

A small CNN with two heads (class logits; x1 y1 x2 y2 normalised to [0, 1],
trained with L2 loss on single-object images). Its metric is IoU. In the pipeline
it reports exactly one detection per frame, whatever the frame holds: this is
the point of the step -- a fixed-size output cannot count objects.
"""

from __future__ import annotations

import numpy as np

from core.image import stretch, to_tensor
from core.types import Detections
from engines.base import Backend, Detector, Prepared
from engines.lineage.common import softmax


class LocDetector(Detector):
    """One box per frame. Network: ``images`` (B, 3, H, W) RGB [0, 1] ->
    ``logits`` (B, C), ``box`` (B, 4) xyxy normalised to the input size."""

    options = ("conf", "max_det")

    def __init__(self, backend: Backend, class_names: list[str],
                 imgsz: tuple[int, int], *, conf: float = 0.0, max_det: int = 1,
                 classes: frozenset[int] | None = None) -> None:
        """``conf`` (default 0: always one box) drops the box when the class
        probability is lower. One box needs no NMS, so ``--iou`` is refused, and
        any ``max_det`` (>= 1) keeps it."""
        self.backend = backend
        self.class_names = list(class_names)
        self.imgsz = (int(imgsz[0]), int(imgsz[1]))
        self.conf = conf
        self.max_det = max_det
        self.classes = classes

    @property
    def max_batch(self) -> int:
        return 32

    def prepare(self, image: np.ndarray) -> Prepared:
        resized, transform = stretch(image, self.imgsz)
        return Prepared(to_tensor(resized), transform)

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        if not batch:
            return []
        logits, box = self.backend.infer(np.stack([p.input for p in batch]))
        probs = softmax(logits)
        h, w = self.imgsz
        out = []
        for p, prob, b in zip(batch, probs, box, strict=True):
            xyxy = p.transform.to_original(b[None] * np.float32([w, h, w, h]))
            k = int(prob.argmax())
            dets = Detections(xyxy, prob[k:k + 1], [k])
            out.append(dets if prob[k] >= self.conf else Detections.empty())
        return out

    def warmup(self) -> None:
        self.backend.warmup()

    def close(self) -> None:
        self.backend.close()
