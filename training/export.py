"""ONNX export plumbing shared by every family: metadata, simplification, parity.

The families' exporters (``training.yolo.export``, ``training.faster_rcnn.export``)
import these; the ``export`` command, which picks an exporter by the checkpoint's
architecture, lives in ``training.checkpoint``, so this module imports no
exporter back.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core.meta import META_KEY, ModelMeta

log = logging.getLogger(__name__)


def embed_metadata(onnx_path: str | Path, meta: ModelMeta) -> None:
    """Store ``meta`` in the ONNX file's ``metadata_props`` (key ``streamdet``)."""
    import onnx

    model = onnx.load(str(onnx_path))
    props = {p.key: p.value for p in model.metadata_props}
    props[META_KEY] = meta.to_json()
    props["names"] = str(dict(enumerate(meta.class_names)))  # what Ultralytics reads
    props["imgsz"] = str(list(meta.input_size))
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(onnx_path))


def simplify(onnx_path: str | Path) -> None:
    """Constant-fold and simplify in place with onnxslim (keeps metadata)."""
    import onnx
    import onnxslim

    model = onnx.load(str(onnx_path))
    props = [(p.key, p.value) for p in model.metadata_props]
    slim = onnxslim.slim(model)
    del slim.metadata_props[:]
    for key, value in props:
        entry = slim.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(slim)
    onnx.save(slim, str(onnx_path))


def max_abs_diff(expected: list[np.ndarray], actual: list[np.ndarray]) -> float:
    """Largest absolute difference over paired outputs (shapes must match)."""
    if len(expected) != len(actual):
        raise ValueError(f"output count differs: {len(expected)} vs {len(actual)}")
    worst = 0.0
    for e, a in zip(expected, actual, strict=True):
        if e.shape != a.shape:
            raise ValueError(f"output shape differs: {e.shape} vs {a.shape}")
        if e.size:
            worst = max(worst, float(np.abs(e.astype(np.float64) - a).max()))
    return worst
