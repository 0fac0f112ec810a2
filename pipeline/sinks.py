"""Sinks: MP4 writer (PyAV: ``pipeline.video_writer``), image folder, JSON Lines
log, MOT-challenge CSV, window.

Each sink opens at pipeline start (so a writer that cannot open fails before any
frame is processed), receives every ``Result`` of one source in order, and is
closed in a ``finally`` so outputs are flushed on errors and Ctrl-C too.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from core.errors import InputError
from core.formats import mot_lines, yolo_label_lines
from core.types import Result
from pipeline.server_config import ServerAuth, parse_address

log = logging.getLogger(__name__)


class SinkError(InputError):
    """An output that cannot be opened or written; names the path."""


AUTO = "auto"
MIN_SEGMENT_S = 1.0  # segment names resolve seconds: shorter ones could share one


@dataclass(frozen=True)
class EncoderConfig:
    """How annotated video is encoded.

    ``codec``: ``auto`` (``h264_nvenc`` where an NVIDIA GPU can open it, else
    ``libx264``) or an FFmpeg encoder name (``libx264``, ``mpeg4``, ``libvpx-vp9``,
    ``libsvtav1``, ...). ``preset``: x264 speed preset (``ultrafast`` by default: the
    least CPU beside inference; ``superfast``/``veryfast`` give smaller files
    for more CPU). ``crf``: x264 quality
    (lower = better, larger). ``gop_s``: seconds between keyframes, which is also
    the fragment length, so the most a kill loses. ``threads``: encoder threads
    (0 = one thread for x264 up to 1080p, where it keeps up alone and threads
    only add CPU beside the detector (2.8 against 3.1 CPU-ms per 768×576 frame);
    FFmpeg decides otherwise).
    """

    codec: str = AUTO
    preset: str = "ultrafast"
    crf: int = 23
    gop_s: float = 1.0
    threads: int = 0

    def __post_init__(self) -> None:
        if self.gop_s <= 0:
            raise ValueError(f"gop_s must be > 0, got {self.gop_s}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")


@dataclass(frozen=True)
class RecordConfig:
    """How the main recording rotates (``pipeline.recording``). ``segment_s``:
    seconds of source time per segment (cut at the next frame once a segment has
    lasted that long; at least 1 s, as names resolve seconds).
    ``keep_days``: delete segments that closed more than this many days ago;
    ``keep_gb``: delete the oldest while a source's segments (video and JSON
    Lines) total more than this many gigabytes (10**9 bytes). At most one of the
    two; neither keeps everything."""

    segment_s: float
    keep_days: float | None = None
    keep_gb: float | None = None

    def __post_init__(self) -> None:
        if not self.segment_s >= MIN_SEGMENT_S:
            raise ValueError(f"segment_s must be >= {MIN_SEGMENT_S:g} s, "
                             f"got {self.segment_s:g}")
        if self.keep_days is not None and self.keep_gb is not None:
            raise ValueError("give keep_days or keep_gb, not both")
        for name in ("keep_days", "keep_gb"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value:g}")


@dataclass(frozen=True)
class OutputConfig:
    """Which outputs to write, into ``out_dir`` (one set of files per source).

    ``video``: annotated MP4 (image sources: annotated images). ``jsonl``: one JSON
    record per frame, frames without detections included. ``mot``: MOT-challenge
    CSV. ``show``: an OpenCV window (q or Esc stops). ``encoder``: how the MP4 is
    encoded (H.264 in fragmented MP4 by default). ``rtsp_out``: also push the
    annotated stream to this RTSP URL (several sources: one path per source id).
    ``serve``: ``HOST:PORT`` of the live view (``pipeline.live_view``);
    ``serve_auth``: its token and TLS files (a bind beyond loopback needs a token).
    ``txt``: YOLO-format labels per frame in Ultralytics' layout (``labels/``),
    with the score appended when ``txt_conf``. ``record``: the MP4 and JSON Lines
    rotate in segments under ``out_dir/SOURCE/``; None: one file each per source.
    """

    out_dir: Path = Path("output")
    video: bool = True
    jsonl: bool = True
    mot: bool = False
    show: bool = False
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    rtsp_out: str = ""
    serve: str = ""
    serve_auth: ServerAuth = field(default_factory=ServerAuth)
    txt: bool = False
    txt_conf: bool = False
    record: RecordConfig | None = None

    def __post_init__(self) -> None:
        if self.serve:
            self.serve_auth.check(parse_address(self.serve)[0])

    @property
    def needs_overlay(self) -> bool:
        return self.video or self.show or bool(self.rtsp_out) or bool(self.serve)


def output_path(out_dir: Path, source_id: str, suffix: str) -> Path:
    """``out_dir/source_id+suffix``, refusing anything that would leave ``out_dir``.

    Creates ``out_dir``; a folder that cannot be created is a ``SinkError``.
    """
    path = (out_dir / f"{source_id}{suffix}").resolve()
    if out_dir.resolve() not in path.parents:
        raise SinkError(f"output name {source_id!r} escapes {out_dir}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkError(
            f"{out_dir}: cannot create output folder ({exc.strerror or exc})"
        ) from exc
    return path


class Sink(ABC):
    @abstractmethod
    def write(self, result: Result) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageSink(Sink):
    """Annotated images, one per input frame, in ``out_dir/source_id/``, named
    as the input file (same name and format; JPEG when that format cannot be
    written, e.g. ``.gif``), else by frame index."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise SinkError(f"{folder}: cannot create ({exc.strerror or exc})") from exc

    def write(self, result: Result) -> None:
        name = Path(result.frame.name or f"{result.frame.index:06d}.jpg").name
        path = self.folder / name
        try:
            ok, data = cv2.imencode(path.suffix or ".jpg", result.output_image)
        except cv2.error:
            ok = False
        if not ok:
            path = path.with_name(path.name + ".jpg")
            ok, data = cv2.imencode(".jpg", result.output_image)
        if not ok:
            raise SinkError(f"{path}: image encoding failed")
        path.write_bytes(data.tobytes())


