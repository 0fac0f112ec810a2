"""Frame sources: video files, webcams, RTSP/HTTP streams, image folders and globs,
and a program's own frames.

Every source is a context manager and an iterator of ``Frame``. Live sources
(webcam, network, or a file paced with ``realtime``) are marked ``live`` so the
pipeline keeps only their freshest frame; file sources never drop. One module
per kind: ``video`` (files, webcams, streams), ``images`` (folders, globs),
``frames`` (any iterable of images); ``base`` holds what they share.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from core.formats import IMAGE_SUFFIXES
from core.types import Frame
from pipeline.sources.base import (
    DEFAULT_FPS,
    HEALTH_STATES,
    LOST_GAP_FRAMES,
    MAX_PIXELS,
    MAX_TIMESTAMP_GAP_S,
    RTSP_TRANSPORTS,
    URL_SCHEMES,
    HealthCallback,
    Source,
    SourceConfig,
    SourceError,
    SourceStats,
    is_rtsp,
    is_url,
    redact_text,
    redact_url,
    safe_name,
    to_bgr8,
)
from pipeline.sources.frames import FrameSource
from pipeline.sources.images import ImageFolderSource
from pipeline.sources.video import VideoSource, diagnose_open, open_capture

log = logging.getLogger(__name__)


def make_source(
    spec: str, config: SourceConfig | None = None, source_id: str | None = None
) -> Source:
    """A source for a file path, webcam index, URL, image folder or glob."""
    spec = str(spec).strip()
    if not spec:
        raise SourceError("empty source")
    if is_url(spec) or spec.isdigit():
        return VideoSource(spec, config, source_id)
    path = Path(spec)
    if path.is_dir() or any(ch in spec for ch in "*?["):
        return ImageFolderSource(spec, config, source_id)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource(spec, config, source_id)
    return VideoSource(spec, config, source_id)


def expand_sources(specs: list[str]) -> list[str]:
    """Specs with ``@list.txt`` / ``*.txt`` lists expanded (one per line, #)."""
    out: list[str] = []
    for spec in specs:
        list_file = spec[1:] if spec.startswith("@") else spec
        if list_file.endswith(".txt") and Path(list_file).is_file():
            for line in Path(list_file).read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(line)
        else:
            out.append(spec)
    return out


def unique_ids(specs: list[str]) -> list[str]:
    """Safe, distinct source ids (``name``, ``name_2``, ...) for output files."""
    seen: dict[str, int] = {}
    ids = []
    for spec in specs:
        base = safe_name(spec)
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return ids


def read_frames(spec: str | Path, stride: int = 1, max_frames: int = 0
                ) -> Iterator[Frame]:
    """The frames of a file, folder or glob for offline tools (training,
    calibration, evaluation): the same protocol whitelist, limits and errors as
    the pipeline's own sources. ``stride`` keeps every Nth frame."""
    config = SourceConfig(stride=stride, max_frames=max_frames)
    with make_source(str(spec), config) as source:
        yield from source.frames()


def media_info(spec: str | Path) -> tuple[int, float, tuple[int, int]]:
    """(frame count or 0, FPS, (width, height)) of a file, folder or glob."""
    with make_source(str(spec)) as source:
        return source.frame_count, source.fps, source.size


__all__ = [
    "DEFAULT_FPS",
    "HEALTH_STATES",
    "LOST_GAP_FRAMES",
    "MAX_PIXELS",
    "MAX_TIMESTAMP_GAP_S",
    "RTSP_TRANSPORTS",
    "URL_SCHEMES",
    "FrameSource",
    "HealthCallback",
    "ImageFolderSource",
    "Source",
    "SourceConfig",
    "SourceError",
    "SourceStats",
    "VideoSource",
    "diagnose_open",
    "expand_sources",
    "is_rtsp",
    "is_url",
    "make_source",
    "media_info",
    "open_capture",
    "read_frames",
    "redact_text",
    "redact_url",
    "safe_name",
    "to_bgr8",
    "unique_ids",
]
