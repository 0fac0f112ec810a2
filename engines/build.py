"""Building detectors: where engines/ opens model files and reads their metadata
(ours, Ultralytics', or a graph's shape), so the detector classes only store
what they are given.

The one option contract (``DetectorOptions``), the shipped models, and
``load_detector`` / ``build_detector``, which open the model (backends by
runtime or file suffix: ``engines.backends.open_backend``) and resolve each
family's constructor arguments (``engines.resolve``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from core.imports import import_spec
from core.meta import ModelError
from engines.backends import (
    BACKENDS,
    CROSS_BACKENDS,
    FOLDER_BACKENDS,
    SUFFIX_BACKENDS,
    backend_name,
    open_backend,
)
from engines.base import Backend, Detector, check_device
from engines.resolve import (
    NETWORK_RESOLVERS,
    ULTRALYTICS_DEFAULTS,
    Resolver,
    ultralytics_metadata,
    ultralytics_names,
)

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class DetectorOptions:
    """The options every detector takes; ``None`` keeps the family's default.

    ``conf``: score threshold. ``iou``: NMS IoU threshold. ``max_det``: most
    boxes per frame. ``classes``: keep only these class ids or names.
    ``threads``: CPU threads for the network. ``device``: ``cpu``/``cuda[:N]``.
    ``backend``: the runtime (default: by file suffix). ``imgsz``: network input
    (height, width) for models whose input size is not fixed.

    The ranges are checked here, once; a family that needs a narrower one says
    so (``Detector.conf_open_interval``). A family either uses an option or
    ``load_detector`` refuses it in one line; none is silently ignored.
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


