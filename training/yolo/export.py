"""ONNX export of both YOLO heads, with metadata and a torch-vs-ONNX parity check.

The graph has one input ``images`` [batch, 3, H, W] (RGB, /255, then mean/std)
and one output ``output0``: ``[batch, 4 + C, N]`` (anchor-free head) or
``[batch, S, S, 5B + C]`` (grid head). The batch axis is dynamic.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.image import preprocess
from core.meta import ModelMeta
from training.export import embed_metadata, max_abs_diff
from training.export import simplify as simplify_onnx

log = logging.getLogger(__name__)

OPSET = 17


def parity_images(meta: ModelMeta, n: int = 2, seed: int = 0) -> np.ndarray:
    """``[n, 3, H, W]`` float32 network inputs made from generated scenes."""
    from training.data.generate import render_scene

    rng = np.random.default_rng(seed)
    batch = []
    for _ in range(n):
        image, _, _ = render_scene(rng)
        batch.append(preprocess(image, tuple(meta.input_size), meta.resize, meta.mean,
                                meta.std)[0])
    return np.ascontiguousarray(np.stack(batch))


def export_yolo(model: nn.Module, meta: ModelMeta, out_path: str | Path,
                simplify: bool = True, images: np.ndarray | None = None
                ) -> dict[str, Any]:
    """Export ``model`` (export form) to ``out_path``; returns a report dict with
    the output shape, file size and ``max_abs_diff`` between torch and ONNX Runtime
    on ``images`` (default: two generated scenes, letterboxed)."""
    import onnxruntime as ort

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    model.export = True
    h, w = meta.input_size
    dummy = torch.zeros(1, 3, h, w)
    start = time.perf_counter()
    torch.onnx.export(model, (dummy,), str(out_path), dynamo=False, opset_version=OPSET,
                      input_names=["images"], output_names=["output0"],
                      dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}})
    embed_metadata(out_path, meta)
    if simplify:
        simplify_onnx(out_path)
    if images is None:
        images = parity_images(meta)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    session = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"images": images})[0]
    diff = max_abs_diff([expected], [actual])
    report = {"path": str(out_path), "output_shape": list(actual.shape),
              "size_mb": round(out_path.stat().st_size / 1e6, 2),
              "max_abs_diff": diff, "seconds": round(time.perf_counter() - start, 1)}
    log.info("exported %s: output %s, %.2f MB, torch-vs-onnx max diff %.2e",
             out_path, report["output_shape"], report["size_mb"], diff)
    return report
