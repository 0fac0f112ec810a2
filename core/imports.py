"""Registries name their entries as ``"module:attribute"`` strings so heavy
modules (torch, TensorRT, a model family) load only when an entry is used."""

from __future__ import annotations

import importlib
from typing import Any


def import_spec(spec: str) -> Any:
    """``"package.module:Name"`` -> the object, importing the module now."""
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)
