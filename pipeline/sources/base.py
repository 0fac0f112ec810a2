"""What every source shares: its config and counts, the Source interface,
URL redaction and safe names, and decoded-image normalisation."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from core.errors import InputError
from core.types import Frame
from pipeline.av_capture import DECODERS

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
HEALTH_STATES = ("source_down", "source_up")
# (state, frame index): a live source went down or came back
HealthCallback = Callable[[str, int], None]
RTSP_TRANSPORTS = ("tcp", "udp")
# A gap in the stream's own timestamps longer than this many frame intervals
# counts the frames in between as lost (jitter below it is not a loss).
LOST_GAP_FRAMES = 1.5
MAX_TIMESTAMP_GAP_S = 60.0  # a larger jump is a clock reset, not a loss
MAX_PIXELS = 8192 * 8192  # larger frames are refused rather than risk memory blowups


class SourceError(InputError):
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
    ``nvdec``; webcams always use OpenCV. ``reconnect_forever``: a live source
    that goes down is retried with backoff until it comes back or the run
    stops, whatever ``reconnect_attempts`` says (a server's cameras).
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
    reconnect_forever: bool = False

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


def redact_text(text: str, url: str) -> str:
    """``text`` with ``url`` and its password removed."""
    text = text.replace(url, redact_url(url))
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


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
        # Told "source_down" when a live source's frames stop and "source_up"
        # when they come back, with the frame index; set by the lane's builder.
        self.on_health: HealthCallback | None = None
        self._closed = threading.Event()

    def _health(self, state: str, index: int) -> None:
        """Report a state change; a failing receiver is logged, never stops
        the capture (the camera matters more than its notification)."""
        if self.on_health is None:
            return
        try:
            self.on_health(state, index)
        except Exception:
            log.exception("%s: reporting %s failed", self.display_name, state)

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
