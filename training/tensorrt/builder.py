"""``EngineBuilder``: an ONNX parsed into a TensorRT network, built into an engine."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.meta import ModelError
from engines.backends.tensorrt import dims_tuple, require_tensorrt
from training.tensorrt.profile import Shape
from training.tensorrt.versions import PRECISIONS, strongly_typed

if TYPE_CHECKING:  # typed against tensorrt-stubs; imported for real when building
    import tensorrt as trt

log = logging.getLogger(__name__)


class EngineBuilder:
    """Parses an ONNX into a TensorRT network and builds a serialized engine.

    ``workspace_gb`` caps the builder's scratch memory; ``timing_cache`` (a file)
    makes rebuilds on the same GPU fast and is loaded when present, saved after.
    """

    def __init__(self, verbose: bool = False, workspace_gb: float = 2.0,
                 timing_cache: Path | None = None) -> None:
        if workspace_gb <= 0:
            raise ValueError(f"--workspace-gb must be > 0, got {workspace_gb}")
        require_tensorrt()
        import tensorrt as trt

        level = trt.Logger.VERBOSE if verbose else trt.Logger.WARNING
        self.logger = trt.Logger(level)
        trt.init_libnvinfer_plugins(self.logger, namespace="")
        self.builder = trt.Builder(self.logger)
        self.config = self.builder.create_builder_config()
        self.config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                          int(workspace_gb * (1 << 30)))
        self.timing_cache = timing_cache
        self.network: trt.INetworkDefinition | None = None
        self.parser: trt.OnnxParser | None = None

    def create_network(self, onnx_path: Path) -> None:
        """Parse ``onnx_path``; raise ModelError listing every parser error."""
        import tensorrt as trt

        # 10.x networks are always explicit-batch (the EXPLICIT_BATCH flag is
        # ignored). Weakly typed (no STRONGLY_TYPED flag) so the FP16/INT8
        # builder flags may pick lower-precision kernels. 11.x networks are always
        # strongly typed (its STRONGLY_TYPED flag is ignored): flags 0 for both.
        network = self.network = self.builder.create_network(0)
        parser = self.parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = []
            for i in range(parser.num_errors):
                err = parser.get_error(i)
                errors.append(f"  node {err.node()} ({err.node_name() or '?'}, "
                              f"{err.node_operator() or '?'}): {err.desc()}")
            raise ModelError(f"{onnx_path}: TensorRT's ONNX parser failed with "
                             f"{len(errors)} error(s):\n" + "\n".join(errors))
        for kind, count, get in (("input", network.num_inputs, network.get_input),
                                 ("output", network.num_outputs, network.get_output)):
            for i in range(count):
                tensor = get(i)
                log.info("network %s %r: shape %s, dtype %s", kind, tensor.name,
                         dims_tuple(tensor.shape), tensor.dtype)

    def create_engine(self, out: Path, precision: str,
                      profile_shapes: tuple[Shape, Shape, Shape],
                      calibrator: Any = None, typed: bool = False) -> None:
        """Build and write the serialized engine to ``out``.

        ``typed``: the parsed network carries its precision (TensorRT 11, or a
        Q/DQ ONNX): no precision flags are set on 11.x, and on 10.x only those
        explicit quantization needs (no calibrator)."""
        import tensorrt as trt

        network = self.network
        if network is None:
            raise RuntimeError("create_network must run before create_engine")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, "
                             f"got {precision!r}")
        strong = strongly_typed(trt.__version__)
        if precision != "fp32" and strong and not typed:
            raise ModelError(
                f"TensorRT {trt.__version__} removed the FP16/INT8 builder flags and "
                "implicit INT8 calibration: the network must carry its precision "
                "(an fp16 ONNX, or a Q/DQ ONNX from `python -m training quantize "
                "--symmetric`)")
        name = network.get_input(0).name
        profile = self.builder.create_optimization_profile()
        lo, mid, hi = (trt.Dims(list(s)) for s in profile_shapes)
        profile.set_shape(name, lo, mid, hi)
        self.config.add_optimization_profile(profile)
        log.info("profile for %r: min %s opt %s max %s", name, *profile_shapes)
        if precision in ("fp16", "int8") and not strong:
            self.config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8" and not strong and typed:
            self.config.set_flag(trt.BuilderFlag.INT8)  # Q/DQ: explicit quantization
        elif precision == "int8" and not strong:
            if calibrator is None:
                raise ValueError("int8 needs a calibrator")
            self.config.set_flag(trt.BuilderFlag.INT8)
            self.config.int8_calibrator = calibrator  # deprecated since 10.1, works
            # Calibration runs at a fixed shape: the profile's opt batch.
            calib = self.builder.create_optimization_profile()
            calib.set_shape(name, mid, mid, mid)
            self.config.set_calibration_profile(calib)
        cache = self._load_timing_cache()
        plan = self.builder.build_serialized_network(network, self.config)
        if plan is None:
            raise ModelError("TensorRT failed to build the engine; rerun with "
                             "--verbose for the builder's log")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(bytes(plan))
        log.info("wrote %s (%.1f MB, %s)", out, out.stat().st_size / 1e6, precision)
        if cache is not None and self.timing_cache is not None:
            data = self.config.get_timing_cache().serialize()
            self.timing_cache.parent.mkdir(parents=True, exist_ok=True)
            self.timing_cache.write_bytes(bytes(data))
            log.info("saved timing cache %s", self.timing_cache)

    def _load_timing_cache(self) -> Any:
        if self.timing_cache is None:
            return None
        data = self.timing_cache.read_bytes() if self.timing_cache.is_file() else b""
        cache = self.config.create_timing_cache(data)
        self.config.set_timing_cache(cache, ignore_mismatch=False)
        log.info("%s timing cache %s", "loaded" if data else "new", self.timing_cache)
        return cache
