"""Building detectors: the one place in engines/ that opens model files and reads
their metadata (ours, Ultralytics', or a graph's shape), so the detector classes
only store what they are given.

Backends by runtime or file suffix (``open_backend``), the one option contract
(``DetectorOptions``), the shipped models, and ``load_detector`` /
``build_detector``, which resolve each family's constructor arguments.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from core.imports import import_spec
from core.meta import (
    FamilyParams,
    FasterRCNNParams,
    FastRCNNParams,
    ModelError,
    ModelMeta,
    OverFeatParams,
    RCNNParams,
    YoloParams,
)
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
    resolved = resolve(model, source, given, opts)
    args = {**resolved, **given}
    names = (args.get("class_names") or getattr(args.get("model"), "class_names", None)
             or cls.class_names)
    if opts.classes is not None:
        args["classes"] = class_ids(list(names), opts.classes, model)
    try:
        return cls(source, **args) if isinstance(source, Backend) else cls(**args)
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


# ------------------------------------------------------- Ultralytics' metadata

# predict()'s defaults, so the same command gives the same boxes as Ultralytics
ULTRALYTICS_DEFAULTS = {"conf": 0.25, "iou": 0.7}


def ultralytics_metadata(backend: Backend) -> dict[str, str]:
    """The ONNX file's custom metadata (Ultralytics writes ``names``, ``task``,
    ``imgsz``, ``stride``, ...): ONNX Runtime's session, or the
    ``custom_metadata`` a backend read itself (OpenVINO); empty otherwise."""
    session = getattr(backend, "session", None)
    if session is None:
        return dict(getattr(backend, "custom_metadata", None) or {})
    return dict(session.get_modelmeta().custom_metadata_map)


def ultralytics_names(backend: Backend) -> list[str] | None:
    """Class names from an ONNX file's Ultralytics ``names`` metadata, if any.

    The value is a Python dict literal, e.g. ``"{0: 'person', 1: 'bicycle'}"``.
    """
    raw = ultralytics_metadata(backend).get("names")
    if not raw:
        return None
    try:
        names = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        log.warning("%s: unreadable 'names' metadata %r", backend.path, raw[:80])
        return None
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list | tuple):
        return [str(n) for n in names]
    return None


# ------------------------------------------- each family's arguments, resolved

Resolver = Callable[[str, Any, dict[str, Any], DetectorOptions], dict[str, Any]]


def _no_file(model: str, source: Any, given: dict[str, Any],
             opts: DetectorOptions) -> dict[str, Any]:
    if source is not None:
        raise ModelError(f"{model}: this detector takes no model file, got {source}")
    return {}


def _parameter_file(family: str) -> Resolver:
    def resolve(model: str, source: Any, given: dict[str, Any],
                opts: DetectorOptions) -> dict[str, Any]:
        loader, default = PARAMETER_FILES[family]
        path = MODELS_DIR / default if source is None else Path(source)
        if not path.is_file():
            raise ModelError(f"{family} model file not found: {path}")
        return {"model": import_spec(loader)(path)}
    return resolve


def _meta(backend: Backend, family: str,
          params: type[FamilyParams] | None = None) -> ModelMeta:
    """Lineage networks need their metadata (class names, input size, and the
    family's ``params``)."""
    meta = backend.meta
    if meta is None:
        raise ModelError(f"{backend.path}: a {family} model needs streamdet metadata")
    if params is not None and not isinstance(meta.params, params):
        wanted = ", ".join(f.name for f in fields(params))
        raise ModelError(f"{backend.path}: its {family} metadata lacks some of "
                         f"{wanted}")
    return meta


def _yolo(model: str, backend: Backend, given: dict[str, Any],
          opts: DetectorOptions) -> dict[str, Any]:
    from engines import yolo

    meta = backend.meta
    external = ultralytics_metadata(backend) if meta is None else {}
    task = external.get("task", "detect").strip().lower()
    if task != "detect":
        raise ModelError(f"{backend.path}: an Ultralytics '{task}' export; only "
                         "detection exports (task 'detect') are supported")
    layout = given.get("layout")
    if layout is not None and layout not in yolo.LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {yolo.LAYOUTS}")
    imgsz = yolo.input_size(backend, meta, given.get("imgsz"))
    names = (given.get("class_names") or (meta.class_names if meta else None)
             or ultralytics_names(backend))
    shape = yolo.output_shape(backend, imgsz)
    named = len(names) if names else None
    layout = layout or (meta.layout if meta and meta.layout else None) or \
        yolo.guess_layout(shape, named)
    per_cell = meta.params.boxes_per_cell if meta and isinstance(
        meta.params, YoloParams) else 0
    count, per_cell = yolo.count_classes(backend.path, shape, layout, named, per_cell)
    if names is None:
        names = [f"class{i}" for i in range(count)]
    elif len(names) != count:
        raise ModelError(f"{backend.path}: output {shape} ({layout}) has {count} "
                         f"classes but the metadata names {len(names)}: {names}")
    resolved: dict[str, Any] = {
        "class_names": list(names), "layout": layout, "imgsz": imgsz,
        "boxes_per_cell": per_cell,
        # models without streamdet metadata: Ultralytics convention, RGB / 255
        "mean": meta.mean if meta else (0.0, 0.0, 0.0),
        "std": meta.std if meta else (1.0, 1.0, 1.0),
        "resize": "stretch" if meta and meta.resize == "stretch" else "letterbox"}
    if "names" in external:
        resolved["iou"] = ULTRALYTICS_DEFAULTS["iou"]
    return resolved


def _faster_rcnn(model: str, backend: Backend, given: dict[str, Any],
                 opts: DetectorOptions) -> dict[str, Any]:
    from engines.faster_rcnn import classifier_outputs, static_input_size

    meta, path = backend.meta, backend.path
    size = static_input_size(backend)
    if meta is not None:
        if meta.family.replace("-", "_") != "faster_rcnn":
            raise ModelError(f"{path}: metadata family is {meta.family!r}, "
                             "not 'faster_rcnn'")
        if size is not None and tuple(meta.input_size) != size:
            raise ModelError(f"{path}: metadata input_size {tuple(meta.input_size)} "
                             f"but the model's input is {size} (H, W)")
    count = None
    if path.suffix.lower() == ".onnx":
        import onnx

        try:
            count = classifier_outputs(onnx.load(str(path), load_external_data=False))
        except Exception:  # unreadable files are reported by the backend itself
            count = None
    if meta is not None and count is not None and count - 1 != len(meta.class_names):
        raise ModelError(f"{path}: metadata names {len(meta.class_names)} classes but "
                         f"the model predicts {count - 1} (+ background)")
    resolved: dict[str, Any] = {
        "class_names": (list(meta.class_names) if meta else
                        [f"class{k}" for k in range((count or 91) - 1)]),
        "mean": meta.mean if meta else (0.0, 0.0, 0.0),
        "std": meta.std if meta else (1.0, 1.0, 1.0)}
    if meta is not None and isinstance(meta.params, FasterRCNNParams):
        resolved["label_offset"] = meta.params.label_offset
    return resolved


def _loc(model: str, backend: Backend, given: dict[str, Any],
         opts: DetectorOptions) -> dict[str, Any]:
    meta = _meta(backend, "lineage_loc")
    return {"class_names": list(meta.class_names), "imgsz": tuple(meta.input_size)}


def _overfeat(model: str, backend: Backend, given: dict[str, Any],
              opts: DetectorOptions) -> dict[str, Any]:
    meta = _meta(backend, "lineage_overfeat", OverFeatParams)
    params = meta.params
    assert isinstance(params, OverFeatParams)
    return {"class_names": list(meta.class_names), "window": params.window,
            "stride": params.stride, "scales": tuple(given.get("scales")
                                                     or params.scales)}


def _rcnn(model: str, backend: Backend, given: dict[str, Any],
          opts: DetectorOptions) -> dict[str, Any]:
    meta = _meta(backend, "lineage_rcnn", RCNNParams)
    return {"class_names": list(meta.class_names), "crop": int(meta.input_size[0]),
            **_proposals(meta, given)}


def _proposals(meta: ModelMeta, given: dict[str, Any]) -> dict[str, int]:
    params = meta.params
    assert isinstance(params, RCNNParams)
    return {"proposal_side": int(given.get("proposal_side") or params.proposal_side),
            "max_proposals": int(given.get("max_proposals") or params.max_proposals)}


def _fast_rcnn(model: str, backend: Backend, given: dict[str, Any],
               opts: DetectorOptions) -> dict[str, Any]:
    from engines.lineage.roi_pool import POOLINGS

    meta = _meta(backend, "lineage_fast_rcnn", FastRCNNParams)
    params = meta.params
    assert isinstance(params, FastRCNNParams)
    if params.pooling not in POOLINGS:
        raise ModelError(f"{backend.path}: unknown RoI pooling {params.pooling!r} "
                         f"(expected one of {POOLINGS})")
    head_path = backend.path.parent / params.head
    if not head_path.is_file():
        raise ModelError(f"{backend.path}: RoI head file {head_path} not found")
    head = open_backend(head_path, backend.device, threads=opts.threads)
    if len(getattr(head, "input_shape", ())) != 4:
        head.close()
        raise ModelError(f"{head_path}: the RoI head must take one (K, P, P, C) "
                         f"input of pooled features, got {head.input_shape}; "
                         "re-export it with `python -m training lineage train`")
    return {"head": head, "class_names": list(meta.class_names),
            "imgsz": tuple(meta.input_size), "pool": params.pool,
            "spatial_scale": params.spatial_scale, "pooling": params.pooling,
            "sampling_ratio": params.sampling_ratio,
            "channels_last": params.pooled_layout == "channels_last",
            **_proposals(meta, given)}


RESOLVERS: dict[str, Resolver] = {
    "yolo": _yolo,
    "faster_rcnn": _faster_rcnn,
    "lineage_loc": _loc,
    "lineage_overfeat": _overfeat,
    "lineage_rcnn": _rcnn,
    "lineage_fast_rcnn": _fast_rcnn,
    "lineage_dpm": _parameter_file("lineage_dpm"),
    "lineage_hog": _parameter_file("lineage_hog"),
}
