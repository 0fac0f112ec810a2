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

from pathlib import Path

import numpy as np

from core.boxes import nms
from core.image import stretch, to_tensor
from core.meta import ModelError
from core.types import Detections
from engines.base import Backend, Detector, Prepared
from engines.lineage.common import require_meta
from engines.lineage.proposals import Proposer
from engines.lineage.rcnn import decode_rcnn
from engines.lineage.roi_pool import POOLINGS, roi_align, roi_max_pool
from engines.registry import open_backend


class FastRCNNDetector(Detector):
    """Selective Search + shared trunk + RoI-pooled heads (boxes xyxy pixels)."""

    option_kwargs = {"conf": "conf_threshold", "iou": "iou_threshold",
                     "max_det": "max_detections"}

    def __init__(self, backend: Backend | str | Path, threads: int | None = None,
                 conf_threshold: float = 0.3, iou_threshold: float = 0.4,
                 max_proposals: int | None = None, proposal_side: int | None = None,
                 max_detections: int = 100) -> None:
        self.backend = (backend if isinstance(backend, Backend)
                        else open_backend(backend, threads=threads))
        require_meta(self.backend, "lineage_fast_rcnn")
        meta = self.backend.meta
        if not 0 <= conf_threshold <= 1:
            raise ValueError(f"conf_threshold must be in [0, 1], got {conf_threshold}")
        head = self.backend.path.parent / meta.extra["head"]
        if not head.is_file():
            raise ModelError(f"{self.backend.path}: RoI head file {head} not found")
        self.head = open_backend(head, self.backend.device, threads=threads)
        if len(getattr(self.head, "input_shape", ())) != 4:
            raise ModelError(f"{head}: the RoI head must take one (K, P, P, C) input "
                             f"of pooled features, got {self.head.input_shape}; "
                             "re-export it with `python -m training lineage train`")
        self.pool = int(meta.extra.get("pool", 5))
        self.spatial_scale = float(meta.extra.get("spatial_scale", 1 / 8))
        self.pooling = meta.extra.get("pooling", "max")
        self.sampling_ratio = int(meta.extra.get("sampling_ratio", 1))
        self.channels_last = meta.extra.get("pooled_layout") == "channels_last"
        if self.pooling not in POOLINGS:
            raise ModelError(f"{self.backend.path}: unknown RoI pooling "
                             f"{self.pooling!r} (expected one of {POOLINGS})")
        self.class_names = list(meta.class_names)
        self.input_size = meta.input_size
        self.proposer = Proposer(proposal_side or meta.extra["proposal_side"],
                                 max_proposals or meta.extra["max_proposals"])
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections

    def prepare(self, image: np.ndarray) -> Prepared:
        resized, transform = stretch(image, self.input_size)
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
                                           self.conf_threshold)
            keep = nms(boxes, conf, cls, self.iou_threshold, self.max_detections)
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
        h, w = self.input_size
        self.backend.infer(np.zeros((1, 3, h, w), np.float32))

    def close(self) -> None:
        self.backend.close()
        self.head.close()
