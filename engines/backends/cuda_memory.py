"""CUDA memory and streams for the TensorRT backend, via NVIDIA's ``cuda-python``.

The only module in streamdet that makes CUDA calls. It uses the CUDA *runtime*
API (``from cuda.bindings import runtime``; older cuda-python: ``from cuda import
cudart``) and checks every return code. pycuda is not used: it needs the CUDA
toolkit and driver to build, and its ``autoinit`` creates a context on import.
Importing this module touches no GPU; ``cuda-python`` itself is imported on the
first call.

Pointers are plain ``int`` device/host addresses, which is what TensorRT's
``set_tensor_address`` and the calibrator's ``get_batch`` take.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class CudaError(RuntimeError):
    """A CUDA runtime call failed; the message names the call and CUDA's error."""


_CUDART: Any = None


def cudart() -> Any:
    """The cuda-python runtime module (imported once, lazily)."""
    global _CUDART
    if _CUDART is None:
        try:
            from cuda.bindings import runtime
        except ImportError:
            try:
                from cuda import cudart as runtime  # cuda-python < 12.6
            except ImportError as exc:
                raise CudaError(
                    "cuda-python is not installed; install the GPU extras: "
                    "pip install -r requirements-gpu.txt") from exc
        _CUDART = runtime
    return _CUDART


def check(result: Any, call: str) -> Any:
    """Unpack a cuda-python result tuple ``(err, *values)``; raise on any error.

    Returns None, the single value, or a tuple of values.
    """
    rt = cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        _, name = rt.cudaGetErrorName(err)
        _, text = rt.cudaGetErrorString(err)
        raise CudaError(f"{call} failed: {_text(name)} ({_text(text)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def device_count() -> int:
    """Number of CUDA devices; 0 when there is no driver or no device."""
    try:
        return int(check(cudart().cudaGetDeviceCount(), "cudaGetDeviceCount"))
    except CudaError as exc:
        log.debug("no CUDA device: %s", exc)
        return 0


def set_device(device: int = 0) -> None:
    check(cudart().cudaSetDevice(device), f"cudaSetDevice({device})")


def gpu_name_and_capability(device: int = 0) -> tuple[str, str]:
    """("NVIDIA H100 80GB HBM3", "9.0"): what an engine is tied to."""
    props = check(cudart().cudaGetDeviceProperties(device),
                  f"cudaGetDeviceProperties({device})")
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return str(name).strip(), f"{props.major}.{props.minor}"


class DeviceBuffer:
    """``nbytes`` of device memory (cudaMalloc); ``ptr`` is its address."""

    def __init__(self, nbytes: int) -> None:
        if nbytes < 0:
            raise ValueError(f"DeviceBuffer size must be >= 0, got {nbytes}")
        self.nbytes = int(nbytes)
        # cudaMalloc(0) returns a null pointer; TensorRT rejects null addresses.
        self.ptr: int = int(check(cudart().cudaMalloc(max(self.nbytes, 1)),
                                  f"cudaMalloc({self.nbytes})"))

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            check(cudart().cudaFree(ptr), "cudaFree")

    def __int__(self) -> int:
        return self.ptr

    def __enter__(self) -> DeviceBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()


class PinnedBuffer:
    """Page-locked host memory (cudaHostAlloc) seen as a NumPy array ``array``.

    Copies from/to pinned memory can run asynchronously on a stream; copies from
    pageable NumPy memory are staged and synchronous.
    """

    def __init__(self, shape: tuple[int, ...] | int, dtype: Any = np.float32) -> None:
        dims = (shape,) if isinstance(shape, int) else shape
        self.shape = tuple(int(d) for d in dims)
        if any(d < 0 for d in self.shape):
            raise ValueError(f"PinnedBuffer shape must be >= 0, got {self.shape}")
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        rt = cudart()
        self.ptr: int = int(check(rt.cudaHostAlloc(max(self.nbytes, 1),
                                                   rt.cudaHostAllocDefault),
                                  f"cudaHostAlloc({self.nbytes})"))
        raw = (ctypes.c_byte * max(self.nbytes, 1)).from_address(self.ptr)
        self.array: np.ndarray = np.frombuffer(raw, dtype=np.uint8)[: self.nbytes].view(
            self.dtype).reshape(self.shape)

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self.array = np.empty(0, self.dtype)  # drop the view before freeing
            check(cudart().cudaFreeHost(ptr), "cudaFreeHost")

    def __enter__(self) -> PinnedBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()


def _address(buffer: DeviceBuffer | int) -> int:
    return buffer.ptr if isinstance(buffer, DeviceBuffer) else int(buffer)


class Stream:
    """A non-blocking CUDA stream; ``handle`` is what ``execute_async_v3`` takes."""

    def __init__(self) -> None:
        rt = cudart()
        created = rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking)
        self._stream: Any = check(created, "cudaStreamCreateWithFlags")

    @property
    def handle(self) -> int:
        return int(self._stream) if self._stream is not None else 0

    def copy_htod_async(self, dst: DeviceBuffer | int, src: np.ndarray,
                        nbytes: int | None = None) -> None:
        """Host array (C-contiguous; pinned for a truly async copy) -> device."""
        if not src.flags.c_contiguous:
            raise ValueError("copy_htod_async needs a C-contiguous host array")
        count = src.nbytes if nbytes is None else int(nbytes)
        rt = cudart()
        check(rt.cudaMemcpyAsync(_address(dst), src.ctypes.data, count,
                                 rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                 self._stream), f"cudaMemcpyAsync(htod, {count} B)")

    def copy_dtoh_async(self, dst: np.ndarray, src: DeviceBuffer | int,
                        nbytes: int | None = None) -> None:
        """Device -> host array (C-contiguous, writable)."""
        if not (dst.flags.c_contiguous and dst.flags.writeable):
            raise ValueError("copy_dtoh_async needs a writable C-contiguous host array")
        count = dst.nbytes if nbytes is None else int(nbytes)
        rt = cudart()
        check(rt.cudaMemcpyAsync(dst.ctypes.data, _address(src), count,
                                 rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                 self._stream), f"cudaMemcpyAsync(dtoh, {count} B)")

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def free(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            check(cudart().cudaStreamDestroy(stream), "cudaStreamDestroy")

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()
