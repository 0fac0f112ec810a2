"""Recordings that rotate: the main video and its JSON Lines in segments.

A process that runs for weeks cannot keep one file per source that only grows.
With a ``RecordConfig`` the annotated video of a source is written as
``OUT/SOURCE/SOURCE_YYYYmmddTHHMMSSZ.mp4`` segments, each a complete fragmented
MP4 (a new encoder per segment, so each starts at a keyframe and a kill loses at
most the open segment's last fragment), with ``SOURCE_...Z.jsonl`` beside it
holding the records of exactly that segment's frames. After a segment closes,
the oldest segments past the retention rule are deleted (when the next one
opens, and at the end; never the open or newest one).

A segment's name is its start time in UTC: the wall clock when the first segment
opened plus the source time elapsed since (so a live camera's names follow the
clock, and a file's segments are spaced by their media time).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from core.types import Result
from pipeline.sinks import EncoderConfig, JsonlSink, RecordConfig, Sink, SinkError
from pipeline.video_writer import AvVideoWriter

log = logging.getLogger(__name__)

STAMP = "%Y%m%dT%H%M%SZ"
VIDEO, LINES = ".mp4", ".jsonl"


def segment_stem(source_id: str, start: float) -> str:
    """``SOURCE_YYYYmmddTHHMMSSZ`` for a segment starting at ``start`` (epoch s)."""
    return f"{source_id}_{datetime.fromtimestamp(start, UTC).strftime(STAMP)}"


def segments(folder: Path, source_id: str) -> list[Path]:
    """The source's video segments in ``folder``, oldest first (names sort by
    start time)."""
    name = re.compile(re.escape(source_id) + r"_\d{8}T\d{6}Z(_\d+)?")
    return sorted(p for p in folder.glob(f"{source_id}_*{VIDEO}")
                  if name.fullmatch(p.stem))


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_suffix(LINES))
               if p.exists())


def apply_retention(folder: Path, source_id: str, config: RecordConfig,
                    keep: Path | None = None, now: float | None = None
                    ) -> list[Path]:
    """Delete the source's oldest segments (video and JSON Lines) that break the
    rule; ``keep``: the open segment, never deleted. Returns those deleted."""
    if config.keep_days is None and config.keep_gb is None:
        return []
    found = segments(folder, source_id)
    doomed: list[Path] = []
    if config.keep_days is not None:
        cutoff = (time.time() if now is None else now) - config.keep_days * 86400
        doomed = [p for p in found if p != keep and p.stat().st_mtime < cutoff]
    else:
        assert config.keep_gb is not None
        total = sum(_size(p) for p in found)
        limit = config.keep_gb * 1e9
        for path in found:
            if total <= limit:
                break
            if path != keep:
                total -= _size(path)
                doomed.append(path)
    for path in doomed:
        for part in (path, path.with_suffix(LINES)):
            try:
                part.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("%s: cannot delete old segment (%s)", part,
                            exc.strerror or exc)
    if doomed:
        log.info("%s: deleted %d old segment(s), oldest %s", source_id,
                 len(doomed), doomed[0].name)
    return doomed


class SegmentSink(Sink):
    """The main video (``video``) and JSON Lines (``class_names`` not None) of
    one source, rotated together into ``folder`` per ``config``."""

    def __init__(self, folder: Path, source_id: str, config: RecordConfig,
                 fps: float, size: tuple[int, int], encoder: EncoderConfig,
                 video: bool = True, class_names: list[str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.folder, self.source_id, self.config = folder, source_id, config
        self.fps, self.size, self.encoder = fps, size, encoder
        self.video, self.class_names, self.clock = video, class_names, clock
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"{folder}: cannot create ({exc.strerror or exc})") from exc
        self.writer: AvVideoWriter | None = None
        self.lines: JsonlSink | None = None
        self.path: Path | None = None  # the open segment's video path
        self._epoch: tuple[float, float] | None = None  # (wall clock, source time)
        self._start = 0.0  # source time of the open segment's first frame
        self.closed_segments = 0

    @property
    def frames(self) -> int:
        return self.writer.frames if self.writer is not None else 0

    def write(self, result: Result) -> None:
        t = result.frame.timestamp
        if self.path is not None and t - self._start >= self.config.segment_s:
            self._close_segment()
        if self.path is None:
            self._open_segment(t)
            if self.closed_segments:
                apply_retention(self.folder, self.source_id, self.config, self.path)
        if self.writer is not None:
            self.writer.write(result.output_image, t)
        if self.lines is not None:
            self.lines.write(result)

    def _open_segment(self, t: float) -> None:
        if self._epoch is None:
            self._epoch = (self.clock(), t)
        start = self._epoch[0] + (t - self._epoch[1])
        stem = segment_stem(self.source_id, start)
        path, n = self.folder / f"{stem}{VIDEO}", 1
        while path.exists() or path.with_suffix(LINES).exists():
            path, n = self.folder / f"{stem}_{n}{VIDEO}", n + 1
        if self.video:
            self.writer = AvVideoWriter(path, self.fps, self.size, self.encoder)
        if self.class_names is not None:
            self.lines = JsonlSink(path.with_suffix(LINES), self.class_names)
        self.path, self._start = path, t
        log.debug("%s: segment %s opened", self.source_id, path.name)

    def _close_segment(self) -> None:
        for part in (self.writer, self.lines):
            if part is not None:
                part.close()
        self.writer = self.lines = None
        self.path = None
        self.closed_segments += 1

    def close(self) -> None:
        """Finish the open segment; the retention rule then runs, keeping it."""
        last = self.path
        if last is not None:
            self._close_segment()
            apply_retention(self.folder, self.source_id, self.config, last)
