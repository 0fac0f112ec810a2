"""Faster R-CNN -> ONNX at a fixed input size, TensorRT-friendly, with a parity check.

The graph takes ``images`` [1, 3, H, W] float RGB in [0, 1] (H, W fixed, multiples
of 32) and returns ``boxes`` [N, 4] xyxy input pixels, ``labels`` [N] int64
(1..C, 0 is background) and ``scores`` [N].

What keeps the graph TensorRT-friendly:

- the fixed input skips torchvision's ``GeneralizedRCNNTransform`` resize and
  padding (identity at this size), so every backbone/RPN shape is static and
  onnxslim folds the shape arithmetic away;
- ``batched_nms`` is traced without its ``if boxes.numel() == 0`` branch (in
  torchvision 0.29 that ``@_script_if_tracing`` branch is where the ``If`` nodes
  come from — the same kind of ``If`` that NVIDIA/TensorRT#3034 hits); boxes
  are clipped to the image, so a constant per-class offset replaces ``boxes.max()``;
- ``BoxCoder.decode`` reshapes to ``[-1, 4*K]`` with a constant ``4*K`` instead
  of ``[box_sum, -1]``, which TensorRT cannot solve for zero proposals
  (pytorch/vision#8734).

The exporter (TorchScript, ``dynamo=False``: the dynamo exporter fails on
batched NMS) checks that no ``If`` node is left and compares ONNX Runtime with
torch eager mode on real generated frames.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.boxes import iou_matrix
from core.meta import FasterRCNNParams, ModelMeta
from engines.nets.faster_rcnn import OUTPUT_NAMES, FixedSizeFasterRCNN

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "images"


def check_fixed_size(model: nn.Module, input_size: tuple[int, int]) -> None:
    """The model's own resize must be the identity at ``input_size`` (H, W)."""
    h, w = input_size
    t = model.transform
    min_size = t.min_size[-1] if isinstance(t.min_size, (list, tuple)) else t.min_size
    if h % 32 or w % 32:
        raise ValueError(f"input size {(h, w)} must be multiples of 32")
    scale = min(min_size / min(h, w), t.max_size / max(h, w))
    if abs(scale - 1.0) > 1e-6:
        raise ValueError(f"model resizes a {(h, w)} input by {scale:.3f} "
                         f"(min_size={min_size}, max_size={t.max_size}); build it "
                         "with min_size/max_size matching the input size")


