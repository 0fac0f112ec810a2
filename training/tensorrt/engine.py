"""``build_engine``: every check first (on any machine), then the build and the
metadata sidecar ``<engine>.json`` the runtime checks the engine against."""

from __future__ import annotations

import logging
from pathlib import Path

from core.meta import ModelError, ModelMeta, file_sha256, write_sidecar
from engines.backends.tensorrt import require_tensorrt
from training.tensorrt.builder import EngineBuilder
from training.tensorrt.calibration import (
    CalibrationBatcher,
    detector_prepare,
    make_calibrator,
    meta_prepare,
)
from training.tensorrt.fp16 import fp16_copy
from training.tensorrt.profile import batch_profile, onnx_signature
from training.tensorrt.qdq import qdq_nodes
from training.tensorrt.versions import PRECISIONS, strongly_typed

log = logging.getLogger(__name__)


def build_engine(onnx_path: str | Path, out: str | Path | None = None,
                 precision: str = "fp16", *, calib_data: str | Path | None = None,
                 calib_cache: str | Path | None = None, calib_images: int = 256,
                 min_batch: int | None = None, opt_batch: int | None = None,
                 max_batch: int | None = None, workspace_gb: float = 2.0,
                 timing_cache: str | Path | None = None, verbose: bool = False,
                 device: int = 0) -> Path:
    """Build ``onnx_path`` into a TensorRT engine; returns the engine path.

    Also writes ``<engine>.json``: the ONNX's ModelMeta with ``extra`` holding
    the TensorRT version, GPU name and compute capability, precision, input
    name/shape, the batch profile and the ONNX's sha256.
    Validation (paths, precision, batch profile, INT8 inputs) happens before
    TensorRT is imported, so mistakes are reported on any machine.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    # <stem>_<precision>.engine: one file per precision, and a sidecar that
    # cannot collide with the ONNX's own <stem>.json.
    out = (Path(out) if out is not None
           else onnx_path.with_name(f"{onnx_path.stem}_{precision}.engine"))
    if out.suffix.lower() not in (".engine", ".plan"):
        raise ValueError(f"--out must end in .engine or .plan, got {out}")
    input_name, input_shape, meta = onnx_signature(onnx_path)
    shapes = batch_profile(input_shape, min_batch, opt_batch, max_batch)
    cache_path = Path(calib_cache) if calib_cache else out.with_suffix(".calib")
    qdq, asymmetric = qdq_nodes(onnx_path)
    explicit = precision == "int8" and qdq > 0  # the ONNX holds its own scales
    if precision != "int8" and qdq:
        raise ValueError(f"{onnx_path} is quantized ({qdq} Q/DQ nodes): build it "
                         "with --precision int8, or build fp32/fp16 from the float "
                         "ONNX")
    if explicit and asymmetric:
        raise ModelError(f"{onnx_path}: TensorRT takes only symmetric int8 Q/DQ "
                         f"(zero point 0); {len(asymmetric)} QuantizeLinear nodes "
                         f"are not (first: {asymmetric[0]}); quantize again with "
                         "`python -m training quantize ... --symmetric`")
    if explicit and calib_data is not None:
        log.warning("%s already holds Q/DQ scales: --calib-data is not used",
                    onnx_path)
        calib_data = None
    if (precision == "int8" and not explicit and calib_data is None
            and not cache_path.is_file()):
        raise ValueError(f"int8 needs --calib-data DIR_OR_VIDEO, an existing "
                         f"calibration cache (--calib-cache; {cache_path} not "
                         "found), or a Q/DQ ONNX from `python -m training quantize "
                         "--symmetric`")
    if meta is None:
        log.warning("%s carries no streamdet metadata; the sidecar gets only the "
                    "input size, and the family is guessed at load time", onnx_path)
        meta = ModelMeta(family="", class_names=[],
                         input_size=(int(shapes[0][-2]), int(shapes[0][-1])))
    batcher = None
    if precision == "int8" and calib_data is not None:
        calib_batch = shapes[1][0] if len(shapes[1]) == 4 else 1  # CHW: one image
        batcher = CalibrationBatcher(calib_data, calib_batch, meta_prepare(meta),
                                     calib_images)  # validates the source now

    from engines.backends.cuda_memory import gpu_name_and_capability, set_device

    version = require_tensorrt()
    if batcher is not None:
        batcher.prepare = detector_prepare(onnx_path, meta)
    set_device(device)
    gpu_name, capability = gpu_name_and_capability(device)
    log.info("TensorRT %s on %s (compute %s)", version, gpu_name, capability)
    builder = EngineBuilder(verbose=verbose, workspace_gb=workspace_gb,
                            timing_cache=Path(timing_cache) if timing_cache else None)
    strong = strongly_typed(version)
    if precision == "int8" and strong and not explicit:
        raise ModelError(f"TensorRT {version} has no implicit INT8 calibration: "
                         f"quantize {onnx_path} first (`python -m training quantize "
                         f"{onnx_path} --calibration SOURCE --symmetric`) and build "
                         "int8 from that file")
    network_onnx = onnx_path
    if precision == "fp16" and strong:
        network_onnx = fp16_copy(onnx_path, out.with_suffix(".fp16.onnx"))
    builder.create_network(network_onnx)
    calibrator = (make_calibrator(batcher, cache_path, shapes[1])
                  if precision == "int8" and not explicit else None)
    quantization = ("explicit" if explicit else "implicit"
                    if precision == "int8" else "none")
    log.info("building %s (%s network, int8 quantization %s)", precision,
             "strongly typed" if strong else "weakly typed", quantization)
    try:
        builder.create_engine(out, precision, shapes, calibrator,
                              typed=explicit or network_onnx != onnx_path)
    finally:
        if calibrator is not None:
            calibrator.free()
    network = builder.network
    assert network is not None
    meta.dynamic_batch = shapes[0][0] != shapes[2][0]
    meta = meta.updated({
        "tensorrt_version": version,
        "gpu_name": gpu_name,
        "compute_capability": capability,
        "precision": precision,
        "int8_quantization": quantization,
        "network_onnx": str(network_onnx),
        "input_name": input_name,
        "input_shape": list(input_shape),
        "output_names": [network.get_output(i).name
                         for i in range(network.num_outputs)],
        "profile": {"min": list(shapes[0]), "opt": list(shapes[1]),
                    "max": list(shapes[2])},
        "onnx_sha256": file_sha256(onnx_path),
        "onnx_path": str(onnx_path),
    })
    log.info("wrote %s", write_sidecar(out, meta))
    return out
