"""The ONNX's image input and the optimisation profile built over its batch axis."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.meta import ModelError, ModelMeta

DEFAULT_BATCH = (1, 4, 8)  # min, opt, max for models with a dynamic batch axis

Shape = tuple[int, ...]


def batch_profile(input_shape: Sequence[int | str | None],
                  min_batch: int | None = None, opt_batch: int | None = None,
                  max_batch: int | None = None) -> tuple[Shape, Shape, Shape]:
    """(min, opt, max) input shapes of an optimisation profile over the batch axis.

    ``input_shape`` is the ONNX input's shape: ints for static dims, a name /
    None / -1 for dynamic ones. Only axis 0 (batch) may be dynamic. Unset values
    default to ``DEFAULT_BATCH`` (clamped to each other) for a dynamic batch and
    to the fixed batch for a static one; a static-batch model asked for another
    batch is refused, since TensorRT cannot change a batch fixed in the graph.
    A rank-3 input is one unbatched CxHxW image (torchvision Faster R-CNN
    exports): its shape is used as is and only batch 1 is accepted.
    """
    dims = list(input_shape)
    if len(dims) < 3:
        raise ValueError(f"input shape {tuple(dims)} is not [C, H, W] or [N, C, H, W]")
    for name, value in (("min", min_batch), ("opt", opt_batch), ("max", max_batch)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"--{name}-batch must be an integer >= 1, got {value!r}")
    if len(dims) == 3:
        if any(not isinstance(d, int) or d < 1 for d in dims):
            raise ValueError(f"input shape {tuple(dims)}: a dynamic image size is not "
                             "supported; export the ONNX with a fixed input size")
        if {min_batch, opt_batch, max_batch} - {None, 1}:
            raise ValueError(f"input shape {tuple(dims)} has no batch axis (one image "
                             "per run); build without --min/--opt/--max-batch")
        chw = tuple(int(d) for d in dims if isinstance(d, int))
        return chw, chw, chw
    rest: list[int] = []
    for d in dims[1:]:
        if not isinstance(d, int) or d < 1:
            raise ValueError(f"input shape {tuple(dims)}: only the batch axis may be "
                             "dynamic; export the ONNX with a fixed input size")
        rest.append(d)
    first = dims[0]
    if isinstance(first, int) and first > 0:
        fixed = first
        asked = {v for v in (min_batch, opt_batch, max_batch) if v is not None}
        if asked - {fixed}:
            raise ValueError(
                f"the ONNX input has a fixed batch of {fixed} (shape {tuple(dims)}) "
                f"but batch {sorted(asked)} was asked; re-export with a dynamic "
                f"batch axis or build with --min/--opt/--max-batch {fixed}")
        shape = (fixed, *rest)
        return shape, shape, shape
    lo = min_batch or DEFAULT_BATCH[0]
    hi = max_batch or max(DEFAULT_BATCH[2], lo)
    mid = opt_batch or min(max(DEFAULT_BATCH[1], lo), hi)
    if not lo <= mid <= hi:
        raise ValueError(f"batch profile needs min <= opt <= max, got "
                         f"min={lo} opt={mid} max={hi}")
    return (lo, *rest), (mid, *rest), (hi, *rest)


def onnx_signature(onnx_path: str | Path
                   ) -> tuple[str, list[int | str], ModelMeta | None]:
    """(input name, input shape, streamdet metadata or None) of an ONNX file.

    Dynamic dims come back as their symbolic name (or "?"). Weights are not read.
    """
    import onnx

    from engines.backends.onnxruntime import read_meta

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"{onnx_path}: expected one image input, found "
                         f"{[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape: list[int | str] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                              else (d.dim_param or "?") for d in dims]
    custom = {p.key: p.value for p in model.metadata_props}
    try:
        meta = read_meta(Path(onnx_path), custom)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{onnx_path}: unreadable streamdet metadata: {exc}") from exc
    return inputs[0].name, shape, meta
