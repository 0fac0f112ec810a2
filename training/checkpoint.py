"""streamdet checkpoints: plain dicts of tensors and builtins, loaded weights-only.

A checkpoint is ``{"format": "streamdet-v1", "arch", "config", "meta", "model",
"epoch", ...}``. ``arch`` picks a builder (config -> module in inference/export
form) and an exporter (module, meta, out_path, simplify -> report) from ``ARCHS``,
so loading never unpickles code: ``torch.load(..., weights_only=True)`` only.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engines.base import ModelMeta

log = logging.getLogger(__name__)

FORMAT = "streamdet-v1"

# arch -> ("module:builder(config)", "module:exporter(model, meta, out, simplify)")
ARCHS: dict[str, tuple[str, str]] = {
    "yolo": ("training.yolo.model:build_yolo", "training.yolo.export:export_yolo"),
    "yolo_grid": ("training.yolo.grid:build_grid", "training.yolo.export:export_yolo"),
    "faster_rcnn": ("training.faster_rcnn.model:build_faster_rcnn",
                    "training.faster_rcnn.export:export_faster_rcnn"),
}


def _import(spec: str) -> Any:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _meta_dict(meta: ModelMeta | dict[str, Any]) -> dict[str, Any]:
    if isinstance(meta, ModelMeta):
        data = dict(meta.__dict__)
        data["input_size"] = list(meta.input_size)
        data["mean"], data["std"] = list(meta.mean), list(meta.std)
        data["class_names"] = list(meta.class_names)
        return data
    return dict(meta)


def save_checkpoint(path: str | Path, arch: str, config: dict[str, Any],
                    meta: ModelMeta | dict[str, Any], model: nn.Module | dict,
                    **extra: Any) -> Path:
    """Write a checkpoint atomically (temp file + rename). ``model`` may be a module
    or a state dict; ``extra`` holds optimizer/EMA state, epoch, metrics, ..."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(ARCHS)}")
    state = model.state_dict() if isinstance(model, nn.Module) else model
    ckpt = {"format": FORMAT, "arch": arch, "config": dict(config),
            "meta": _meta_dict(meta), "model": state, "epoch": -1}
    ckpt.update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a streamdet checkpoint with ``weights_only=True`` (onto the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not loadable as a weights-only torch checkpoint "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
                         ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a streamdet checkpoint (format {found!r}, "
                         f"expected {FORMAT!r})")
    if ckpt.get("arch") not in ARCHS:
        raise ValueError(f"{path}: unknown arch {ckpt.get('arch')!r}; expected one "
                         f"of {sorted(ARCHS)}")
    return ckpt


def load_model(path: str | Path, device: str = "cpu") -> tuple[nn.Module, ModelMeta]:
    """The checkpoint's network in inference/export form (eval mode) and its meta.

    Uses the EMA weights when the checkpoint carries them (what was validated).
    """
    ckpt = load_checkpoint(path)
    builder = _import(ARCHS[ckpt["arch"]][0])
    model = builder(ckpt["config"])
    model.load_state_dict(ckpt.get("ema") or ckpt["model"])
    return model.to(device).eval(), ModelMeta.from_dict(ckpt["meta"])


def export_checkpoint(ckpt_path: str | Path, out_path: str | Path,
                      simplify: bool = True) -> dict[str, Any]:
    """Export a checkpoint to ONNX with its arch's exporter; returns its report."""
    ckpt = load_checkpoint(ckpt_path)
    model, meta = load_model(ckpt_path)
    exporter = _import(ARCHS[ckpt["arch"]][1])
    return exporter(model, meta, Path(out_path), simplify)
