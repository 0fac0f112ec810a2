"""Frame sources: video files, webcams, RTSP/HTTP streams, image folders and globs.

Every source is a context manager and an iterator of ``Frame``. Live sources
(webcam, network, or a file paced with ``realtime``) are marked ``live`` so the
pipeline may drop their oldest frames; file sources never drop.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from core.formats import IMAGE_SUFFIXES
from core.types import Frame
from pipeline.av_capture import DECODERS, AvCapture, cuda_decode_available

log = logging.getLogger(__name__)

URL_SCHEMES = (
    "rtsp://",
    "rtsps://",
    "rtmp://",
    "http://",
    "https://",
    "udp://",
    "tcp://",
    "srt://",
)
DEFAULT_FPS = 25.0
RTSP_TRANSPORTS = ("tcp", "udp")
# A gap in the stream's own timestamps longer than this many frame intervals
# counts the frames in between as lost (jitter below it is not a loss).
LOST_GAP_FRAMES = 1.5
MAX_TIMESTAMP_GAP_S = 60.0  # a larger jump is a clock reset, not a loss
MAX_PIXELS = 8192 * 8192  # larger frames are refused rather than risk memory blowups


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message names the source."""


@dataclass(frozen=True)
class SourceConfig:
    """How sources open and read.

    ``timeout_s``: open and read timeout for network streams. ``reconnect_attempts``:
    how many reopen tries after a stream stalls (0 = give up at once), waiting
    ``backoff_s`` doubled each try up to ``max_backoff_s``. ``realtime``: pace a
    file at its native FPS and treat it as live (drops when behind), as a camera.
    ``stride``: keep every Nth frame. ``max_frames``: stop after this many frames
    read (0 = all). ``image_fps``: timestamps for image folders. ``loop``: start a
    file again at its end (demos, soak tests). ``max_pixels``: larger frames or
    images are refused (a file cannot make us allocate without bound).
    ``rtsp_transport``: ``tcp`` (default: no packet loss through NATs and
    firewalls, what IP cameras serve reliably) or ``udp`` (lower latency on a
    clean LAN). ``decode``: ``auto`` (NVDEC where an NVIDIA GPU is, else OpenCV's
    FFmpeg), ``cpu`` (OpenCV), ``pyav`` (FFmpeg's libraries on the CPU) or
    ``nvdec``; webcams always use OpenCV.
    """

    timeout_s: float = 5.0
    reconnect_attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    realtime: bool = False
    stride: int = 1
    max_frames: int = 0
    image_fps: float = DEFAULT_FPS
    loop: bool = False
    max_pixels: int = MAX_PIXELS
    rtsp_transport: str = "tcp"
    decode: str = "auto"

    def __post_init__(self) -> None:
        if self.decode not in DECODERS:
            raise ValueError(
                f"decode must be one of {', '.join(DECODERS)}, got {self.decode!r}"
            )
        if self.rtsp_transport not in RTSP_TRANSPORTS:
            raise ValueError(
                f"rtsp_transport must be one of {', '.join(RTSP_TRANSPORTS)}, "
                f"got {self.rtsp_transport!r}"
            )
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.reconnect_attempts < 0:
            raise ValueError(
                f"reconnect_attempts must be >= 0, got {self.reconnect_attempts}"
            )
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.max_frames < 0:
            raise ValueError(f"max_frames must be >= 0, got {self.max_frames}")


@dataclass
class SourceStats:
    """What a source did: frames read (decoded), skipped by stride, lost in outages."""

    read: int = 0
    skipped: int = 0
    lost: int = 0
    reconnects: int = 0
    errors: int = 0
    damaged: str = ""  # why reading ended early, when it did (file marked partial)


