"""TensorRT backend: runs a serialized ``.engine``/``.plan`` on an NVIDIA GPU.

Engines come from ``python -m training build-engine`` (TensorRT 10.x), which
writes ``<engine>.json`` beside the engine. A TensorRT engine only runs on the
TensorRT version and GPU model it was built for, so ``load`` first checks that
sidecar (``check_engine_sidecar``) and says how to rebuild, instead of letting
deserialization fail with TensorRT's opaque error.

Memory: one pinned host and one device buffer per static-shape tensor, sized
for the profile's max batch and allocated once. Outputs whose shape depends on
the data (Faster R-CNN's ``boxes [N, 4]``) get an ``IOutputAllocator`` that
grows a device buffer on demand; their shape is what TensorRT reports to it.

Threads: one execution context, stream and buffer set per backend instance,
guarded by a lock, so concurrent ``infer`` calls are serialized. For parallel
inference open one backend per thread (each deserializes its own engine).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.meta import ModelError, ModelMeta, read_sidecar_data, sidecar_path
from engines.base import Backend

if TYPE_CHECKING:  # typed against tensorrt-stubs; imported for real in load()
    import tensorrt as trt

    from engines.backends.cuda_memory import DeviceBuffer, PinnedBuffer, Stream

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("family", "class_names", "input_size")
REQUIRED_EXTRA = ("tensorrt_version", "gpu_name", "compute_capability")


def require_tensorrt() -> str:
    """The installed TensorRT's version, or a ModelError saying how to install it.

    ``tensorrt-stubs`` alone leaves an importable but empty namespace package,
    hence the ``Runtime`` check. Callers then ``import tensorrt as trt`` locally,
    which keeps the module typed for mypy.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ModelError("TensorRT is not installed; see requirements-gpu.txt "
                         "(TensorRT 10.x from NVIDIA's package index)") from exc
    if not hasattr(trt, "Runtime"):
        raise ModelError("the 'tensorrt' module found is empty (only type stubs are "
                         "installed?); install TensorRT 10.x, see requirements-gpu.txt")
    return str(trt.__version__)


def parse_device(device: str) -> int:
    """"cuda" / "cuda:N" / "tensorrt[:N]" -> device index N (default 0)."""
    kind, _, index = str(device).partition(":")
    if kind not in ("cuda", "tensorrt", "gpu") or (index and not index.isdigit()):
        raise ModelError(f"device {device!r} is not a CUDA device; TensorRT engines "
                         "run on 'cuda' or 'cuda:N'")
    return int(index or 0)


def _rebuild_hint(path: Path, sidecar: dict[str, Any]) -> str:
    extra = sidecar.get("extra") or {}
    onnx = extra.get("onnx_path", "<model.onnx>")
    precision = sidecar.get("precision") or extra.get("precision", "fp16")
    return (f"rebuild with: python -m training build-engine {onnx} --out {path} "
            f"--precision {precision}")


def check_engine_sidecar(path: str | Path, sidecar: dict[str, Any],
                         runtime_version: str, gpu_name: str,
                         capability: str) -> ModelMeta:
    """The engine's ModelMeta, after checking it was built for this TensorRT and GPU.

    Raises ModelError naming the engine, both versions or GPUs and the rebuild
    command when they differ (engines are not portable across TensorRT versions
    or GPU models), or when the sidecar lacks a field.
    """
    path = Path(path)
    if not isinstance(sidecar, dict):
        raise ModelError(f"{path}: metadata sidecar is not a JSON object")
    extra = sidecar.get("extra")
    missing = [k for k in REQUIRED_FIELDS if k not in sidecar]
    missing += [f"extra.{k}" for k in REQUIRED_EXTRA
                if not isinstance(extra, dict) or k not in extra]
    if missing:
        raise ModelError(f"{path}: metadata sidecar {sidecar_path(path)} lacks "
                         f"{', '.join(missing)}; {_rebuild_hint(path, sidecar)}")
    assert isinstance(extra, dict)
    built_version = str(extra["tensorrt_version"])
    if built_version != str(runtime_version):
        raise ModelError(f"{path}: engine built with TensorRT {built_version}, but "
                         f"TensorRT {runtime_version} is running; "
                         f"{_rebuild_hint(path, sidecar)}")
    built_gpu = (str(extra["gpu_name"]), str(extra["compute_capability"]))
    if built_gpu != (str(gpu_name), str(capability)):
        raise ModelError(f"{path}: engine built for {built_gpu[0]} (compute "
                         f"{built_gpu[1]}), but this GPU is {gpu_name} (compute "
                         f"{capability}); {_rebuild_hint(path, sidecar)}")
    try:
        return ModelMeta.from_dict(sidecar)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable metadata sidecar: {exc}") from exc


def dims_tuple(dims: Any) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


