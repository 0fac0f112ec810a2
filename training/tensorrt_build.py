"""``python -m training build-engine``: ONNX -> TensorRT engine + metadata sidecar.

The steps follow NVIDIA's efficientdet sample: parse the ONNX, log every input and
output, set the precision and a dynamic-batch optimisation profile, build, and
write ``<engine>.json`` beside the engine so the runtime can refuse an engine
built for another TensorRT or GPU.

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

import argparse
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from core.formats import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from core.image import RESIZE_MODES, preprocess
from core.meta import ModelError, ModelMeta, file_sha256, sidecar_path
from engines.backends.tensorrt import dims_tuple, require_tensorrt

if TYPE_CHECKING:  # typed against tensorrt-stubs; imported for real when building
    import tensorrt as trt

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_BATCH = (1, 4, 8)  # min, opt, max for models with a dynamic batch axis

Shape = tuple[int, ...]
Prepare = Callable[[np.ndarray], np.ndarray]  # BGR uint8 HxWx3 -> CHW float32


def trt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


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


# ---------------------------------------------------------------- pure helpers

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


def cuda_index(text: str) -> int:
    """``cuda``, ``cuda:N`` or ``N`` -> N (the project's ``--device`` vocabulary)."""
    name = text.strip().lower()
    index = "0" if name == "cuda" else name.removeprefix("cuda:")
    if not index.isdigit():
        raise argparse.ArgumentTypeError(f"device {text!r}: expected cuda, cuda:N "
                                         "or N (an engine builds on a GPU)")
    return int(index)


def meta_prepare(meta: ModelMeta) -> Prepare:
    """The detectors' pre-processing from ``meta``: BGR uint8 HxWx3 -> CHW float32.

    Letterbox (pad 114) or stretch to ``input_size``, BGR->RGB, /255, then
    ``(x - mean) / std``.
    """
    if meta.resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize {meta.resize!r}; expected one of "
                         f"{RESIZE_MODES}")
    size = (int(meta.input_size[0]), int(meta.input_size[1]))

    def prepare(image: np.ndarray) -> np.ndarray:
        return preprocess(image, size, meta.resize, meta.mean, meta.std)[0]

    return prepare


def detector_prepare(onnx_path: Path, meta: ModelMeta) -> Prepare:
    """The model family's own ``Detector.prepare`` when it loads, else ``meta_prepare``.

    Using the detector keeps calibration data identical to what inference feeds.
    """
    try:
        from engines.registry import load_detector

        detector = load_detector(onnx_path, device="cpu")
    except Exception as exc:  # family module missing or not loadable on CPU
        log.warning("calibration uses the metadata pre-processing (%s); could not "
                    "load the %s detector: %s", meta.resize, meta.family, exc)
        return meta_prepare(meta)

    def prepare(image: np.ndarray) -> np.ndarray:
        return np.asarray(detector.prepare(image).input, dtype=np.float32)

    return prepare


