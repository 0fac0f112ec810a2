"""Training precision: bf16 autocast where the hardware computes bf16 natively.

Convolutions and matrix products run in bfloat16 under ``torch.autocast``;
weights, optimizer state and losses stay float32 (the outputs of the network
are cast back before the loss). CPUs with AVX512-BF16 or AMX run oneDNN's bf16
kernels faster than fp32 (numbers: docs/lineage.md, "Precision"); a CPU without
them would only emulate bf16, slower than fp32, so ``auto`` keeps fp32 there.
Models are also kept channels-last, the layout oneDNN's convolutions prefer.
``training.loop`` applies both to every trainer.
"""

from __future__ import annotations

import argparse
import logging
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bf16 natively (not by emulation)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)()
               for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """The trainers' ``--precision`` option."""
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: bf16 autocast where the device computes bf16 "
                             "natively (AVX512-BF16/AMX CPUs, recent GPUs), else fp32")


def check_precision(precision: str) -> None:
    """Reject a name outside ``PRECISIONS`` (trainer configs check it up front)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> ``bf16`` where native, else ``fp32``; logs the choice."""
    check_precision(precision)
    native = native_bf16(device)
    chosen = ("bf16" if native else "fp32") if precision == "auto" else precision
    if chosen == "bf16" and not native:
        log.warning("training in bf16 on %s, which has no native bf16: emulated and "
                    "slower than fp32", device)
    log.info("training precision: %s (%s; native bf16 on %s: %s)", chosen,
             "chosen by auto" if precision == "auto" else "asked for", device, native)
    return chosen


def autocast(device: str, precision: str) -> AbstractContextManager:
    """The forward pass's context: bf16 autocast, or a no-op for fp32."""
    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16,
                          enabled=precision == "bf16")


def to_float(tree: Any) -> Any:
    """Floating tensors in nested lists / tuples / dicts -> float32 (for the loss)."""
    if isinstance(tree, torch.Tensor):
        return tree.float() if tree.is_floating_point() else tree
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_float(t) for t in tree)
    if isinstance(tree, dict):
        return {k: to_float(v) for k, v in tree.items()}
    return tree


def channels_last(model: nn.Module) -> nn.Module:
    """The model with 4-D weights in channels-last layout (same values)."""
    return model.to(memory_format=torch.channels_last)
