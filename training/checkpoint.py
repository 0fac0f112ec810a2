"""Writing and exporting streamdet checkpoints, and ``python -m training
export``. Their format, the builders and the weights-only loader live in
``engines.nets`` (inference needs them too); here each arch gets its exporter
(module, meta, out_path, simplify -> report).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.imports import import_spec
from core.meta import ModelMeta
from engines.nets import FORMAT, NETS, load_checkpoint, load_model

log = logging.getLogger(__name__)

# arch -> "module:exporter(model, meta, out, simplify)"; builders: engines.nets.NETS
EXPORTERS: dict[str, str] = {
    "yolo": "training.yolo.export:export_yolo",
    "yolo_grid": "training.yolo.export:export_yolo",
    "faster_rcnn": "training.faster_rcnn.export:export_faster_rcnn",
}


def _meta_dict(meta: ModelMeta | dict[str, Any]) -> dict[str, Any]:
    return meta.to_dict() if isinstance(meta, ModelMeta) else dict(meta)


def save_checkpoint(path: str | Path, arch: str, config: dict[str, Any],
                    meta: ModelMeta | dict[str, Any], model: nn.Module | dict,
                    **extra: Any) -> Path:
    """Write a checkpoint atomically (temp file + rename). ``model`` may be a module
    or a state dict; ``extra`` holds optimizer/EMA state, epoch, metrics, ..."""
    if arch not in NETS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(NETS)}")
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


def export_checkpoint(ckpt_path: str | Path, out_path: str | Path,
                      simplify: bool = True) -> dict[str, Any]:
    """Export a checkpoint to ONNX with its arch's exporter; returns its report."""
    ckpt = load_checkpoint(ckpt_path)
    model, meta = load_model(ckpt_path)
    exporter = import_spec(EXPORTERS[ckpt["arch"]])
    return exporter(model, meta, Path(out_path), simplify)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a .pt checkpoint from training")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="ONNX path (default: checkpoint name with .onnx)",
    )
    parser.add_argument(
        "--no-simplify", action="store_true", help="skip onnxslim simplification"
    )


def run(args: argparse.Namespace) -> int:
    out = args.out or args.checkpoint.with_suffix(".onnx")
    report = export_checkpoint(args.checkpoint, out, simplify=not args.no_simplify)
    for key, value in report.items():
        print(f"{key}: {value}")
    return 0


__all__ = ["EXPORTERS", "FORMAT", "export_checkpoint", "load_checkpoint",
           "load_model", "save_checkpoint"]