# Model family -> "module:Class", imported only when that family is built.
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
# Families whose model is a parameter file, not a network: (loader, default file).
PARAMETER_FILES: dict[str, tuple[str, str]] = {
    "lineage_dpm": ("engines.lineage.dpm:DPMModel", "inriaperson.xml"),
    "lineage_hog": ("engines.lineage.hog_svm:HogSvmModel", "lineage_hog.npz"),
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
    used = [*cls.options, "classes"]
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
    ``classes``, ``threads``, ``device``, ``backend``, ``imgsz``) are the common
    contract; other keywords go to the family's constructor and win over what
    the file says. The family comes from ``family`` when given, else from the
    file's metadata, else from the outputs' names (``guess_family``).
    """
    opts = _options(options, kwargs)
    name = str(model)
    path: Path | None = Path(name)
    if name in SHIPPED:
        family = family or SHIPPED[name][0]
        path = shipped_path(name)
    if family is not None:
        cls = _family_class(name, family)
        if not cls.uses_backend:
            return _construct(cls, name, family, path, opts, kwargs)
    assert path is not None  # only weight-free families have no file
    if path.suffix.lower() in (".engine", ".plan") and opts.device == "cpu":
        log.info("%s is a TensorRT engine: running it on cuda:0", path)
        opts = replace(opts, device="cuda:0")
    backend = open_backend(path, device=opts.device, threads=opts.threads,
                           backend=opts.backend)
    try:
        return _from_backend(backend, name, family, opts, kwargs)
    except BaseException:
        backend.close()
        raise


def build_detector(
    backend: Backend,
    options: DetectorOptions | None = None,
    family: str | None = None,
    **kwargs: Any,
) -> Detector:
    """A detector over an already open ``backend`` (e.g. a network in memory
    during training); options and keywords as in ``load_detector``."""
    opts = _options(options, kwargs)
    return _from_backend(backend, str(backend.path), family, opts, kwargs)


def _options(options: DetectorOptions | None, kwargs: dict[str, Any]
             ) -> DetectorOptions:
    """``options``, or the common options taken out of ``kwargs``."""
    common = {f.name for f in fields(DetectorOptions)}
    given = {k: kwargs.pop(k) for k in list(kwargs) if k in common}
    if given and options is not None:
        raise ValueError("pass options either as DetectorOptions or as keywords")
    return options or DetectorOptions(**given)


def _from_backend(backend: Backend, model: str, family: str | None,
                  opts: DetectorOptions, kwargs: dict[str, Any]) -> Detector:
    family = (family or (backend.meta.family if backend.meta else None)
              or guess_family(backend))
    return _construct(_family_class(model, family), model, family, backend, opts,
                      kwargs)


def _family_class(model: str, family: str) -> type[Detector]:
    key = family.replace("-", "_")
    if key not in FAMILIES:
        raise ModelError(f"{model}: unknown model family {family!r}; "
                         f"expected one of {sorted(FAMILIES)}")
    return import_spec(FAMILIES[key])


def _construct(cls: type[Detector], model: str, family: str,
               source: Backend | Path | None, opts: DetectorOptions,
               kwargs: dict[str, Any]) -> Detector:
    """Check every given option against what ``cls`` uses, resolve the family's
    arguments from the file, then construct it."""
    family = family.replace("-", "_")
    given = dict(kwargs)
    for option in opts.given():
        if option in cls.options:
            given[option] = getattr(opts, option)
        elif option == "classes" or (option in ("device", "threads", "backend")
                                     and cls.uses_backend):
            continue  # resolved below / consumed by open_backend
        else:
            flags = ", ".join(OPTION_FLAGS[o] for o in used_options(cls))
            raise ModelError(f"{model}: {OPTION_FLAGS[option]} is not used by the "
                             f"{family} detector (it takes {flags})")
    if cls.conf_open_interval and opts.conf is not None and not 0 < opts.conf < 1:
        raise ValueError(f"conf must be in (0, 1) for the {family} detector, "
                         f"got {opts.conf}")
    resolve = RESOLVERS.get(family, _no_file)
    resolved = resolve(model, source, given, opts.threads)
    args = {**resolved, **given}
    factory: Any = cls  # each family's constructor takes its own arguments
    try:
        if opts.classes is not None:
            names = (args.get("class_names")
                     or getattr(args.get("model"), "class_names", None)
                     or getattr(cls, "class_names", []))
            args["classes"] = class_ids(list(names), opts.classes, model)
        return factory(source, **args) if isinstance(source, Backend) else factory(
            **args)
    except BaseException:
        for value in resolved.values():  # e.g. Fast R-CNN's head network
            if isinstance(value, Backend):
                value.close()
        raise


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
    meta = getattr(backend, "meta", None)
    stored = ((meta.precision if meta else "")
              or ultralytics_metadata(backend).get("precision", ""))
    # an int8 file runs int8 kernels whatever the runtime's float precision
    precision = stored if stored == "int8" else (
        getattr(backend, "precision", "") or stored or "f32")
    return f"{type(backend).__name__} {precision}"


# ------------------------------- families whose model is a parameter file

def _no_file(model: str, source: Any, given: dict[str, Any],
             threads: int | None) -> dict[str, Any]:
    if source is not None:
        raise ModelError(f"{model}: this detector takes no model file, got {source}")
    return {}


def _parameter_file(family: str) -> Resolver:
    def resolve(model: str, source: Any, given: dict[str, Any],
                threads: int | None) -> dict[str, Any]:
        loader, default = PARAMETER_FILES[family]
        path = MODELS_DIR / default if source is None else Path(source)
        if not path.is_file():
            raise ModelError(f"{family} model file not found: {path}")
        return {"model": import_spec(loader)(path)}
    return resolve


RESOLVERS: dict[str, Resolver] = {
    **NETWORK_RESOLVERS,
    "lineage_dpm": _parameter_file("lineage_dpm"),
    "lineage_hog": _parameter_file("lineage_hog"),
}

__all__ = [  # what callers import from here, the builder's own and re-exported
    "BACKENDS", "CROSS_BACKENDS", "FAMILIES", "FOLDER_BACKENDS", "MODELS_DIR",
    "PARAMETER_FILES", "SHIPPED", "SUFFIX_BACKENDS", "ULTRALYTICS_DEFAULTS",
    "DetectorOptions", "backend_name", "build_detector", "class_ids",
    "guess_family", "load_detector", "open_backend", "runtime_info",
    "shipped_path", "ultralytics_metadata", "ultralytics_names", "used_options",
]
