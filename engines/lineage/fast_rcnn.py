"""Step 6, Fast R-CNN: one shared conv feature map per frame, RoI pooling.

The same Selective Search proposals as R-CNN, but the conv trunk runs ONCE on
the whole (resized) frame; each proposal max-pools its own region of the
feature map to a fixed grid (RoI pooling), then small fully-connected heads
give class scores and per-class box deltas. Two networks, each with one input
and run by the project's ``Backend``: the trunk (the model file, ``images`` ->
``features``) and the head named in the metadata (``pooled`` (K, P, P, C),
or (K, C, P, P) in files without ``pooled_layout: channels_last``, ->
``logits``, ``deltas``); the pooling between them is NumPy
(``engines.lineage.roi_pool``, torchvision's arithmetic): RoI max pooling, the
paper's, or RoIAlign, as the metadata's ``pooling`` says.
"""

from __future__ import annotations

import numpy as np

from core.boxes import nms
from core.image import stretch, to_tensor
from core.types import Detections
from engines.base import Backend, Detector, Prepared
from engines.lineage.proposals import Proposer
from engines.lineage.rcnn import decode_rcnn
from engines.lineage.roi_pool import roi_align, roi_max_pool


class FastRCNNDetector(Detector):
    """Selective Search + shared trunk + RoI-pooled heads (boxes xyxy pixels)."""

    options = ("conf", "iou", "max_det")

    def __init__(self, backend: Backend, head: Backend, class_names: list[str],
                 imgsz: tuple[int, int], proposal_side: int, max_proposals: int, *,
                 pool: int = 5, spatial_scale: float = 1 / 8, pooling: str = "max",
                 sampling_ratio: int = 1, channels_last: bool = False,
                 conf: float = 0.3, iou: float = 0.4, max_det: int = 100,
                 classes: frozenset[int] | None = None) -> None:
        """``backend`` runs the trunk, ``head`` the RoI head; ``pool`` (bins per
        side), ``spatial_scale`` (feature cells per input pixel), ``pooling``
        ("max" or "align"), ``sampling_ratio`` and ``channels_last`` (the head's
        input layout) come from the model's metadata."""
        self.backend = backend
        self.head = head
        self.class_names = list(class_names)
        self.imgsz = (int(imgsz[0]), int(imgsz[1]))
        self.proposer = Proposer(proposal_side, max_proposals)
        self.pool = int(pool)
        self.spatial_scale = float(spatial_scale)
        self.pooling = pooling
        self.sampling_ratio = int(sampling_ratio)
        self.channels_last = channels_last
        self.conf = conf
        self.iou = iou
        self.max_det = max_det
        self.classes = classes

    def prepare(self, image: np.ndarray) -> Prepared:
        resized, transform = stretch(image, self.imgsz)
        # Proposals come from the original frame; keep it beside the tensor.
        return Prepared((to_tensor(resized), image), transform)  # type: ignore[arg-type]

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        out = []
        for p in batch:
            tensor, image = p.input
            proposals = self.proposer(image)
            if len(proposals) == 0:
                out.append(Detections.empty())
                continue
            (features,) = self.backend.infer(tensor[None])
            rois_net = p.transform.to_network(proposals)
            pooled = self.roi_features(features[0], rois_net)
            logits, deltas = self.head.infer(pooled)
            boxes, conf, cls = decode_rcnn(rois_net, logits, deltas,
                                           self.conf)
            keep = nms(boxes, conf, cls, self.iou, self.max_det)
            out.append(Detections(p.transform.to_original(boxes[keep]), conf[keep],
                                  cls[keep]))
        return out

    def roi_features(self, features: np.ndarray, rois: np.ndarray) -> np.ndarray:
        """(C, H, W) feature map, (K, 4) RoIs in network pixels -> the head's
        input: (K, P, P, C), or (K, C, P, P) for heads of older files."""
        if self.pooling == "align":
            return roi_align(features, rois, self.pool, self.spatial_scale,
                             self.sampling_ratio, self.channels_last)
        return roi_max_pool(features, rois, self.pool, self.spatial_scale,
                            self.channels_last)

    def warmup(self) -> None:
        h, w = self.imgsz
        self.backend.infer(np.zeros((1, 3, h, w), np.float32))

    def close(self) -> None:
        self.backend.close()
        self.head.close()
