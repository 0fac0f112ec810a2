"""What a model file carries: ``ModelMeta`` (in ONNX metadata or a ``.json``
sidecar), the one reader and writer of sidecars, and the error every loader
raises for a file it cannot use."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import InputError

log = logging.getLogger(__name__)

META_KEY = "streamdet"  # key of the JSON blob in ONNX metadata_props / sidecar
# What an older, unwrapped sidecar holds at least: how it is recognised.
FLAT_SIDECAR_KEYS = ("family", "class_names", "input_size")


class ModelError(InputError):
    """A model file that cannot be used: names the path and what is wrong."""


@dataclass(frozen=True)
class YoloParams:
    """``boxes_per_cell``: boxes per cell of a ``grid`` output (0: derived from
    the class count)."""

    boxes_per_cell: int = 0


@dataclass(frozen=True)
class FasterRCNNParams:
    """``label_offset``: the model's label for class 0 (torchvision's graphs
    keep 0 for background, so 1)."""

    label_offset: int = 1


@dataclass(frozen=True)
class OverFeatParams:
    """The classifier's ``window`` and ``stride`` (input pixels) and the image
    ``scales`` of the pyramid it slides over."""

    window: int
    stride: int
    scales: tuple[float, ...]


@dataclass(frozen=True)
class RCNNParams:
    """Selective Search settings: frames are searched at most ``proposal_side``
    px long, keeping ``max_proposals`` boxes."""

    proposal_side: int
    max_proposals: int


@dataclass(frozen=True)
class FastRCNNParams(RCNNParams):
    """Fast R-CNN's second network and the pooling between the two: ``head``
    (file name beside the trunk), ``pool`` bins per side, ``spatial_scale``
    (feature cells per input pixel), ``pooling`` ("max" or "align"),
    ``sampling_ratio`` (RoIAlign) and ``pooled_layout`` (the head's input:
    "channels_last" (K, P, P, C), else (K, C, P, P) as older files have it)."""

    head: str
    pool: int = 5
    spatial_scale: float = 1 / 8
    pooling: str = "max"
    sampling_ratio: int = 1
    pooled_layout: str = "channels_first"


FamilyParams = YoloParams | FasterRCNNParams | OverFeatParams | RCNNParams
# The typed parameters each family's exporter writes and its detector reads.
FAMILY_PARAMS: dict[str, type[FamilyParams]] = {
    "yolo": YoloParams,
    "faster_rcnn": FasterRCNNParams,
    "lineage_overfeat": OverFeatParams,
    "lineage_rcnn": RCNNParams,
    "lineage_fast_rcnn": FastRCNNParams,
}
# ModelMeta fields that older files keep in ``extra``
TYPED_EXTRA = ("precision", "train_seconds")


def _family_params(cls: type[FamilyParams], values: dict[str, Any]
                   ) -> FamilyParams:
    typed: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                             for k, v in values.items()}
    return cls(**typed)


@dataclass
class ModelMeta:
    """What a model file must carry (in ONNX metadata or a ``.json`` sidecar).

    ``input_size`` is (height, width) of the network input. ``mean``/``std`` are
    applied to RGB values scaled to [0, 1]. ``resize`` is "letterbox" (keep
    aspect, pad) or "stretch". ``layout`` names the output layout for decoders
    that support several (e.g. YOLO "anchor_free", "anchor_based", "grid").
    ``precision``: what the weights were quantized or built as ("int8", "fp16";
    "" for f32). ``params``: the family's typed parameters (``FAMILY_PARAMS``).
    ``extra``: descriptive values nothing reads back (epochs, scores, ...).

    Older files and writers keep ``precision``, ``train_seconds`` and the
    family's parameters in ``extra``: construction moves them to their fields.
    """

    family: str
    class_names: list[str]
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "letterbox"
    layout: str = ""
    dynamic_batch: bool = True
    precision: str = ""
    train_seconds: float | None = None
    params: FamilyParams | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.extra = dict(self.extra)
        for name in TYPED_EXTRA:
            if name in self.extra and not getattr(self, name):
                setattr(self, name, self.extra.pop(name))
        cls = FAMILY_PARAMS.get(self.family.replace("-", "_"))
        if isinstance(self.params, dict):
            if cls is None:
                raise ValueError(f"family {self.family!r} takes no params")
            self.params = _family_params(cls, self.params)
        elif self.params is None and cls is not None:
            names = {f.name for f in fields(cls)}
            found = {k: v for k, v in self.extra.items() if k in names}
            try:
                self.params = _family_params(cls, found)
            except TypeError:  # incomplete: the builder names what is missing
                return
            for name in found:
                del self.extra[name]

    def updated(self, values: dict[str, Any]) -> ModelMeta:
        """A copy with ``values`` set: typed fields by name, the rest in
        ``extra`` (e.g. ``{"precision": "int8", "calibration": "MinMax"}``)."""
        data = self.to_dict()
        data["extra"] = {**data["extra"],
                         **{k: v for k, v in values.items() if k not in data}}
        data.update({k: v for k, v in values.items() if k in data and k != "extra"})
        return ModelMeta.from_dict(data)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain builtins only (lists, not tuples): what checkpoints store."""
        return json.loads(self.to_json())

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


def write_sidecar(model_path: str | Path, meta: ModelMeta) -> Path:
    """Write ``meta`` beside ``model_path`` as ``{"streamdet": {...}}``, the form
    readers recognise as ours (any other ``NAME.json`` there is someone else's)."""
    path = sidecar_path(model_path)
    path.write_text(json.dumps({META_KEY: meta.to_dict()}, sort_keys=True) + "\n")
    return path


def read_sidecar_data(model_path: str | Path, warn: bool = True
                      ) -> dict[str, Any] | None:
    """The metadata object of the sidecar beside ``model_path``, unwrapped.

    Recognised: ``{"streamdet": {...}}`` (every writer) or a flat object with
    ``family``, ``class_names`` and ``input_size`` (older files). None when there
    is no ``NAME.json`` or it is something else (a COCO file, evaluation
    results, ...), which is ignored, with one warning when ``warn``: a user's
    unrelated file never changes how a model loads.
    """
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        data = None
    if isinstance(data, dict) and isinstance(data.get(META_KEY), dict):
        return data[META_KEY]
    if isinstance(data, dict) and all(k in data for k in FLAT_SIDECAR_KEYS):
        return data
    if warn:
        log.warning("%s is not a streamdet metadata sidecar (no %r object); "
                    "ignored", path, META_KEY)
    return None


def read_sidecar(model_path: str | Path) -> ModelMeta | None:
    """``ModelMeta`` from the sidecar beside ``model_path`` (see
    ``read_sidecar_data``); a recognised but broken one is a ``ModelError``."""
    data = read_sidecar_data(model_path)
    if data is None:
        return None
    try:
        return ModelMeta.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{sidecar_path(model_path)}: unreadable streamdet "
                         f"metadata: {exc}") from exc


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
