"""Detector and Backend interfaces, model metadata, and ``load_detector``.

A detector is pre-processing + a backend that runs the network + decoding.
The pipeline only knows ``Detector``: ``prepare`` one frame (thread-safe, runs
in the preprocess stage), ``infer`` a batch of prepared frames (runs in the
inference stage), or ``detect`` both at once.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.boxes import BoxTransform
from pipeline.types import Detections

log = logging.getLogger(__name__)

META_KEY = "streamdet"  # key of the JSON blob in ONNX metadata_props / sidecar
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


class ModelError(ValueError):
    """A model file that cannot be used: names the path and what is wrong."""


@dataclass
class ModelMeta:
    """What a model file must carry (in ONNX metadata or a ``.json`` sidecar).

    ``input_size`` is (height, width) of the network input. ``mean``/``std`` are
    applied to RGB values scaled to [0, 1]. ``resize`` is "letterbox" (keep
    aspect, pad) or "stretch". ``layout`` names the output layout for decoders
    that support several (e.g. YOLO "anchor_free", "anchor_based", "grid").
    """

    family: str
    class_names: list[str]
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "letterbox"
    layout: str = ""
    dynamic_batch: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMeta:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["input_size"] = tuple(int(v) for v in known.get("input_size", (0, 0)))
        for key in ("mean", "std"):
            if key in known:
                known[key] = tuple(float(v) for v in known[key])
        return cls(**known)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        return cls.from_dict(json.loads(text))


def sidecar_path(model_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.json``: metadata beside a model file."""
    return Path(model_path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Backend(ABC):
    """Runs a network: NCHW float32 batch in, raw output arrays out.

    Subclasses do their heavy imports inside ``load`` so importing engines/
    never needs torch, onnxruntime or TensorRT.
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        self.path = Path(path)
        self.device = device
        self.meta: ModelMeta | None = None
        self.input_shape: tuple[int | str | None, ...] = ()
        self.load()

    @abstractmethod
    def load(self) -> None:
        """Open the model; set ``meta`` (if the file carries it) and ``input_shape``."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one batch; returns the network's outputs in declaration order."""

    def warmup(self, runs: int = 2) -> None:
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in self.input_shape]
        if shape:
            for _ in range(runs):
                self.infer(np.zeros(shape, dtype=np.float32))

    def close(self) -> None:
        """Release device memory and sessions."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Suffix -> "module:Class"; imported lazily so a CPU machine never imports TensorRT.
BACKENDS: dict[str, str] = {
    ".onnx": "engines.backends.onnxruntime:OnnxRuntimeBackend",
    ".engine": "engines.backends.tensorrt:TensorRTBackend",
    ".plan": "engines.backends.tensorrt:TensorRTBackend",
    ".pt": "engines.backends.torch:TorchBackend",
    ".pth": "engines.backends.torch:TorchBackend",
}


def _import(spec: str) -> Any:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def open_backend(
    path: str | Path, device: str = "cpu", threads: int | None = None
) -> Backend:
    """Open a model file with the backend its suffix names.

    ``threads`` (ONNX Runtime only) caps intra-op threads, so inference leaves
    cores for decoding and encoding.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    spec = BACKENDS.get(path.suffix.lower())
    if spec is None:
        raise ModelError(
            f"{path}: unknown model format {path.suffix!r}; "
            f"expected one of {sorted(BACKENDS)}"
        )
    if threads and path.suffix.lower() == ".onnx":
        return _import(spec)(path, device=device, threads=threads)
    return _import(spec)(path, device=device)


@dataclass(frozen=True)
class Prepared:
    """One frame made ready for the network: ``input`` (C×H×W float32, or the raw
    image for detectors that take one) and the transform that maps boxes back."""

    input: np.ndarray
    transform: BoxTransform


