"""What a model file carries: ``ModelMeta`` (in ONNX metadata or a ``.json``
sidecar), and the error every loader raises for a file it cannot use."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputError

META_KEY = "streamdet"  # key of the JSON blob in ONNX metadata_props / sidecar


class ModelError(InputError):
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


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
