"""The fp16 network TensorRT 11 builds: an fp16 copy of the ONNX, fp32 at its
edges (11.x has no FP16 builder flag; the network carries its precision)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def fp16_copy(onnx_path: str | Path, out: str | Path) -> Path:
    """``onnx_path`` with fp16 weights and compute but fp32 inputs/outputs (the
    network TensorRT 11 builds as fp16); metadata kept."""
    import onnx
    from onnxruntime.transformers.float16 import (  # type: ignore[import-untyped]
        convert_float_to_float16,
    )

    model = onnx.load(str(onnx_path))
    half = convert_float_to_float16(model, keep_io_types=True)
    del half.metadata_props[:]
    half.metadata_props.extend(model.metadata_props)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(out))
    log.info("wrote %s (fp16 weights and compute, fp32 inputs/outputs)", out)
    return out