@contextlib.contextmanager
def trace_friendly(max_coordinate: float) -> Iterator[None]:
    """Patch torchvision's ``batched_nms`` and ``BoxCoder.decode`` while tracing
    (see the module docstring); restores them on exit."""
    from torchvision.models.detection import _utils as det_utils
    from torchvision.ops import boxes as box_ops

    offset_step = float(max_coordinate) + 1.0

    def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                    iou_threshold: float) -> torch.Tensor:
        offsets = idxs.to(boxes) * offset_step
        return box_ops.nms(boxes + offsets[:, None], scores, iou_threshold)

    def decode(self: Any, rel_codes: torch.Tensor, boxes: list[torch.Tensor]
               ) -> torch.Tensor:
        concat_boxes = torch.cat(boxes, dim=0)
        width = int(rel_codes.shape[-1])  # a constant in the trace, not a Shape op
        rel_codes = rel_codes.reshape(-1, width)
        return self.decode_single(rel_codes, concat_boxes).reshape(-1, width // 4, 4)

    saved = box_ops.batched_nms, det_utils.BoxCoder.decode
    box_ops.batched_nms, det_utils.BoxCoder.decode = batched_nms, decode
    try:
        yield
    finally:
        box_ops.batched_nms, det_utils.BoxCoder.decode = saved


def op_counts(onnx_path: str | Path) -> dict[str, int]:
    """Node count per op type, subgraphs included."""
    import onnx

    counts: collections.Counter[str] = collections.Counter()
    stack = [onnx.load(str(onnx_path)).graph]
    while stack:
        graph = stack.pop()
        for node in graph.node:
            counts[node.op_type] += 1
            stack.extend(a.g for a in node.attribute
                         if a.type == onnx.AttributeProto.GRAPH)
    return dict(counts)


def dynamic_reshapes(onnx_path: str | Path) -> int:
    """Reshape nodes whose target shape is computed at run time (not a constant):
    the ``[box_sum, -1]`` kind that TensorRT cannot solve for empty inputs."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    constant = {i.name for i in graph.initializer} | {
        n.output[0] for n in graph.node if n.op_type == "Constant"}
    return sum(n.op_type == "Reshape" and n.input[1] not in constant
               for n in graph.node)


def sample_images(n: int, size: tuple[int, int] = (360, 640), seed: int = 123
                  ) -> list[np.ndarray]:
    """``n`` generated BGR frames (the renderer of the demo video)."""
    from training.data.generate import render_scene

    rng = np.random.default_rng(seed)
    return [render_scene(rng, size)[0] for _ in range(n)]


def to_input(image: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """BGR uint8 frame -> [1, 3, H, W] float32 RGB in [0, 1], stretched."""
    from core.image import preprocess

    return preprocess(image, input_size, "stretch")[0][None]


def parity(model: nn.Module, onnx_path: str | Path, images: list[np.ndarray],
           input_size: tuple[int, int]) -> dict[str, Any]:
    """Torch eager ``model([x])`` vs ONNX Runtime on the same inputs.

    Each torch box is paired with its best-overlapping ONNX box of the same label
    (IoU > 0.9 counts as matched); reports the matched count against the larger
    of the two box counts and the largest box / score difference among pairs.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    matched = total = 0
    box_diff = score_diff = 0.0
    for image in images:
        x = to_input(image, input_size)
        with torch.no_grad():
            ref = model([torch.from_numpy(x[0])])[0]
        boxes, labels, scores = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        ref_boxes, ref_labels = ref["boxes"].numpy(), ref["labels"].numpy()
        total += max(len(ref_boxes), len(boxes))
        if not len(ref_boxes) or not len(boxes):
            continue
        # ties in score make the order unstable: pair each box with its best
        # same-label overlap instead of by position
        iou = iou_matrix(ref_boxes, boxes) * (ref_labels[:, None] == labels[None])
        best = iou.argmax(1)
        ok = iou[np.arange(len(best)), best] > 0.9
        matched += int(ok.sum())
        if ok.any():
            box_diff = max(box_diff,
                           float(np.abs(ref_boxes[ok] - boxes[best[ok]]).max()))
            score_diff = max(score_diff, float(np.abs(
                ref["scores"].numpy()[ok] - scores[best[ok]]).max()))
    return {"parity_images": len(images), "parity_boxes": total,
            "parity_matched": matched, "parity_max_box_diff": round(box_diff, 6),
            "parity_max_score_diff": round(score_diff, 6)}


def export_faster_rcnn(model: nn.Module, meta: ModelMeta | dict[str, Any],
                       out_path: str | Path, simplify: bool = True,
                       images: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Export ``model`` (torchvision FasterRCNN, eval mode) to ONNX at
    ``meta.input_size``; returns a report (ops, size, parity on ``images`` or on
    4 generated frames)."""
    from training.export import embed_metadata
    from training.export import simplify as slim

    meta = ModelMeta.from_dict(meta) if isinstance(meta, dict) else meta
    input_size = (int(meta.input_size[0]), int(meta.input_size[1]))
    model = model.cpu().eval()
    check_fixed_size(model, input_size)
    num_classes = model.roi_heads.box_predictor.cls_score.out_features - 1
    if len(meta.class_names) != num_classes:
        raise ValueError(f"meta has {len(meta.class_names)} class names, model has "
                         f"{num_classes} classes")
    meta = ModelMeta(
        family="faster_rcnn", class_names=list(meta.class_names), input_size=input_size,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resize="stretch",
        layout="torchvision",
        dynamic_batch=False,
        params=FasterRCNNParams(label_offset=1),
        extra={**meta.extra,
               "rpn_post_nms_top_n_test": model.rpn._post_nms_top_n["testing"],
               "box_score_thresh": model.roi_heads.score_thresh})
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.rand(1, 3, *input_size)
    with trace_friendly(max(input_size)), torch.no_grad():
        wrapper = FixedSizeFasterRCNN(model, input_size).eval()
        torch.onnx.export(wrapper, (dummy,), str(out_path),
                          dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES), do_constant_folding=True)
    if simplify:
        slim(out_path)
    embed_metadata(out_path, meta)
    ops = op_counts(out_path)
    if ops.get("If", 0):
        log.warning("%s still has %d If nodes", out_path, ops["If"])
    report: dict[str, Any] = {
        "onnx": str(out_path), "size_mb": round(out_path.stat().st_size / 2**20, 2),
        "input_size": list(input_size), "opset": OPSET, "nodes": sum(ops.values()),
        "if_nodes": ops.get("If", 0), "nms_nodes": ops.get("NonMaxSuppression", 0),
        "dynamic_reshapes": dynamic_reshapes(out_path)}
    images = sample_images(4) if images is None else images
    report.update(parity(model, out_path, images, input_size))
    log.info("exported %s: %s", out_path, report)
    return report
