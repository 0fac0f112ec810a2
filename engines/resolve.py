"""Each network family's constructor arguments, resolved from an opened model:
its streamdet metadata, Ultralytics' metadata, or its graph. Used by
``engines.build``; detector modules never import this."""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable
from dataclasses import fields
from typing import Any

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
from engines.backends import open_backend
from engines.base import Backend

log = logging.getLogger(__name__)

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


# (model name, opened backend or file, the caller's arguments, CPU threads)
# -> the family constructor's arguments
Resolver = Callable[[str, Any, dict[str, Any], int | None], dict[str, Any]]


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
          threads: int | None) -> dict[str, Any]:
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
                 threads: int | None) -> dict[str, Any]:
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
         threads: int | None) -> dict[str, Any]:
    meta = _meta(backend, "lineage_loc")
    return {"class_names": list(meta.class_names), "imgsz": tuple(meta.input_size)}


def _overfeat(model: str, backend: Backend, given: dict[str, Any],
              threads: int | None) -> dict[str, Any]:
    meta = _meta(backend, "lineage_overfeat", OverFeatParams)
    params = meta.params
    assert isinstance(params, OverFeatParams)
    return {"class_names": list(meta.class_names), "window": params.window,
            "stride": params.stride, "scales": tuple(given.get("scales")
                                                     or params.scales)}


def _rcnn(model: str, backend: Backend, given: dict[str, Any],
          threads: int | None) -> dict[str, Any]:
    meta = _meta(backend, "lineage_rcnn", RCNNParams)
    return {"class_names": list(meta.class_names), "crop": int(meta.input_size[0]),
            **_proposals(meta, given)}


def _proposals(meta: ModelMeta, given: dict[str, Any]) -> dict[str, int]:
    params = meta.params
    assert isinstance(params, RCNNParams)
    return {"proposal_side": int(given.get("proposal_side") or params.proposal_side),
            "max_proposals": int(given.get("max_proposals") or params.max_proposals)}


def _fast_rcnn(model: str, backend: Backend, given: dict[str, Any],
               threads: int | None) -> dict[str, Any]:
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
    head = open_backend(head_path, backend.device, threads=threads)
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


NETWORK_RESOLVERS: dict[str, Resolver] = {
    "yolo": _yolo,
    "faster_rcnn": _faster_rcnn,
    "lineage_loc": _loc,
    "lineage_overfeat": _overfeat,
    "lineage_rcnn": _rcnn,
    "lineage_fast_rcnn": _fast_rcnn,
}
