"""Clips on events, as DeepStream's Smart Record makes them: cut from a ring
buffer of packets the source's encoder already made (no second encoder), with
``pre_s`` seconds before the event, kept open ``post_s`` seconds after the last
event that asked for it, at most ``max_s`` long.

Two threads meet here. The analytics thread calls ``ClipRecorder.plan`` with
each event before it is published: the plan decides, from the event times
alone, whether the event opens a clip or extends the open one, so the event
goes out carrying the paths its clip and snapshot will have. The plan travels
on a queue to the sink thread, where ``ClipSink`` encodes every frame; the
recorder there keeps the ring, cuts the clips and writes the snapshots, so the
encoder and the open clip are touched by that thread alone.

Clips are fragmented MP4 like the main recording: a clip cut short by a kill
plays up to its last complete fragment (one keyframe interval).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from core.events import Event
from core.types import Result
from pipeline.sinks import Sink, SinkError
from pipeline.video_writer import FRAGMENTED_MP4, AvVideoWriter, EncodedPacket

log = logging.getLogger(__name__)

CLIP_EVENTS = ("line_cross", "zone_enter", "zone_exit", "loiter")
MB = 1024 * 1024
RECENT_NAMES = 64  # names remembered to keep two events of one instant apart


@dataclass(frozen=True)
class ClipConfig:
    """Which events get a clip and how long it is (``--clip-*``).

    ``on``: event kinds (of :data:`CLIP_EVENTS`; a string is split at commas);
    empty: no clips. ``pre_s``:
    seconds before the event (the clip starts at the keyframe at or before
    that, so up to one keyframe interval more). ``post_s``: seconds after the
    last event of the clip. ``max_s``: longest clip (from ``pre_s`` before its
    first event); events after that start a new one. ``max_mb``: size of the
    clips folder past which the oldest clips and snapshots are deleted (None:
    no limit).
    """

    on: tuple[str, ...] = ()
    pre_s: float = 5.0
    post_s: float = 5.0
    max_s: float = 60.0
    max_mb: float | None = None

    def __post_init__(self) -> None:
        kinds = self.on.split(",") if isinstance(self.on, str) else self.on
        on = tuple(dict.fromkeys(k.strip() for k in kinds if k.strip()))
        for kind in on:
            if kind not in CLIP_EVENTS:
                raise ValueError(f"--clip-on {kind!r} is not a clip event; allowed: "
                                 f"{', '.join(CLIP_EVENTS)}")
        object.__setattr__(self, "on", on)
        for flag, value in (("--clip-pre", self.pre_s), ("--clip-post", self.post_s)):
            if not (isinstance(value, int | float) and math.isfinite(value)
                    and value >= 0):
                raise ValueError(f"{flag} must be >= 0 seconds, got {value!r}")
        if not (math.isfinite(self.max_s) and self.max_s > self.pre_s):
            raise ValueError(f"--clip-max-s must be more than --clip-pre "
                             f"({self.pre_s:g} s), got {self.max_s!r}")
        if self.max_mb is not None and not (
                math.isfinite(self.max_mb) and self.max_mb > 0):
            raise ValueError(f"--clip-max-mb must be > 0, got {self.max_mb!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.on)


class ClipStore:
    """The clips folder shared by every source's recorder: knows the clips
    being written and deletes the oldest files past ``max_bytes`` (never an
    open clip). Thread-safe: each source's sink thread closes its own clips."""

    def __init__(self, folder: Path, max_bytes: int | None = None) -> None:
        self.folder, self.max_bytes = folder, max_bytes
        self._open: set[Path] = set()
        self._lock = threading.Lock()
        self.deleted = 0

    @classmethod
    def open(cls, folder: Path, max_mb: float | None = None) -> ClipStore:
        """Creates ``folder``; one that cannot be created is a ``SinkError``."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"{folder}: cannot create ({exc.strerror or exc})"
                            ) from exc
        return cls(folder, None if max_mb is None else int(max_mb * MB))

    def opened(self, path: Path) -> None:
        with self._lock:
            self._open.add(path)

    def closed(self, path: Path) -> None:
        with self._lock:
            self._open.discard(path)
        self.prune(keep=path)

    def prune(self, keep: Path | None = None) -> None:
        """Deletes the oldest closed clips and snapshots until the folder fits;
        ``keep``: a clip just finished, kept with its snapshot even when it
        alone is over the size (deleting it would leave nothing to see)."""
        if self.max_bytes is None:
            return
        with self._lock:
            files = []
            for path in self.folder.iterdir():
                if path.suffix not in (".mp4", ".jpg"):
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                files.append((st.st_mtime, path.name, path, st.st_size))
            total = sum(f[3] for f in files)
            for _, _, path, size in sorted(files):
                if total <= self.max_bytes:
                    break
                if path in self._open or (keep is not None
                                          and path.stem == keep.stem):
                    continue
                path.unlink(missing_ok=True)
                total -= size
                self.deleted += 1
                log.info("clips: deleted %s (folder over %.1f MB)", path.name,
                         self.max_bytes / MB)


@dataclass(frozen=True)
class _Order:
    """What the sink side does for one event, at the event's frame: write
    ``snapshot``; open ``clip`` (None: the event extends the open one); keep
    the clip open until ``until`` (source seconds)."""

    frame: int | None
    snapshot: Path
    clip: Path | None
    start: float
    until: float


@dataclass
class _Plan:
    path: Path
    start: float
    until: float


@dataclass
class _OpenClip:
    path: Path
    container: Any
    stream: Any
    until: float
    base: int  # dts of its first packet: the clip's time starts near 0
    written: int = 0


class ClipRecorder:
    """One source's clips: ``plan`` on the analytics thread; ``attach``,
    ``add_packets``, ``on_frame`` and ``close`` on the sink thread."""

    def __init__(self, config: ClipConfig, source_id: str, store: ClipStore) -> None:
        self.config, self.source_id, self.store = config, source_id, store
        self._orders: queue.SimpleQueue[_Order] = queue.SimpleQueue()
        self._plan: _Plan | None = None
        self._recent: deque[str] = deque(maxlen=RECENT_NAMES)
        self._pending: deque[_Order] = deque()
        self._ring: deque[EncodedPacket] = deque()
        self._clip: _OpenClip | None = None
        self._template: Any = None
        self.clips = 0

    # -- analytics thread ---------------------------------------------------
    def plan(self, event: Event) -> Event:
        """The event with the paths of its snapshot and clip when its kind asks
        for a clip (else unchanged); the sink thread writes them later."""
        if event.event not in self.config.on or event.timestamp is None:
            return event
        t, cfg = event.timestamp, self.config
        stem = self._name(event)
        plan = self._plan
        if plan is not None and t <= plan.until and t < plan.start + cfg.max_s:
            plan.until = max(plan.until, min(t + cfg.post_s, plan.start + cfg.max_s))
            opens = None
        else:
            start = t - cfg.pre_s
            plan = self._plan = _Plan(self.store.folder / f"{stem}.mp4", start,
                                      min(t + cfg.post_s, start + cfg.max_s))
            opens = plan.path
        snapshot = self.store.folder / f"{stem}.jpg"
        self._orders.put(_Order(event.frame, snapshot, opens, plan.start, plan.until))
        return event.with_paths(snapshot=str(snapshot), clip=str(plan.path))

    def planning(self, publish: Callable[[Event], None]) -> Callable[[Event], None]:
        """``publish`` preceded by ``plan``: what the analytics stage calls, so
        every event it publishes carries its clip's paths."""

        def plan_then_publish(event: Event) -> None:
            publish(self.plan(event))

        return plan_then_publish

    def _name(self, event: Event) -> str:
        """``SOURCE_TIME_EVENT`` from the event's wall time (UTC), made unique."""
        wall = event.wall_time
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(wall))
        stem = f"{self.source_id}_{stamp}.{int(wall % 1 * 1000):03d}Z_{event.event}"
        name, n = stem, 1
        while name in self._recent:
            n += 1
            name = f"{stem}_{n}"
        self._recent.append(name)
        return name

    # -- sink thread ----------------------------------------------------------
    def attach(self, writer: AvVideoWriter) -> None:
        """Takes ``writer``'s packets; its stream is the clips' template."""
        self._template = writer.stream
        writer.tap = self.add_packets

    def add_packets(self, packets: list[EncodedPacket]) -> None:
        """One frame's packets: into the open clip (closing it once past its
        end), then into the ring, trimmed to ``pre_s`` from a keyframe."""
        for packet in packets:
            clip = self._clip
            if clip is not None:
                if packet.time > clip.until:
                    self._close_clip()
                else:
                    self._write(clip, [packet])
            self._ring.append(packet)
        self._trim()

    def _trim(self) -> None:
        ring = self._ring
        while ring and not ring[0].keyframe:
            ring.popleft()
        if not ring:
            return
        horizon = ring[-1].time - self.config.pre_s
        # Keep the last keyframe at or before the horizon: a clip can start there.
        keys = [i for i, p in enumerate(ring) if p.keyframe and p.time <= horizon]
        for _ in range(keys[-1] if keys else 0):
            ring.popleft()

    def on_frame(self, result: Result) -> None:
        """Carries out the orders of events up to this frame (after its packets
        went through ``add_packets``)."""
        while True:
            try:
                self._pending.append(self._orders.get_nowait())
            except queue.Empty:
                break
        index = result.frame.index
        while self._pending and (self._pending[0].frame is None
                                 or self._pending[0].frame <= index):
            self._execute(self._pending.popleft(), result)

    def _execute(self, order: _Order, result: Result) -> None:
        self._snapshot(order.snapshot, result)
        if order.clip is not None:
            self._close_clip()
            self._open_clip(order.clip, order.start, order.until)
        elif self._clip is not None:
            self._clip.until = max(self._clip.until, order.until)

    def _snapshot(self, path: Path, result: Result) -> None:
        ok, data = cv2.imencode(".jpg", result.output_image)
        try:
            if not ok:
                raise OSError("JPEG encoding failed")
            path.write_bytes(data.tobytes())
        except OSError as exc:
            log.error("%s: snapshot not written: %s", path, exc)

    def _open_clip(self, path: Path, start: float, until: float) -> None:
        import av

        ring = list(self._ring)
        keys = [i for i, p in enumerate(ring) if p.keyframe and p.time <= start]
        first = keys[-1] if keys else 0
        packets = ring[first:]
        if not packets:
            log.warning("%s: no encoded frames yet; clip not written", path)
            return
        try:
            container = av.open(str(path), "w", format="mp4", options=FRAGMENTED_MP4)
        except (av.FFmpegError, OSError) as exc:
            log.error("%s: clip not written: %s", path, exc)
            return
        try:
            stream = container.add_stream_from_template(self._template)
            container.start_encoding()
        except (av.FFmpegError, OSError) as exc:
            log.error("%s: clip not written: %s", path, exc)
            container.close()
            return
        self.store.opened(path)
        self._clip = _OpenClip(path, container, stream, until, packets[0].dts)
        self.clips += 1
        log.info("%s: clip from %.2f s (%d packets of pre-roll)", path.name,
                 packets[0].time, len(packets))
        self._write(self._clip, packets)

    def _write(self, clip: _OpenClip, packets: list[EncodedPacket]) -> None:
        import av

        try:
            for p in packets:
                packet = av.Packet(p.data)
                packet.pts, packet.dts = p.pts - clip.base, p.dts - clip.base
                packet.time_base, packet.is_keyframe = p.time_base, p.keyframe
                packet.stream = clip.stream
                clip.container.mux_one(packet)
                clip.written += 1
        except (av.FFmpegError, OSError) as exc:
            log.error("%s: clip cut short: %s", clip.path, exc)
            self._close_clip()

    def _close_clip(self) -> None:
        clip, self._clip = self._clip, None
        if clip is None:
            return
        try:
            clip.container.close()
        except Exception as exc:  # the file stays playable up to its last fragment
            log.error("%s: closing failed: %s", clip.path, exc)
        self.store.closed(clip.path)

    def close(self) -> None:
        """Closes the open clip (after the encoder's last packets came in)."""
        self._close_clip()
        if self._pending or not self._orders.empty():
            log.debug("%s: events after the last frame get no snapshot",
                      self.source_id)


class ClipSink(Sink):
    """One source's encoder with clips: ``writer`` encodes every frame (into the
    main MP4, or nowhere with ``--no-video``) and ``recorder`` cuts the clips
    from its packets."""

    def __init__(self, writer: AvVideoWriter, recorder: ClipRecorder) -> None:
        self.writer, self.recorder = writer, recorder
        recorder.attach(writer)

    @property
    def frames(self) -> int:
        return self.writer.frames

    def write(self, result: Result) -> None:
        self.writer.write(result.output_image, result.frame.timestamp)
        self.recorder.on_frame(result)

    def close(self) -> None:
        try:
            self.writer.close()  # flushes the encoder's last packets into the clip
        finally:
            self.recorder.close()
