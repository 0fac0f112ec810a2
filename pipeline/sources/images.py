"""Image folders, globs and single images as one source."""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from core.formats import IMAGE_SUFFIXES
from core.types import Frame
from pipeline.sources.base import (
    Source,
    SourceConfig,
    to_bgr8,
)

log = logging.getLogger(__name__)


class ImageFolderSource(Source):
    """A folder of images (sorted by name) or a glob pattern."""

    def __init__(
        self,
        spec: str,
        config: SourceConfig | None = None,
        source_id: str | None = None,
    ) -> None:
        super().__init__(spec, config, source_id)
        self.paths: list[Path] = []

    def open(self) -> None:
        if any(ch in self.spec for ch in "*?["):
            candidates = [Path(p) for p in sorted(glob.glob(self.spec))]
        elif Path(self.spec).is_file():
            candidates = [Path(self.spec)]
        else:
            folder = Path(self.spec)
            if not folder.is_dir():
                raise self._error("folder not found")
            candidates = sorted(folder.iterdir())
        self.paths = [
            p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not self.paths:
            raise self._error(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
        self.fps = self.config.image_fps
        self.frame_count = len(self.paths)
        first = self._load(self.paths[0])
        self.size = (first.shape[1], first.shape[0]) if first is not None else (0, 0)

    def _load(self, path: Path) -> np.ndarray | None:
        data = np.fromfile(path, dtype=np.uint8)  # handles non-ASCII names
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if image is None:
            return None
        if image.shape[0] * image.shape[1] > self.config.max_pixels:
            log.warning(
                "%s: %dx%d exceeds the %d pixel limit; skipped",
                path,
                image.shape[1],
                image.shape[0],
                self.config.max_pixels,
            )
            return None
        return to_bgr8(image)

    def frames(self) -> Iterator[Frame]:
        if not self.paths:
            self.open()
        for index, path in enumerate(self.paths):
            if self._closed.is_set() or self._limit_reached():
                return
            image = self._load(path)
            if image is None:
                self.stats.errors += 1
                log.warning(
                    "%s: unreadable or oversized image %s; skipped",
                    self.display_name,
                    path.name,
                )
                continue
            self.stats.read += 1
            if self._keep(index):
                yield Frame(self.source_id, index, index / self.fps, image,
                            time.perf_counter(), name=path.name)
