"""Video files, webcams and RTSP/HTTP streams, through FFmpeg (OpenCV's
backend, or PyAV's for NVDEC): protocol whitelist for files, timeouts,
reconnects with backoff, frames lost counted from the stream's timestamps."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from core.types import Frame
from pipeline.av_capture import AvCapture, cuda_decode_available
from pipeline.sources.base import (
    DEFAULT_FPS,
    LOST_GAP_FRAMES,
    MAX_TIMESTAMP_GAP_S,
    Source,
    SourceConfig,
    is_rtsp,
    is_url,
    redact_text,
    to_bgr8,
)

log = logging.getLogger(__name__)


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
        """Reopen a stalled stream or a failed device with exponential backoff
        (``reconnect_attempts`` times, or until it works or the run stops)."""
        delay = self.config.backoff_s
        self._last_pos_ms = None  # a new session starts its own clock
        forever = self.config.reconnect_forever
        attempts = itertools.count(1) if forever else range(
            1, self.config.reconnect_attempts + 1)
        for attempt in attempts:
            if self._closed.wait(delay):
                return False
            log.warning(
                "%s: %s; reconnect attempt %d/%s",
                self.display_name,
                "read failed" if self.is_webcam else "stream stalled",
                attempt,
                "forever" if forever else self.config.reconnect_attempts,
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
                self._health("source_down", index)
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
                self._health("source_up", index)
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
