"""The camera configuration: one YAML file for many cameras, read once into
typed objects (schema in docs/config.md).

    config = load_camera_config(Path("cams.yaml"))   # ConfigError: one line
    config.defaults        # Defaults: model, tracker, conf, classes, anchor, ...
    config.events          # pipeline.events.EventsConfig
    config.sources         # (SourceEntry(name, url, analytics, clips), ...)
    build_pipeline(config.sources, detector, pipeline_config)

``parse_source_entry`` checks one ``sources:`` entry with the same errors, for
callers that get entries one at a time (the control API).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pipeline.camconfig.reader import ConfigError, expand_env, hide, read_yaml
from pipeline.camconfig.schema import (
    CameraConfig,
    Defaults,
    SourceEntry,
    parse_config,
    parse_source_entry,
)


def load_camera_config(path: Path, environ: Mapping[str, str] | None = None
                       ) -> CameraConfig:
    """``path`` read, ``${ENV}`` expanded from ``environ`` (default: the
    process environment) and checked. A mistake is a ``ConfigError`` of one
    line, ``FILE: KEY.PATH: problem``, in which no value taken from the
    environment appears."""
    environ = os.environ if environ is None else environ
    secrets: dict[str, str] = {}
    try:
        tree, secrets = expand_env(read_yaml(path), environ)
        return parse_config(tree)
    except ValueError as exc:
        raise ConfigError(f"{path}: {hide(str(exc), secrets)}") from None


__all__ = [
    "CameraConfig",
    "ConfigError",
    "Defaults",
    "SourceEntry",
    "load_camera_config",
    "parse_config",
    "parse_source_entry",
]
