"""The networks inference can build from a checkpoint (the torch backend), and
the weights-only checkpoint loader. Training imports these builders; recipes
(losses, data, schedules, exporters) stay in ``training/``.

A checkpoint is ``{"format": "streamdet-v1", "arch", "config", "meta", "model",
"epoch", ...}``. ``arch`` picks a builder (config -> module in inference/export
form) from ``NETS``, so loading never unpickles code:
``torch.load(..., weights_only=True)`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.imports import import_spec
from core.meta import ModelMeta

FORMAT = "streamdet-v1"

# arch -> "module:builder(config) -> nn.Module in inference/export form"
NETS: dict[str, str] = {
    "yolo": "engines.nets.yolo:build_yolo",
    "yolo_grid": "engines.nets.yolo_grid:build_grid",
    "faster_rcnn": "engines.nets.faster_rcnn:build_faster_rcnn",
}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a streamdet checkpoint with ``weights_only=True`` (onto the CPU)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04" and magic[:1] != b"\x80":  # zip archive or pickle
        raise ValueError(f"{path}: not a torch checkpoint (neither a zip archive "
                         "nor a pickle); pick the runtime with --backend")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not loadable as a weights-only torch checkpoint "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
                         ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a streamdet checkpoint (format {found!r}, "
                         f"expected {FORMAT!r})")
    if ckpt.get("arch") not in NETS:
        raise ValueError(f"{path}: unknown arch {ckpt.get('arch')!r}; expected one "
                         f"of {sorted(NETS)}")
    return ckpt


def build_net(ckpt: dict[str, Any]) -> Any:
    """The checkpoint's network (eval mode, CPU) with its weights loaded.

    Uses the EMA weights when the checkpoint carries them (what was validated).
    """
    model = import_spec(NETS[ckpt["arch"]])(ckpt["config"])
    model.load_state_dict(ckpt.get("ema") or ckpt["model"])
    return model.eval()


def load_model(path: str | Path, device: str = "cpu") -> tuple[Any, ModelMeta]:
    """The checkpoint's network in training form (eval mode) and its meta."""
    ckpt = load_checkpoint(path)
    return build_net(ckpt).to(device), ModelMeta.from_dict(ckpt["meta"])


def load_inference_net(path: str | Path, device: str = "cpu"
                       ) -> tuple[Any, ModelMeta, list[str]]:
    """The network in the form its ONNX export has (same inputs and outputs), its
    meta and its output names: what the torch backend runs."""
    ckpt = load_checkpoint(path)
    model, meta = build_net(ckpt), ModelMeta.from_dict(ckpt["meta"])
    if ckpt["arch"] == "faster_rcnn":
        from engines.nets.faster_rcnn import OUTPUT_NAMES, FixedSizeFasterRCNN

        return (FixedSizeFasterRCNN(model, meta.input_size).to(device).eval(), meta,
                list(OUTPUT_NAMES))
    return model.to(device), meta, ["output0"]
