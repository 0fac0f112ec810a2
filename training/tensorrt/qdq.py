"""Q/DQ inspection of an explicitly quantized ONNX (``quantize --symmetric``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def qdq_nodes(onnx_path: str | Path) -> tuple[int, list[str]]:
    """(number of Q/DQ nodes, names of QuantizeLinear nodes TensorRT cannot take:
    a zero point that is not int8 zeros)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name: i for i in model.graph.initializer}
    count, asymmetric = 0, []
    for node in model.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        count += 1
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        zero = inits.get(node.input[2])
        if zero is None:
            continue  # produced by another node: TensorRT's parser will judge it
        value = numpy_helper.to_array(zero)
        if value.dtype != np.int8 or np.any(value != 0):
            asymmetric.append(node.name or node.output[0])
    return count, asymmetric
