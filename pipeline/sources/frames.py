"""The caller's own frames as a source: images from any Python iterable."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator

import numpy as np

from core.types import Frame
from pipeline.sources.base import DEFAULT_FPS, Source, SourceConfig, to_bgr8

FrameItem = np.ndarray | tuple[np.ndarray, float]


class FrameSource(Source):
    """Frames a program already has (a robot's camera API, a decoder of its
    own, a test): an iterable of BGR images, or of ``(image, timestamp)``
    pairs with the timestamp in seconds. Without timestamps, frame ``i`` is at
    ``i / fps``. ``live``: the frames come as they happen (a camera), so the
    pipeline keeps only the freshest; otherwise every frame is processed.
    The iterable is consumed on the capture thread."""

    def __init__(self, frames: Iterable[FrameItem], name: str = "frames",
                 fps: float = DEFAULT_FPS, live: bool = False,
                 config: SourceConfig | None = None) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        super().__init__(name, config, None)
        self.live = live
        self.fps = float(fps)
        self._items: Iterator[FrameItem] = iter(frames)
        self._first: tuple[np.ndarray, float | None] | None = None

    def _unpack(self, item: FrameItem, index: int) -> tuple[np.ndarray, float | None]:
        image, timestamp = (item if isinstance(item, tuple) else (item, None))
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            raise self._error(f"frame {index} is not an image array "
                              f"(got {type(image).__name__})")
        return to_bgr8(image), None if timestamp is None else float(timestamp)

    def open(self) -> None:
        """Read the first frame now, for the outputs' size."""
        if self._first is not None:
            return
        try:
            item = next(self._items)
        except StopIteration:
            raise self._error("no frames") from None
        self._first = self._unpack(item, 0)
        self.size = (self._first[0].shape[1], self._first[0].shape[0])

    def frames(self) -> Iterator[Frame]:
        self.open()
        assert self._first is not None
        rest = (self._unpack(item, i) for i, item in enumerate(self._items, 1))
        for index, (image, timestamp) in enumerate(itertools.chain([self._first],
                                                                    rest)):
            if self._closed.is_set() or self._limit_reached():
                return
            self.stats.read += 1
            if self._keep(index):
                t = index / self.fps if timestamp is None else timestamp
                yield Frame(self.source_id, index, t, image, time.perf_counter())
