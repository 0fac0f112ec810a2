"""Building models by name: backends by runtime or file suffix, detector
families, the shipped models, and ``load_detector`` with the one option
contract (``DetectorOptions``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from core.imports import import_spec
from core.meta import ModelError
from engines.base import Backend, Detector, check_device

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


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


@dataclass(frozen=True)
class DetectorOptions:
    """The options every detector takes; ``None`` keeps the family's default.

    ``conf``: score threshold. ``iou``: NMS IoU threshold. ``max_det``: most
    boxes per frame. ``classes``: keep only these class ids or names.
    ``threads``: CPU threads for the network. ``device``: ``cpu``/``cuda[:N]``.
    ``backend``: the runtime (default: by file suffix). ``imgsz``: network input
    (height, width) for models whose input size is not fixed.

    A family either uses an option or ``load_detector`` refuses it in one line;
    none is silently ignored.
    """

    conf: float | None = None
    iou: float | None = None
    max_det: int | None = None
    classes: tuple[int | str, ...] | None = None
    threads: int | None = None
    device: str = "cpu"
    backend: str | None = None
    imgsz: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.conf is not None and not 0.0 <= self.conf <= 1.0:
            raise ValueError(f"conf must be in [0, 1], got {self.conf}")
        if self.iou is not None and not 0.0 < self.iou <= 1.0:
            raise ValueError(f"iou must be in (0, 1], got {self.iou}")
        if self.max_det is not None and self.max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {self.max_det}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.imgsz is not None and (len(self.imgsz) != 2 or min(self.imgsz) < 1):
            raise ValueError(f"imgsz must be (height, width) >= 1, got {self.imgsz}")
        if self.classes is not None and not len(self.classes):
            raise ValueError("classes must name at least one class")
        check_device(self.device)
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r}: expected one of "
                             f"{sorted(BACKENDS)}")

    def given(self) -> list[str]:
        """Names of the options set away from their defaults."""
        default = DetectorOptions()
        return [f.name for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)]


# Model family -> "module:Class". Each class takes (backend_or_path, **kwargs).
FAMILIES: dict[str, str] = {
    "hog": "engines.hog:HogDetector",
    "yolo": "engines.yolo:YoloDetector",
    "faster_rcnn": "engines.faster_rcnn:FasterRCNNDetector",
    "lineage_loc": "engines.lineage.loc:LocDetector",
    "lineage_overfeat": "engines.lineage.overfeat:OverFeatDetector",
    "lineage_dpm": "engines.lineage.dpm:DPMDetector",
    "lineage_hog": "engines.lineage.hog_svm:HogSvmDetector",
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
    "lineage-hog": ("lineage_hog", None),
    "lineage-rcnn": ("lineage_rcnn", "lineage_rcnn.onnx"),
    "lineage-fast-rcnn": ("lineage_fast_rcnn", "lineage_fast_rcnn.onnx"),
}

OPTION_FLAGS = {"conf": "--conf", "iou": "--iou", "max_det": "--max-det",
                "classes": "--classes", "threads": "--threads",
                "device": "--device", "backend": "--backend", "imgsz": "--imgsz"}


def shipped_path(name: str) -> Path | None:
    """The file behind a shipped model name (None for weight-free detectors)."""
    filename = SHIPPED[name][1]
    return None if filename is None else MODELS_DIR / filename


def used_options(cls: type[Detector]) -> list[str]:
    """The ``DetectorOptions`` a family honours."""
    used = [*cls.option_kwargs, "classes", "max_det"]
    if cls.uses_backend:
        used += ["device", "threads", "backend"]
    return [o for o in OPTION_FLAGS if o in used]


def load_detector(
    model: str | Path,
    options: DetectorOptions | None = None,
    family: str | None = None,
    **kwargs: Any,
) -> Detector:
    """Build a detector from a shipped name (``hog``, ``yolo``, ...) or a model file.

    ``options`` (or the same names as keywords: ``conf``, ``iou``, ``max_det``,
    ``classes``, ``threads``, ``device``, ``backend``) are the common contract;
    other keywords go to the family's constructor as they are. The family comes
    from ``family`` when given, else from the file's metadata, else from the
    family's own shape sniffing (``guess_family``).
    """
    common = {f.name for f in fields(DetectorOptions)}
    given = {k: kwargs.pop(k) for k in list(kwargs) if k in common}
    if given and options is not None:
        raise ValueError("pass options either as DetectorOptions or as keywords")
    opts = options or DetectorOptions(**given)
    name = str(model)
    path: Path | None = Path(name)
    if name in SHIPPED:
        family = family or SHIPPED[name][0]
        path = shipped_path(name)
    backend: Backend | None = None
    try:
        if path is None:
            cls = _family_class(name, family or "")
            family = family or ""
        else:
            if path.suffix.lower() in (".engine", ".plan") and opts.device == "cpu":
                log.info("%s is a TensorRT engine: running it on cuda:0", path)
                opts = replace(opts, device="cuda:0")
            cls = _family_class(name, family) if family else None
            if cls is None or cls.uses_backend:
                backend = open_backend(path, device=opts.device,
                                       threads=opts.threads, backend=opts.backend)
                family = (family or (backend.meta.family if backend.meta else None)
                          or guess_family(backend))
                cls = _family_class(name, family)
        detector = _build(cls, name, family, backend if backend is not None else path,
                          opts, kwargs)
    except BaseException:
        if backend is not None:
            backend.close()
        raise
    return detector


def _family_class(model: str, family: str) -> type[Detector]:
    key = family.replace("-", "_")
    if key not in FAMILIES:
        raise ModelError(f"{model}: unknown model family {family!r}; "
                         f"expected one of {sorted(FAMILIES)}")
    return import_spec(FAMILIES[key])


def _build(cls: type[Detector], model: str, family: str, source: Any,
           opts: DetectorOptions, kwargs: dict[str, Any]) -> Detector:
    """Check every given option against what ``cls`` uses, then construct it."""
    family_kwargs = dict(kwargs)
    for option in opts.given():
        value = getattr(opts, option)
        if option in cls.option_kwargs:
            family_kwargs[cls.option_kwargs[option]] = value
        elif option in ("classes", "max_det"):
            continue  # applied by Detector.select
        elif option in ("device", "threads", "backend") and cls.uses_backend:
            continue  # consumed by open_backend
        else:
            flags = ", ".join(OPTION_FLAGS[o] for o in used_options(cls))
            raise ModelError(f"{model}: {OPTION_FLAGS[option]} is not used by the "
                             f"{family.replace('-', '_')} detector (it takes {flags})")
    detector = cls(source, **family_kwargs) if source is not None else cls(
        **family_kwargs)
    try:
        if opts.classes is not None:
            detector.keep_classes = class_ids(detector.class_names, opts.classes, model)
        if opts.max_det is not None:
            detector.max_det = opts.max_det
    except BaseException:
        detector.close()
        raise
    return detector


def class_ids(names: list[str], wanted: tuple[int | str, ...], model: str
              ) -> frozenset[int]:
    """Class ids from ids or names (``("person", 2)``); unknown ones are an error."""
    ids: set[int] = set()
    lookup = {n.lower(): i for i, n in enumerate(names)}
    for item in wanted:
        text = str(item).strip()
        if text.lstrip("-").isdigit():
            k = int(text)
            if not 0 <= k < len(names):
                raise ModelError(f"{model}: class id {k} is out of range "
                                 f"(0..{len(names) - 1})")
            ids.add(k)
        elif text.lower() in lookup:
            ids.add(lookup[text.lower()])
        else:
            raise ModelError(f"{model}: no class named {text!r}; the model has "
                             f"{names[:20]}{' ...' if len(names) > 20 else ''}")
    return frozenset(ids)


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


def runtime_info(detector: Detector) -> str:
    """``OpenVINOBackend bf16``, ``OnnxRuntimeBackend int8``, ...: the runtime and
    the precision it runs (its own ``precision``, else the file's metadata, as
    ``python -m training quantize`` writes it, else f32); empty without one."""
    backend = getattr(detector, "backend", None)
    if backend is None:
        return ""
    from engines.yolo import ultralytics_metadata  # the file's metadata_props

    meta = getattr(backend, "meta", None)
    stored = ((meta.extra.get("precision", "") if meta else "")
              or ultralytics_metadata(backend).get("precision", ""))
    # an int8 file runs int8 kernels whatever the runtime's float precision
    precision = stored if stored == "int8" else (
        getattr(backend, "precision", "") or stored or "f32")
    return f"{type(backend).__name__} {precision}"