class Detector(ABC):
    """The only thing the pipeline knows about models."""

    class_names: list[str]

    @abstractmethod
    def prepare(self, image: np.ndarray) -> Prepared:
        """Resize/normalise one BGR uint8 frame. Stateless and thread-safe."""

    @abstractmethod
    def infer(self, batch: list[Prepared]) -> list[Detections]:
        """Run prepared frames; boxes come back in original-frame pixels."""

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        return self.infer([self.prepare(image) for image in images])

    @property
    def max_batch(self) -> int:
        """Largest batch ``infer`` accepts in one call."""
        return 1

    def warmup(self) -> None:
        """Run once on a dummy input so the first real frame is not slow."""

    def close(self) -> None:
        """Release the backend."""

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Model family -> "module:Class". Each class takes (backend_or_path, **options).
FAMILIES: dict[str, str] = {
    "hog": "engines.hog:HogDetector",
    "yolo": "engines.yolo:YoloDetector",
    "faster_rcnn": "engines.faster_rcnn:FasterRCNNDetector",
    "lineage_loc": "engines.lineage.loc:LocDetector",
    "lineage_overfeat": "engines.lineage.overfeat:OverFeatDetector",
    "lineage_dpm": "engines.lineage.dpm:DPMDetector",
    "lineage_rcnn": "engines.lineage.rcnn:RCNNDetector",
    "lineage_fast_rcnn": "engines.lineage.fast_rcnn:FastRCNNDetector",
}

# Names a user can pass instead of a path: family + a model shipped in models/.
SHIPPED: dict[str, tuple[str, str | None]] = {
    "hog": ("hog", None),
    "yolo": ("yolo", "yolo_demo.onnx"),
    "yolo-people": ("yolo", "yolo_people.onnx"),
    "faster-rcnn": ("faster_rcnn", "faster_rcnn_demo.onnx"),
    "lineage-loc": ("lineage_loc", "lineage_loc.onnx"),
    "lineage-overfeat": ("lineage_overfeat", "lineage_overfeat.onnx"),
    "lineage-dpm": ("lineage_dpm", None),
    "lineage-rcnn": ("lineage_rcnn", "lineage_rcnn.onnx"),
    "lineage-fast-rcnn": ("lineage_fast_rcnn", "lineage_fast_rcnn.onnx"),
}


def load_detector(
    model: str | Path,
    device: str = "cpu",
    family: str | None = None,
    threads: int | None = None,
    **options: Any,
) -> Detector:
    """Build a detector from a shipped name (``hog``, ``yolo``, ...) or a model file.

    The family comes from ``family`` when given, else from the file's metadata,
    else from the family's own shape sniffing (``guess_family``).
    """
    name = str(model)
    if name in SHIPPED:
        shipped_family, filename = SHIPPED[name]
        family = family or shipped_family
        if filename is None:
            return _import(FAMILIES[family])(None, **options)
        model = MODELS_DIR / filename
    if Path(model).suffix.lower() in (".engine", ".plan") and device == "cpu":
        log.info("%s is a TensorRT engine: running it on cuda:0", model)
        device = "cuda:0"  # an engine cannot run on a CPU; cpu is only the default
    backend = open_backend(model, device=device, threads=threads)
    try:
        family = (
            family
            or (backend.meta.family if backend.meta else None)
            or guess_family(backend)
        )
        family = family.replace("-", "_")
        if family not in FAMILIES:
            raise ModelError(
                f"{model}: unknown model family {family!r}; "
                f"expected one of {sorted(FAMILIES)}"
            )
        return _import(FAMILIES[family])(backend, **options)
    except BaseException:
        backend.close()
        raise


def guess_family(backend: Backend) -> str:
    """Family of a model without metadata, from its input/output signature."""
    names = [n.lower() for n in getattr(backend, "output_names", [])]
    if {"boxes", "labels", "scores"} <= set(names):
        return "faster_rcnn"
    if len(getattr(backend, "output_names", [])) >= 1:
        return "yolo"
    raise ModelError(
        f"{backend.path}: carries no streamdet metadata and its outputs "
        "match no known family; pass --family"
    )