class CalibrationBatcher:
    """Fixed-size float32 NCHW batches for INT8 calibration.

    Reads up to ``max_images`` images from a folder (sorted by name) or frames
    spread evenly over a video, applies ``prepare`` (one BGR uint8 frame -> CHW
    float32, as the detector does) and yields ``(batch_size, C, H, W)`` arrays. A
    last partial batch is filled by repeating its own images, because TensorRT
    calibrates with the profile's fixed batch.
    """

    def __init__(self, source: str | Path, batch_size: int,
                 prepare: Prepare,
                 max_images: int = 256) -> None:
        if batch_size < 1:
            raise ValueError(f"calibration batch size must be >= 1, got {batch_size}")
        if max_images < 1:
            raise ValueError(f"--calib-images must be >= 1, got {max_images}")
        self.source = Path(source)
        if not self.source.exists():
            raise ValueError(f"calibration data not found: {self.source}")
        if self.source.is_file() and self.source.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"calibration data {self.source} is neither a folder of "
                             f"images nor a video ({sorted(VIDEO_SUFFIXES)})")
        self.batch_size = batch_size
        self.prepare = prepare
        self.max_images = max_images

    def images(self) -> Iterator[np.ndarray]:
        """BGR uint8 frames, at most ``max_images``."""
        if self.source.is_dir():
            files = sorted(p for p in self.source.iterdir()
                           if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"no images ({sorted(IMAGE_SUFFIXES)}) in "
                                 f"{self.source}")
            for path in files[: self.max_images]:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    log.warning("skipping unreadable image %s", path)
                    continue
                yield image
            return
        from pipeline.sources import media_info, read_frames

        total = media_info(self.source)[0]
        step = max(1, total // self.max_images) if total > 0 else 1
        for frame in read_frames(self.source, stride=step,
                                 max_frames=step * self.max_images):
            yield frame.image

    def __iter__(self) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        count = 0
        for image in self.images():
            pending.append(self.prepare(image))
            count += 1
            if len(pending) == self.batch_size:
                yield np.stack(pending).astype(np.float32, copy=False)
                pending = []
        if count == 0:
            raise ValueError(f"no frames could be read from {self.source}")
        if pending:
            filled = [pending[i % len(pending)] for i in range(self.batch_size)]
            yield np.stack(filled).astype(np.float32, copy=False)


def make_calibrator(batcher: CalibrationBatcher | None, cache_path: Path,
                    input_shape: Shape) -> Any:
    """An ``IInt8EntropyCalibrator2`` fed by ``batcher``; reuses ``cache_path``.

    When the cache file exists TensorRT reads it and never asks for batches, so
    ``batcher`` may be None then. Device memory for one batch is allocated here
    and freed by ``calibrator.free()``.
    """
    require_tensorrt()
    import tensorrt as trt

    from engines.backends.cuda_memory import DeviceBuffer, Stream

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = iter(batcher) if batcher is not None else iter(())
            self.shape = input_shape
            self.nbytes = int(np.prod(input_shape)) * 4
            self.device = DeviceBuffer(self.nbytes)
            self.stream = Stream()
            self.done = 0

        def get_batch_size(self) -> int:
            return int(self.shape[0]) if len(self.shape) == 4 else 1

        def get_batch(self, names: list[str]) -> list[int]:
            try:
                batch = next(self.batches)
            except StopIteration:
                return []  # tells TensorRT calibration data is exhausted
            if batch.size != np.prod(self.shape):
                raise ValueError(f"calibration batch {batch.shape} != profile "
                                 f"{self.shape}")
            batch = np.ascontiguousarray(batch.reshape(self.shape), dtype=np.float32)
            self.stream.copy_htod_async(self.device, batch)
            self.stream.synchronize()
            self.done += 1
            log.info("calibration batch %d (%d images)", self.done,
                     self.done * self.get_batch_size())
            return [self.device.ptr]

        # The stub types this as Buffer; TensorRT also accepts None = "no cache".
        def read_calibration_cache(self) -> bytes | None:  # type: ignore[override]
            if cache_path.is_file():
                log.info("reusing INT8 calibration cache %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))
            log.info("wrote INT8 calibration cache %s", cache_path)

        def free(self) -> None:
            self.device.free()
            self.stream.free()

    return EntropyCalibrator()


# ---------------------------------------------------------------- the builder

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
        strong = trt_major(trt.__version__) >= 11
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
    strong = trt_major(version) >= 11
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
    meta.extra = {
        **meta.extra,
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
    }
    sidecar_path(out).write_text(meta.to_json() + "\n")
    log.info("wrote %s", sidecar_path(out))
    return out


# ---------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", type=Path, help="ONNX model (with streamdet metadata)")
    parser.add_argument("--out", type=Path, default=None,
                        help="engine path (default: <onnx stem>_<precision>.engine "
                             "beside the ONNX)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16",
                        help="fp32, fp16 (default) or int8 (a Q/DQ ONNX from "
                             "`quantize --symmetric`, or calibration on TensorRT 10)")
    parser.add_argument("--calib-data", type=Path, default=None,
                        help="folder of images or a video for INT8 calibration")
    parser.add_argument("--calib-cache", type=Path, default=None,
                        help="INT8 calibration cache, reused when present "
                             "(default: the engine name with .calib)")
    parser.add_argument("--calib-images", type=int, default=256,
                        help="images/frames used for calibration (default 256)")
    parser.add_argument("--min-batch", type=int, default=None,
                        help=f"profile min batch (default {DEFAULT_BATCH[0]})")
    parser.add_argument("--opt-batch", type=int, default=None,
                        help=f"profile opt batch, also the INT8 calibration batch "
                             f"(default {DEFAULT_BATCH[1]})")
    parser.add_argument("--max-batch", type=int, default=None,
                        help=f"profile max batch (default {DEFAULT_BATCH[2]})")
    parser.add_argument("--workspace-gb", type=float, default=2.0,
                        help="builder workspace limit in GiB (default 2)")
    parser.add_argument("--timing-cache", type=Path, default=None,
                        help="timing cache file, loaded when present, saved after")
    parser.add_argument("--device", type=cuda_index, default=0,
                        help="GPU: cuda, cuda:N (or N); default cuda:0")


def run(args: argparse.Namespace) -> int:
    from engines.backends.cuda_memory import CudaError

    try:
        out = build_engine(
            args.onnx, args.out, args.precision, calib_data=args.calib_data,
            calib_cache=args.calib_cache, calib_images=args.calib_images,
            min_batch=args.min_batch, opt_batch=args.opt_batch,
            max_batch=args.max_batch, workspace_gb=args.workspace_gb,
            timing_cache=args.timing_cache, verbose=getattr(args, "verbose", False),
            device=args.device)
    except CudaError as exc:
        log.error("CUDA: %s", exc)
        return 2
    print(f"engine: {out}")
    print(f"metadata: {sidecar_path(out)}")
    return 0