def _output_allocator() -> Any:
    """An ``IOutputAllocator`` for data-dependent output shapes.

    TensorRT asks it for memory during ``execute_async_v3`` and tells it the
    real shape; buffers grow (x2) and are kept for the next call.
    """
    import tensorrt as trt

    from engines.backends.cuda_memory import DeviceBuffer

    class OutputAllocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, DeviceBuffer] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, tensor_name: str, memory: int, size: int,
                              alignment: int) -> int:
            buffer = self.buffers.get(tensor_name)
            if buffer is None or buffer.nbytes < size:
                grown = max(int(size), 2 * buffer.nbytes if buffer else 0, 1)
                if buffer is not None:
                    buffer.free()
                buffer = self.buffers[tensor_name] = DeviceBuffer(grown)
            return int(buffer.ptr)

        def reallocate_output_async(self, tensor_name: str, memory: int, size: int,
                                    alignment: int, stream: int) -> int:
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name: str, shape: Any) -> None:
            self.shapes[tensor_name] = dims_tuple(shape)

        def free(self) -> None:
            for buffer in self.buffers.values():
                buffer.free()
            self.buffers.clear()

    return OutputAllocator()


class TensorRTBackend(Backend):
    """Runs a TensorRT engine; ``device`` is "cuda" or "cuda:N".

    After ``load``: ``meta``, ``input_name``, ``input_shape`` (batch axis
    "batch" when dynamic), ``output_names``, ``output_shapes``, and
    ``min_batch``/``max_batch`` of the engine's optimisation profile (``infer``
    accepts batches in that range).
    """

    def __init__(self, path: str | Path, device: str = "cuda:0",
                 threads: int | None = None) -> None:
        if threads is not None:
            log.info("%s: --threads ignored (a TensorRT engine runs on the GPU)", path)
        self._lock = threading.Lock()
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._runtime: trt.Runtime | None = None
        self._stream: Stream | None = None
        self._allocator: Any = None
        # tensor name -> (pinned host, device) buffers, for static-shape tensors
        self._buffers: dict[str, tuple[PinnedBuffer, DeviceBuffer]] = {}
        self._dynamic: list[str] = []
        super().__init__(path, device, threads)

    def load(self) -> None:
        try:
            self._load()
        except BaseException:
            self.close()  # free what was allocated before the failure
            raise

    def _load(self) -> None:
        index = self._device_index = parse_device(self.device)
        sidecar_file = sidecar_path(self.path)
        # an engine carries no metadata of its own: the sidecar is required
        sidecar = read_sidecar_data(self.path, warn=False)
        if sidecar is None:
            state = ("is not a streamdet metadata sidecar" if sidecar_file.is_file()
                     else "is missing")
            raise ModelError(f"{self.path}: its metadata sidecar {sidecar_file} "
                             f"{state}; engines built by 'python -m training "
                             "build-engine' carry one (rebuild with: python -m "
                             f"training build-engine <model.onnx> --out {self.path})")
        version = require_tensorrt()
        import tensorrt as trt

        from engines.backends import cuda_memory as cm

        try:
            cm.set_device(index)
            gpu_name, capability = cm.gpu_name_and_capability(index)
        except cm.CudaError as exc:
            raise ModelError(f"{self.path}: no usable CUDA device {self.device!r}: "
                             f"{exc}") from exc
        self.meta = check_engine_sidecar(self.path, sidecar, version, gpu_name,
                                         capability)

        self._logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self._logger, "")
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ModelError(f"{self.path}: TensorRT could not deserialize the engine; "
                             f"{_rebuild_hint(self.path, sidecar)}")
        self._engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names
                  if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: expected one image input, found {inputs}")
        self.input_name = inputs[0]
        self.output_names = [n for n in names if n not in inputs]
        # Declared shapes, -1 (dynamic) as "batch" on axis 0 else "?"; as ORT gives.
        self.output_shapes = [
            tuple(("batch" if i == 0 else "?") if d < 0 else d
                  for i, d in enumerate(dims_tuple(engine.get_tensor_shape(n))))
            for n in self.output_names]
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n)))
                        for n in names}

        lo, _, hi = (dims_tuple(d) for d in
                     engine.get_tensor_profile_shape(self.input_name, 0))
        # Rank 3 = one unbatched CxHxW image (torchvision Faster R-CNN exports).
        self._batched = len(hi) != 3
        self.min_batch, self.max_batch = (lo[0], hi[0]) if self._batched else (1, 1)
        self._max_shape = hi
        declared = dims_tuple(engine.get_tensor_shape(self.input_name))
        self.input_shape = tuple("batch" if d < 0 else d for d in declared)

        context = self._context = engine.create_execution_context()
        self._stream = cm.Stream()
        self._buffers[self.input_name] = (
            cm.PinnedBuffer(hi, self._dtypes[self.input_name]),
            cm.DeviceBuffer(int(np.prod(hi)) * self._dtypes[self.input_name].itemsize))
        # Output sizes at the max batch bound every smaller batch.
        context.set_input_shape(self.input_name, trt.Dims(list(hi)))
        for name in self.output_names:
            shape = dims_tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):  # data-dependent, e.g. boxes [N, 4]
                self._dynamic.append(name)
                continue
            nbytes = int(np.prod(shape)) * self._dtypes[name].itemsize
            self._buffers[name] = (cm.PinnedBuffer(shape, self._dtypes[name]),
                                   cm.DeviceBuffer(nbytes))
        if self._dynamic:
            self._allocator = _output_allocator()
            for name in self._dynamic:
                context.set_output_allocator(name, self._allocator)
        log.info("loaded %s on %s (compute %s), TensorRT %s: input %s %s batch "
                 "%d..%d, outputs %s", self.path.name, gpu_name, capability,
                 version, self.input_name, self.input_shape, self.min_batch,
                 self.max_batch, self.output_names)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """NCHW batch within the profile's batch range -> outputs, one per name.

        Static-shape outputs come back with this batch's shape; data-dependent
        ones with the shape TensorRT reported for this call.
        """
        import tensorrt as trt

        from engines.backends.cuda_memory import set_device

        if self._context is None or self._stream is None:
            raise RuntimeError(f"{self.path}: backend is closed")
        batch = np.asarray(batch)
        if batch.ndim != len(self._max_shape) or batch.shape[1:] != self._max_shape[1:]:
            raise ValueError(f"{self.path}: input shape {batch.shape} does not match "
                             f"the engine input {self.input_shape}")
        n = int(batch.shape[0]) if self._batched else 1
        if not self.min_batch <= n <= self.max_batch:
            raise ValueError(f"{self.path}: batch {n} is outside the engine's "
                             f"optimization profile [{self.min_batch}, "
                             f"{self.max_batch}]; rebuild with --max-batch {n} "
                             f"or send smaller batches")
        with self._lock:
            context, stream = self._context, self._stream
            # The current device is per host thread; load() may have run elsewhere.
            set_device(self._device_index)
            dims = trt.Dims(list(batch.shape))
            if not context.set_input_shape(self.input_name, dims):
                raise RuntimeError(f"{self.path}: set_input_shape{batch.shape} failed")
            pinned, device = self._buffers[self.input_name]
            host_in = pinned.array[:n] if self._batched else pinned.array
            np.copyto(host_in, batch, casting="same_kind")
            stream.copy_htod_async(device, host_in)
            context.set_tensor_address(self.input_name, device.ptr)
            for name in self.output_names:
                if name not in self._dynamic:
                    context.set_tensor_address(name, self._buffers[name][1].ptr)
            if self._allocator is not None:
                self._allocator.shapes.clear()  # filled again by notify_shape
            if not context.execute_async_v3(stream.handle):
                raise RuntimeError(f"{self.path}: execute_async_v3 failed (see the "
                                   "TensorRT log above)")
            outputs = []
            for name in self.output_names:
                if name in self._dynamic:
                    shape = self._allocator.shapes.get(name)
                    if shape is None:
                        raise RuntimeError(f"{self.path}: TensorRT reported no shape "
                                           f"for output {name!r}")
                    host = np.empty(shape, self._dtypes[name])
                    if host.nbytes:  # N = 0 detections: nothing to copy
                        stream.copy_dtoh_async(host, self._allocator.buffers[name])
                else:
                    shape = dims_tuple(context.get_tensor_shape(name))
                    size = int(np.prod(shape))
                    flat = self._buffers[name][0].array.reshape(-1)
                    host = flat[:size].reshape(shape)
                    stream.copy_dtoh_async(host, self._buffers[name][1])
                outputs.append(host)
            stream.synchronize()
            # Copies: the pinned buffers are overwritten by the next call.
            return [out if name in self._dynamic else out.copy()
                    for name, out in zip(self.output_names, outputs, strict=True)]

    def warmup(self, runs: int = 2) -> None:
        shape = ((self.min_batch, *self._max_shape[1:]) if self._batched
                 else self._max_shape)
        for _ in range(runs):
            self.infer(np.zeros(shape, dtype=self._dtypes[self.input_name]))

    def close(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.synchronize()
            for pinned, device in self._buffers.values():
                pinned.free()
                device.free()
            self._buffers.clear()
            if self._allocator is not None:
                self._allocator.free()
                self._allocator = None
            if self._stream is not None:
                self._stream.free()
                self._stream = None
            # Context before engine before runtime, as TensorRT requires.
            self._context = None
            self._engine = None
            self._runtime = None
