"""torch backend: runs a training checkpoint (``.pt``) as the reference path.

The checkpoint is loaded weights-only through ``engines.nets.load_inference_net``,
so the network is in the form that ONNX export traces (for Faster R-CNN, the fixed-
size wrapper returning boxes, labels, scores): outputs match the ``.onnx`` file's,
and every family decodes either the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core.meta import ModelError
from engines.base import Backend

log = logging.getLogger(__name__)


class TorchBackend(Backend):
    """``device``: "cpu", "cuda" or "cuda:N"; ``half`` runs fp16 on CUDA;
    ``threads`` caps torch's intra-op threads (process-wide, as torch has it)."""

    def __init__(self, path: str | Path, device: str = "cpu",
                 threads: int | None = None, half: bool = False) -> None:
        self.half = half
        super().__init__(path, device, threads)

    def load(self) -> None:
        import torch

        from engines.nets import load_inference_net

        kind = self.device.split(":")[0]
        if self.threads:
            torch.set_num_threads(self.threads)
        if kind == "cuda" and not torch.cuda.is_available():
            raise ModelError(f"{self.path}: device {self.device!r} asked for but torch "
                             f"{torch.__version__} sees no CUDA GPU")
        if self.half and kind != "cuda":
            raise ModelError(f"{self.path}: half precision needs a CUDA device, "
                             f"got {self.device!r}")
        try:
            model, meta, output_names = load_inference_net(self.path, self.device)
        except (ValueError, FileNotFoundError) as exc:
            raise ModelError(str(exc)) from exc
        self.torch = torch
        self.model = model.half() if self.half else model
        self.meta = meta
        self.input_shape = ("batch", 3, *meta.input_size)
        self.output_names = output_names
        log.info("loaded %s on %s%s: input %s", self.path.name, self.device,
                 " (fp16)" if self.half else "", self.input_shape)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        if self.half:
            x = x.half()
        with torch.inference_mode():
            out = self.model(x)
        outs = out if isinstance(out, list | tuple) else [out]
        return [o.float().cpu().numpy() for o in outs]

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
