"""The runtimes that run networks, one module each, picked by runtime name or by
the model file's suffix (``open_backend``); each is imported only when used, so
a CPU machine never imports TensorRT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.imports import import_spec
from core.meta import ModelError
from engines.base import Backend

# Runtime name -> "module:Class"; imported lazily so a CPU machine never imports
# TensorRT. ``SUFFIX_BACKENDS`` picks the default runtime from the file.
BACKENDS: dict[str, str] = {
    "onnxruntime": "engines.backends.onnxruntime:OnnxRuntimeBackend",
    "tensorrt": "engines.backends.tensorrt:TensorRTBackend",
    "torch": "engines.backends.torch:TorchBackend",
    "openvino": "engines.backends.openvino:OpenVINOBackend",
}
SUFFIX_BACKENDS: dict[str, str] = {
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".pt": "torch",
    ".pth": "torch",
    ".xml": "openvino",  # OpenVINO IR (+ .bin)
}
# Folders that are one model: Ultralytics' OpenVINO export, NAME_openvino_model/
FOLDER_BACKENDS: dict[str, str] = {"_openvino_model": "openvino"}
# (suffix, runtime) pairs served by another runtime's class: an ONNX file asked
# to run on TensorRT goes through ONNX Runtime's TensorRT execution provider.
CROSS_BACKENDS: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    (".onnx", "tensorrt"): ("onnxruntime", {"tensorrt": True}),
}


def backend_name(path: str | Path, backend: str | None = None) -> str:
    """The runtime that opens ``path``: ``backend`` when given, else by suffix."""
    path = Path(path)
    if backend is not None:
        if backend not in BACKENDS:
            raise ModelError(f"{path}: unknown backend {backend!r}; expected one of "
                             f"{sorted(BACKENDS)}")
        return backend
    if path.is_dir():
        for ending, runtime in FOLDER_BACKENDS.items():
            if path.name.endswith(ending):
                return runtime
    name = SUFFIX_BACKENDS.get(path.suffix.lower())
    if name is None:
        raise ModelError(
            f"{path}: unknown model format {path.suffix!r}; "
            f"expected one of {sorted(SUFFIX_BACKENDS)}"
        )
    return name


def open_backend(
    path: str | Path, device: str = "cpu", threads: int | None = None,
    backend: str | None = None,
) -> Backend:
    """Open a model file with ``backend`` (default: the one its suffix names)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    name = backend_name(path, backend)
    extra: dict[str, Any] = {}
    native = SUFFIX_BACKENDS.get(path.suffix.lower())
    if native != name and (path.suffix.lower(), name) in CROSS_BACKENDS:
        name, extra = CROSS_BACKENDS[(path.suffix.lower(), name)]
    return import_spec(BACKENDS[name])(path, device=device, threads=threads, **extra)