def redact_url(url: str) -> str:
    """The URL without user:password, safe for names and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def safe_name(spec: str) -> str:
    """A file-name stem for a source: no separators, no '..', no credentials."""
    if is_url(spec):
        parts = urlsplit(redact_url(spec))
        raw = f"{parts.hostname or 'stream'}{parts.path}"
    elif spec.isdigit():
        raw = f"webcam{spec}"
    else:
        path = Path(spec)
        raw = path.name if path.is_dir() else path.stem
        raw = raw or "source"
    name = re.sub(r"[^\w.-]+", "_", raw, flags=re.UNICODE).strip("._") or "source"
    return name[:100]


def is_url(spec: str) -> bool:
    return spec.lower().startswith(URL_SCHEMES)


def is_rtsp(spec: str) -> bool:
    return spec.lower().startswith(("rtsp://", "rtsps://"))


def diagnose_open(url: str, options: dict[str, str], timeout_s: float) -> str:
    """Why FFmpeg cannot open ``url``, in its own words, without the URL (which
    may carry credentials). OpenCV only says that opening failed; this asks
    FFmpeg's libraries directly, once, after that failure."""
    try:
        import av
    except ImportError:
        return ""
    try:
        with av.open(url, options=options, timeout=(timeout_s, timeout_s)):
            return ""
    except av.HTTPUnauthorizedError:
        return "authentication failed (wrong user name or password)"
    except av.HTTPForbiddenError:
        return "access refused by the server (403 Forbidden)"
    except av.HTTPNotFoundError:
        return "no such stream on the server (404 Not Found)"
    except (av.FFmpegError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return redact_text(str(reason), url)
    except Exception as exc:  # a diagnosis must never mask the real error
        return type(exc).__name__


def redact_text(text: str, url: str) -> str:
    """``text`` with ``url`` and its password removed."""
    text = text.replace(url, redact_url(url))
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


# FFmpeg reads OPENCV_FFMPEG_CAPTURE_OPTIONS at open time; the lock keeps the
# per-open value from leaking between threads that open at the same moment.
_OPEN_LOCK = threading.Lock()


def open_capture(
    target: str | int,
    ffmpeg_options: str | None = None,
    params: list[int] | None = None,
) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` with per-open FFmpeg options (e.g. a protocol whitelist)."""
    with _OPEN_LOCK:
        old = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
        if ffmpeg_options is not None:
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = ffmpeg_options
        try:
            if isinstance(target, int):
                return cv2.VideoCapture(target)
            return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params or [])
        finally:
            if ffmpeg_options is not None:
                if old is None:
                    os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
                else:
                    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = old


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGRA, 16-bit) as H×W×3 uint8 BGR."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


class Source:
    """Base: iterate ``Frame``s; ``stats`` counts what happened."""

    live = False

    def __init__(
        self,
        spec: str,
        config: SourceConfig | None = None,
        source_id: str | None = None,
    ) -> None:
        self.spec = spec
        self.config = config or SourceConfig()
        self.source_id = source_id or safe_name(spec)
        self.display_name = redact_url(spec) if is_url(spec) else spec
        self.stats = SourceStats()
        self.fps = DEFAULT_FPS
        self.size: tuple[int, int] = (0, 0)  # (width, height) of the first frame
        self.frame_count = 0  # frames in the file when known, else 0
        self._closed = threading.Event()

    def open(self) -> None:
        """Open and read enough to know size and FPS; raise SourceError if unusable."""

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def stop(self) -> None:
        """Ask ``frames()`` to end after the current read; safe from any thread."""
        self._closed.set()

    def close(self) -> None:
        """Release the device or file; only from the thread that reads."""
        self._closed.set()

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, problem: str) -> SourceError:
        return SourceError(f"{self.display_name}: {problem}")

    def _keep(self, index: int) -> bool:
        """Stride filter: frames read but not kept are counted as skipped."""
        if index % self.config.stride == 0:
            return True
        self.stats.skipped += 1
        return False

    def _limit_reached(self) -> bool:
        return (
            bool(self.config.max_frames) and self.stats.read >= self.config.max_frames
        )


class VideoSource(Source):
    """A video file, webcam index or network URL through OpenCV's FFmpeg backend."""

    def __init__(
        self,
        spec: str,
        config: SourceConfig | None = None,
        source_id: str | None = None,
    ) -> None:
        super().__init__(spec, config, source_id)
        self.is_network = is_url(spec)
        self.is_webcam = spec.isdigit()
        self.live = self.is_network or self.is_webcam or self.config.realtime
        # A network URL that reports a frame count (a file served over HTTP) is
        # finite: it ends at its end, is never dropped from, and is not replayed.
        self.finite = not (self.is_network or self.is_webcam)
        self.cap: cv2.VideoCapture | AvCapture | None = None
        self._first: np.ndarray | None = None
        self._last_pos_ms: float | None = None
        self.decoder = "cpu"  # resolved from config.decode at open

    def _open_once(self) -> cv2.VideoCapture | AvCapture:
        timeout_ms = int(self.config.timeout_s * 1000)
        if self.is_webcam:
            return open_capture(int(self.spec))
        if self.decoder != "cpu":
            if self.is_network:
                return AvCapture(self.spec, self._ffmpeg_options(),
                                 self.config.timeout_s, self._hwaccel())
            # the same whitelist as below
            return AvCapture(self.spec, {"protocol_whitelist": "file"}, None,
                             self._hwaccel())
        if self.is_network:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                timeout_ms,
            ]
            options = "|".join(f"{k};{v}" for k, v in self._ffmpeg_options().items())
            return open_capture(self.spec, options or None, params)
        # Files may only read files: a media file can embed playlist references
        # that make FFmpeg read other local files (CVE-2016-1897, CVE-2017-9993).
        return open_capture(self.spec, "protocol_whitelist;file")

    def _hwaccel(self) -> str | None:
        return "cuda" if self.decoder == "nvdec" else None

    def _choose_decoder(self) -> None:
        wanted = self.config.decode
        if self.is_webcam or wanted == "cpu":
            self.decoder = "cpu"
        elif wanted == "pyav":
            self.decoder = "pyav"
        elif cuda_decode_available():
            self.decoder = "nvdec"
        elif wanted == "nvdec":
            raise self._error("NVDEC decoding requested but no CUDA device or "
                              "driver is available here (use --decode auto or cpu)")
        else:
            self.decoder = "cpu"
        log.info("%s: decoder %s%s", self.display_name, self.decoder,
                 " (NVIDIA GPU)" if self.decoder == "nvdec" else "")

    def _ffmpeg_options(self) -> dict[str, str]:
        """FFmpeg options for a network open (RTSP: the transport)."""
        if is_rtsp(self.spec):
            return {"rtsp_transport": self.config.rtsp_transport}
        return {}

    def open(self) -> None:
        if not (self.is_network or self.is_webcam):
            path = Path(self.spec)
            if not path.exists():
                raise self._error("file not found")
            if path.is_dir():
                raise self._error("is a folder, not a video")
            if path.stat().st_size == 0:
                raise self._error("file is empty (0 bytes)")
        started = time.monotonic()
        self._choose_decoder()
        self.cap = self._open_once()
        if (not self.cap.isOpened() and self.decoder == "nvdec"
                and self.config.decode == "auto"):
            log.warning("%s: NVDEC cannot open it (%s); decoding on the CPU",
                        self.display_name, getattr(self.cap, "error", ""))
            self.decoder = "cpu"
            self.cap = self._open_once()
        if not self.cap.isOpened():
            what = (
                "cannot open webcam (no such device or it is busy)"
                if self.is_webcam
                else self._network_open_error(started)
                if self.is_network
                else "not a readable video (unknown format, "
                "unsupported codec or damaged file)"
            )
            raise self._error(what)
        ok, first = self.cap.read()
        if not ok or first is None:
            elapsed = time.monotonic() - started
            raise self._error(
                f"opened but no frame could be decoded (after {elapsed:.1f} s)"
            )
        first = to_bgr8(first)
        self._check_size(first)
        self._first = first
        self.size = (first.shape[1], first.shape[0])
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        if not fps or not np.isfinite(fps) or fps <= 0 or fps > 1000:
            log.warning(
                "%s: the file gives no usable FPS (%r); assuming %.0f",
                self.display_name,
                fps,
                DEFAULT_FPS,
            )
            fps = DEFAULT_FPS
        self.fps = float(fps)
        count = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if self.is_network and count and 0 < count < 2**31:
            # Only a file has a frame count: a live stream has none (or garbage).
            self.finite = True
            self.live = self.config.realtime
            log.info("%s: a finite video (%d frames); read to its end",
                     self.display_name, int(count))
        self.frame_count = int(count) if count and count > 0 and not self.live else 0
        log.info(
            "opened %s: %dx%d at %.2f FPS%s",
            self.display_name,
            *self.size,
            self.fps,
            f", {self.frame_count} frames" if self.frame_count else "",
        )

    def _network_open_error(self, started: float) -> str:
        elapsed = time.monotonic() - started
        reason = diagnose_open(self.spec, self._ffmpeg_options(), self.config.timeout_s)
        if reason:
            return f"cannot connect: {reason}"
        return (f"cannot connect within {self.config.timeout_s:g} s "
                f"(gave up after {elapsed:.1f} s)")

    def _check_size(self, image: np.ndarray) -> None:
        if image.shape[0] * image.shape[1] > self.config.max_pixels:
            raise self._error(
                f"frame of {image.shape[1]}x{image.shape[0]} exceeds the "
                f"{self.config.max_pixels} pixel limit"
            )

    def _timestamp(self, index: int) -> float:
        assert self.cap is not None
        pos_ms = self.cap.get(cv2.CAP_PROP_POS_MSEC)
        if not self.finite:
            return time.time()
        # Decoder position when the container has one; FFmpeg reports 0 for
        # streams without timestamps, where index / FPS is the best we know.
        if (pos_ms and pos_ms > 0) or index == 0:
            return pos_ms / 1000.0
        return index / self.fps

    def _read(self) -> np.ndarray | None:
        assert self.cap is not None
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        ok, frame = self.cap.read()
        return to_bgr8(frame) if ok and frame is not None else None

    def _lost_by_timestamps(self) -> int:
        """Frames missing between this read and the previous one, from the
        stream's own clock (decoder position), e.g. frames the server or the
        network dropped. 0 when the stream carries no usable timestamps."""
        assert self.cap is not None
        pos_ms = self.cap.get(cv2.CAP_PROP_POS_MSEC)
        last, self._last_pos_ms = self._last_pos_ms, pos_ms
        if last is None or not pos_ms or pos_ms <= last:
            return 0
        gap_s = (pos_ms - last) / 1000.0
        if gap_s > MAX_TIMESTAMP_GAP_S or gap_s * self.fps < LOST_GAP_FRAMES:
            return 0
        return round(gap_s * self.fps) - 1

    def _probe(self) -> bool:
        """After a reopen: a stream counts as back only once a frame decodes (a
        device can open and still fail every read)."""
        assert self.cap is not None
        ok, image = self.cap.read()
        if not ok or image is None:
            return False
        self._first = to_bgr8(image)
        return True

    def _reconnect(self) -> bool:
        """Reopen a stalled stream or a failed device with exponential backoff."""
        delay = self.config.backoff_s
        self._last_pos_ms = None  # a new session starts its own clock
        for attempt in range(1, self.config.reconnect_attempts + 1):
            if self._closed.wait(delay):
                return False
            log.warning(
                "%s: %s; reconnect attempt %d/%d",
                self.display_name,
                "read failed" if self.is_webcam else "stream stalled",
                attempt,
                self.config.reconnect_attempts,
            )
            if self.cap is not None:
                self.cap.release()
            self.cap = self._open_once()
            if self.cap.isOpened() and self._probe():
                self.stats.reconnects += 1
                log.info("%s: reconnected", self.display_name)
                return True
            delay = min(delay * 2, self.config.max_backoff_s)
        return False

    def frames(self) -> Iterator[Frame]:
        if self.cap is None:
            self.open()
        index = 0
        pace_start = time.perf_counter()
        while not self._closed.is_set() and not self._limit_reached():
            read_started = time.monotonic()
            image = self._read()
            if image is None:
                if self.finite:
                    if self.config.loop and index > 0 and self._rewind():
                        continue
                    self._note_end(index)
                    return
                # A live stream or device: a failed read is an outage, not an end.
                stalled_at = read_started
                if not self._reconnect():
                    if self._closed.is_set():
                        return
                    raise self._error(
                        "device read failed (unplugged or busy?) and "
                        f"{self.config.reconnect_attempts} reopen attempts failed"
                        if self.is_webcam
                        else f"stream lost and {self.config.reconnect_attempts} "
                        "reconnect attempts failed"
                    )
                # Frames the camera produced while we were away are lost, not faked.
                lost = int((time.monotonic() - stalled_at) * self.fps)
                self.stats.lost += lost
                index += lost
                continue
            self._check_size(image)
            self.stats.read += 1
            if self.is_network and not self.finite:
                lost = self._lost_by_timestamps()
                self.stats.lost += lost
                index += lost
            if self.config.realtime and self.finite:
                delay = pace_start + index / self.fps - time.perf_counter()
                if delay > 0 and self._closed.wait(delay):
                    return
            if self._keep(index):
                # a looping file restarts its clock; the index keeps counting
                stamp = index / self.fps if self.config.loop else self._timestamp(index)
                yield Frame(
                    self.source_id,
                    index,
                    stamp,
                    image,
                    time.perf_counter(),
                )
            index += 1

    def _rewind(self) -> bool:
        """Start the file again (``loop``): reopen, which every container supports."""
        if self.cap is not None:
            self.cap.release()
        self.cap = self._open_once()
        return self.cap.isOpened()

    def _note_end(self, index: int) -> None:
        """A file that ends before its header's frame count was damaged or cut."""
        if self.frame_count and index < self.frame_count - 1:
            self.stats.damaged = (
                f"decoding stopped at frame {index} of "
                f"{self.frame_count} (truncated or damaged)"
            )
            log.warning("%s: %s", self.display_name, self.stats.damaged)

    def close(self) -> None:
        super().close()
        if self.cap is not None:
            self.cap.release()
            self.cap = None


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
    """Specs with ``@list.txt`` / ``*.txt`` files expanded (one per line, # comments)."""
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
