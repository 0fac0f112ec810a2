"""The build precisions and what each TensorRT major version makes of them.

Precision, by TensorRT major version:

* TensorRT 10.x (weakly typed networks): fp16 sets ``BuilderFlag.FP16``; int8
  sets FP16 + INT8 and, for a plain fp32 ONNX, calibrates implicitly with an
  entropy calibrator (deprecated by NVIDIA since 10.1, still working). An ONNX
  that already holds Q/DQ nodes (``python -m training quantize --symmetric``) is
  built with explicit quantization instead: the flags, no calibrator.
* TensorRT 11.x (networks always strongly typed; the precision flags and
  calibrators are gone): the ONNX itself carries the precision. fp16 builds from
  an fp16 copy of the ONNX with fp32 inputs/outputs (``<engine stem>.fp16.onnx``,
  written beside the engine); int8 builds from a Q/DQ ONNX (explicit
  quantization, as NVIDIA's Model Optimizer produces), whose quantize zero points
  must be 0 (TensorRT's Q/DQ is symmetric). This 11.x path follows NVIDIA's 11.x
  migration guide and is tested through fakes only: it has not run on a GPU.
"""

from __future__ import annotations

PRECISIONS = ("fp32", "fp16", "int8")


def trt_major(version: str) -> int:
    """The major version of a TensorRT version string (0 when unreadable)."""
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def strongly_typed(version: str) -> bool:
    """Whether TensorRT ``version`` builds only strongly typed networks (11.x on):
    no precision flags, no implicit INT8 calibration."""
    return trt_major(version) >= 11