class TextFileSink(Sink):
    """A text file written line by line and flushed per frame, so a crash
    leaves whole lines; opening it fails at once with a ``SinkError``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.file = open(path, "w", encoding="utf-8")
        except OSError as exc:
            raise SinkError(
                f"{path}: cannot open for writing ({exc.strerror})"
            ) from exc

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


class JsonlSink(TextFileSink):
    """One JSON object per frame."""

    def __init__(self, path: Path, class_names: list[str]) -> None:
        super().__init__(path)
        self.class_names = list(class_names)

    def write(self, result: Result) -> None:
        d = result.detections
        names = self.class_names
        record = {
            "source": result.frame.source_id,
            "frame": result.frame.index,
            "timestamp": round(result.frame.timestamp, 6),
            **({"file": result.frame.name} if result.frame.name else {}),
            "detections": [
                {
                    "xyxy": [round(float(v), 2) for v in box],
                    "score": round(float(s), 4),
                    "class_id": int(c),
                    "class": names[c] if 0 <= c < len(names) else str(int(c)),
                    "track_id": int(t),
                }
                for box, s, c, t in zip(
                    d.xyxy, d.scores, d.class_ids, d.track_ids, strict=True
                )
            ],
        }
        if result.predicted:
            record["predicted"] = True  # tracks advanced without a detector run
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


class MotSink(TextFileSink):
    """MOT-challenge rows: ``frame,id,x,y,w,h,conf,-1,-1,-1`` (frame 1-based)."""

    def write(self, result: Result) -> None:
        d = result.detections
        if not len(d):
            return
        self.file.writelines(
            mot_lines(result.frame.index + 1, d.xyxy, d.track_ids, d.scores))
        self.file.flush()


class TxtSink(Sink):
    """YOLO-format labels as Ultralytics ``predict(save_txt=True)`` writes them:
    ``labels/STEM.txt`` per image, ``labels/STEM_N.txt`` per video frame (N
    1-based), one ``class cx cy w h [conf]`` line per box, normalised to the
    frame; frames without boxes get no file."""

    def __init__(self, folder: Path, stem: str, per_image: bool,
                 conf: bool = False) -> None:
        self.folder, self.stem = folder, stem
        self.per_image, self.conf = per_image, conf
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"{folder}: cannot create ({exc.strerror or exc})") from exc

    def write(self, result: Result) -> None:
        d = result.detections
        if not len(d):
            return
        name = (Path(result.frame.name).stem if self.per_image and result.frame.name
                else f"{self.stem}_{result.frame.index + 1}")
        text = yolo_label_lines(d.xyxy, d.class_ids, result.frame.image.shape[:2],
                                d.scores if self.conf else None)
        (self.folder / f"{name}.txt").write_text(text)


class WindowSink(Sink):
    """An OpenCV window; ``q`` or Esc calls ``on_quit`` (stops the pipeline)."""

    def __init__(self, title: str, on_quit: Callable[[], None]) -> None:
        self.title = title
        self.on_quit = on_quit
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise SinkError(
                f"cannot open a window for {title!r} (no display?): {exc.err}"
            ) from exc

    def write(self, result: Result) -> None:
        cv2.imshow(self.title, result.output_image)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.on_quit()

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass
