"""Step 5, R-CNN: Selective Search proposals, each warped and classified alone.

Every proposal is cropped from the frame, warped to the network's fixed input
(40x40 for the shipped model) and run through a small CNN giving class scores
(background + C) and per-class box deltas; per-class NMS. The network is Fast
R-CNN's (``training.lineage.models.RCNNNet``), but it runs once per proposal,
which is why R-CNN is slow: hundreds of overlapping crops repeat the same
convolutions.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.boxes import nms
from core.image import to_tensors
from core.types import Detections
from engines.base import Backend, Detector, Prepared
from engines.lineage.common import decode_deltas, softmax
from engines.lineage.proposals import Proposer


def warp_crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, 4) xyxy boxes of a BGR image -> (N, 3, size, size) float32 RGB [0, 1],
    each box warped (aspect not kept, as in R-CNN) to ``size`` x ``size``."""
    h, w = image.shape[:2]
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    b = np.round(boxes).astype(np.int64)
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
    for i, (x1, y1, x2, y2) in enumerate(b):
        out[i] = cv2.resize(image[y1:min(y2, h), x1:min(x2, w)], (size, size),
                            interpolation=cv2.INTER_LINEAR)
    return to_tensors(out)


def decode_rcnn(proposals: np.ndarray, logits: np.ndarray, deltas: np.ndarray,
                conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-proposal (C+1) logits and (C*4) class-specific deltas -> candidate
    boxes: every (proposal, class) pair scoring >= ``conf``."""
    probs = softmax(logits)[:, 1:]
    idx, cls = np.nonzero(probs >= conf)
    d = deltas.reshape(len(proposals), -1, 4)[idx, cls]
    boxes = decode_deltas(proposals[idx], d)
    return boxes, probs[idx, cls], cls.astype(np.int32)


class RCNNDetector(Detector):
    """Selective Search + per-crop CNN. Network: ``crops`` (N, 3, S, S) ->
    ``logits`` (N, C+1), ``deltas`` (N, 4C)."""

    options = ("conf", "iou", "max_det")

    def __init__(self, backend: Backend, class_names: list[str], crop: int,
                 proposal_side: int, max_proposals: int, *, conf: float = 0.3,
                 iou: float = 0.4, max_det: int = 100,
                 classes: frozenset[int] | None = None) -> None:
        """``crop``: the network's square input side; ``proposal_side`` and
        ``max_proposals`` configure Selective Search (``Proposer``)."""
        self.backend = backend
        self.class_names = list(class_names)
        self.crop = int(crop)
        self.proposer = Proposer(proposal_side, max_proposals)
        self.conf = conf
        self.iou = iou
        self.max_det = max_det
        self.classes = classes

    def prepare(self, image: np.ndarray) -> Prepared:
        return Prepared.whole(image)

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        out = []
        for p in batch:
            proposals = self.proposer(p.input)
            if len(proposals) == 0:
                out.append(Detections.empty())
                continue
            logits, deltas = self.backend.infer(warp_crops(p.input, proposals,
                                                           self.crop))
            boxes, conf, cls = decode_rcnn(proposals, logits, deltas,
                                           self.conf)
            keep = nms(boxes, conf, cls, self.iou, self.max_det)
            out.append(Detections(p.transform.to_original(boxes[keep]), conf[keep],
                                  cls[keep]))
        return out

    def warmup(self) -> None:
        self.backend.warmup()

    def close(self) -> None:
        self.backend.close()
