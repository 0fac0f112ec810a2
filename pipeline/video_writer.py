"""Video out through FFmpeg's libraries (PyAV): H.264 in fragmented MP4, RTSP push.

Fragmented MP4 (``frag_keyframe+empty_moov+default_base_moof``, packets flushed as
they are muxed) writes a self-contained fragment at every keyframe, so a file cut
by SIGKILL, power loss or the OOM killer still plays up to its last complete
fragment; a keyframe every ``gop_s`` seconds bounds what a kill can lose.

Timestamps come from the source (``Frame.timestamp``, relative to the first frame
written), so a stream with gaps or a variable rate plays at its real speed.

Encoder settings are chosen to stay cheap on a CPU already saturated by inference:
x264 ``ultrafast`` with ``tune=zerolatency`` (no B-frames, no rc/sync lookahead, so
no frame is held back and no lookahead thread competes with the detector), CRF 23.
The price is a file about 1.5x that of ``veryfast``, at a luma PSNR as good (see
``benchmarks/encode_cost.py`` for measured figures).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.types import Result
from pipeline.sinks import AUTO, EncoderConfig, Sink, SinkError
from pipeline.sources import redact_text, redact_url

log = logging.getLogger(__name__)

# Codecs the bundled FFmpeg offers that suit annotated video; others the wheel has
# are accepted too (checked against av.codecs_available).
KNOWN_CODECS = ("libx264", "h264_nvenc", "mpeg4", "libvpx-vp9", "libsvtav1")
FRAGMENTED_MP4 = {
    "movflags": "frag_keyframe+empty_moov+default_base_moof",
    "flush_packets": "1",
}
TIME_BASE = Fraction(1, 90_000)  # the MPEG clock; MPEG-4 Part 2 allows < 2**16
SINGLE_THREAD_PIXELS = 1920 * 1088  # x264 encodes up to 1080p on one thread
MPEG4_TIME_BASE = Fraction(1, 1000)


@dataclass(frozen=True)
class EncodedPacket:
    """One encoded packet, copied out before muxing (the muxer takes the
    original's data). ``pts``/``dts`` count ``time_base`` units from the writer's
    first frame; ``time``: the packet's presentation time in seconds on the
    source's clock (``Frame.timestamp``)."""

    data: bytes
    pts: int
    dts: int
    keyframe: bool
    time_base: Fraction
    time: float


# Receives each frame's encoded packets (e.g. the ring buffer clips are cut from).
PacketTap = Callable[[list[EncodedPacket]], None]


class _Discard(io.RawIOBase):
    """A file that forgets what is written: the container of an encoder that
    only feeds a packet tap (clips with ``--no-video``)."""

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return len(data)


@lru_cache(maxsize=1)
def nvenc_available() -> bool:
    """Whether FFmpeg's NVENC encoder opens here (NVIDIA GPU and driver present)."""
    import av

    if "h264_nvenc" not in av.codecs_available:
        return False
    try:
        ctx = av.CodecContext.create("h264_nvenc", "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.open()
    except Exception as exc:  # no GPU, no driver, no free encoder session
        log.debug("h264_nvenc does not open: %s", exc)
        return False
    return True


def resolve_codec(name: str) -> str:
    """The encoder to use for ``name`` (``auto`` picks NVENC or x264, logged)."""
    import av

    if name == AUTO:
        chosen = "h264_nvenc" if nvenc_available() else "libx264"
        log.info(
            "video encoder: %s (%s)",
            chosen,
            "NVIDIA GPU found" if chosen == "h264_nvenc" else "no NVIDIA GPU encoder",
        )
        return chosen
    if name not in av.codecs_available:
        offered = [c for c in KNOWN_CODECS if c in av.codecs_available]
        raise SinkError(
            f"codec {name!r} is not in this FFmpeg build; try one of "
            f"{', '.join([AUTO, *offered])}"
        )
    try:
        codec = av.Codec(name, "w")
    except Exception as exc:
        raise SinkError(f"codec {name!r} has no encoder in this FFmpeg build") from exc
    if codec.type != "video":
        raise SinkError(f"codec {name!r} is a {codec.type} codec, not a video one")
    return name


def codec_options(codec: str, config: EncoderConfig) -> dict[str, str]:
    """Per-encoder options that keep encoding cheap and frames undelayed."""
    if codec == "libx264":
        return {"preset": config.preset, "tune": "zerolatency", "crf": str(config.crf)}
    if codec == "h264_nvenc":
        return {"preset": "p4", "tune": "ll", "bf": "0"}
    if codec == "libvpx-vp9":
        return {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": "32",
                "b": "0"}
    if codec == "libsvtav1":
        return {"preset": "10", "crf": "35"}
    return {}


class AvVideoWriter:
    """Encodes BGR frames into a container (a file, or an RTSP server to push to).

    ``target``: file path or URL; None: encode for ``tap`` only, write no file
    (muxed into fragmented MP4 that is thrown away, so the stream's parameters are
    those of a file). ``tap``: called with each frame's packets before they are
    muxed. ``fps``: the source's rate (encoder hint and keyframe spacing).
    ``size``: (width, height); odd sizes lose their last row/column (4:2:0
    needs even sizes). ``container_format``: FFmpeg muxer name
    (``None`` = from the suffix; fragmented MP4 options are added for ``.mp4``).
    """

    def __init__(
        self,
        target: str | Path | None,
        fps: float,
        size: tuple[int, int],
        config: EncoderConfig | None = None,
        container_format: str | None = None,
        container_options: dict[str, str] | None = None,
        tap: PacketTap | None = None,
    ) -> None:
        import av

        self.config = config or EncoderConfig()
        self.tap = tap
        self.target = "" if target is None else str(target)
        self.name = redact_url(self.target) if target is not None else "(no file)"
        if size[0] < 2 or size[1] < 2:
            raise SinkError(f"{self.name}: cannot write video of size {size}")
        if not fps or fps <= 0:
            raise SinkError(f"{self.name}: cannot write video at {fps!r} FPS")
        self.size = (size[0] - size[0] % 2, size[1] - size[1] % 2)
        self.codec = resolve_codec(self.config.codec)
        options = dict(container_options or {})
        if target is None:
            container_format, options = "mp4", {**FRAGMENTED_MP4, **options}
        elif container_format is None and str(target).lower().endswith(".mp4"):
            options = {**FRAGMENTED_MP4, **options}
        try:
            self.container = av.open(
                _Discard() if target is None else str(target), "w",
                format=container_format, options=options
            )
        except (av.FFmpegError, OSError) as exc:
            raise SinkError(
                f"{self.name}: cannot open for writing ({self._why(exc)})"
            ) from exc
        try:
            self.stream = self._add_stream(fps)
            # Write the header now: a folder that is not writable or an RTSP
            # server that refuses the push fails here, before any frame is read.
            self.container.start_encoding()
        except (av.FFmpegError, OSError) as exc:
            self._abandon()
            raise SinkError(
                f"{self.name}: cannot start writing ({self._why(exc)})"
            ) from exc
        except BaseException:
            self._abandon()
            raise
        self._t0: float | None = None
        self._last_pts = -1
        self._warned = False
        self.frames = 0

    def _add_stream(self, fps: float) -> Any:
        import av

        rate = Fraction(fps).limit_denominator(1001)
        stream = self.container.add_stream(self.codec, rate=rate)
        stream.width, stream.height = self.size
        stream.pix_fmt = "yuv420p"
        self.time_base = MPEG4_TIME_BASE if self.codec == "mpeg4" else TIME_BASE
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        stream.gop_size = max(1, round(fps * self.config.gop_s))
        threads = self.config.threads
        if not threads and self.codec == "libx264" and (
                self.size[0] * self.size[1] <= SINGLE_THREAD_PIXELS):
            threads = 1
        if threads:
            stream.codec_context.thread_count = threads
        if self.codec not in ("libx264", "libvpx-vp9", "libsvtav1"):
            # bitrate-driven encoders: ~0.15 bit per pixel keeps boxes and text sharp
            stream.bit_rate = int(self.size[0] * self.size[1] * fps * 0.15)
        options = codec_options(self.codec, self.config)
        stream.options = options
        try:
            stream.codec_context.open()
        except av.FFmpegError as exc:
            raise SinkError(
                f"{self.name}: cannot open encoder {self.codec} for "
                f"{self.size[0]}x{self.size[1]} at {fps:g} FPS ({self._why(exc)})"
            ) from exc
        log.info(
            "%s: %s %dx%d, keyframe every %d frames, options %s",
            self.name, self.codec, *self.size, stream.gop_size, options,
        )
        return stream

    def _why(self, exc: BaseException) -> str:
        """FFmpeg's message without the target's credentials."""
        return redact_text(str(exc), self.target)

    def _abandon(self) -> None:
        try:
            self.container.close()
        except Exception as exc:  # already failing: keep the first error
            log.debug("%s: close after a failed open: %s", self.name, exc)

    def write(self, image: np.ndarray, timestamp: float) -> None:
        """Encode one H×W×3 uint8 BGR frame shown at ``timestamp`` seconds."""
        import av

        if (image.shape[1], image.shape[0]) != self.size:
            image = self._fit(image)
        if self._t0 is None:
            self._t0 = timestamp
        pts = round((timestamp - self._t0) / self.time_base)
        pts = max(pts, self._last_pts + 1)  # strictly increasing, as muxers require
        self._last_pts = pts
        # OpenCV's BGR -> I420 costs a quarter of PyAV's bgr24 copy + swscale: the
        # same BT.601 limited-range luma (within 1 level), chroma averaged per 2x2.
        frame = av.VideoFrame.from_ndarray(
            cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p"
        )
        frame.pts, frame.time_base = pts, self.time_base
        try:
            self._mux(self.stream.encode(frame))
        except (av.FFmpegError, OSError) as exc:
            raise SinkError(
                f"{self.name}: writing frame failed ({self._why(exc)})"
            ) from exc
        self.frames += 1

    @property
    def start_time(self) -> float | None:
        """Source time of the first frame written (pts 0), None before it."""
        return self._t0

    def _mux(self, packets: list[Any]) -> None:
        if self.tap is not None and packets:
            t0 = self._t0 or 0.0
            self.tap([EncodedPacket(bytes(p), p.pts, p.dts, p.is_keyframe,
                                    p.time_base, t0 + float(p.pts * p.time_base))
                      for p in packets])
        self.container.mux(packets)

    def _fit(self, image: np.ndarray) -> np.ndarray:
        w, h = self.size
        if image.shape[1] - w in (0, 1) and image.shape[0] - h in (0, 1):
            return np.ascontiguousarray(image[:h, :w])  # odd size: drop a row/column
        if not self._warned:
            log.warning(
                "%s: frame size changed to %dx%d; resizing to %dx%d",
                self.name, image.shape[1], image.shape[0], w, h,
            )
            self._warned = True
        return cv2.resize(image, (w, h))

    def close(self) -> None:
        """Flush the encoder and finish the container; safe to call twice."""
        import av

        if self.container is None:
            return
        try:
            self._mux(self.stream.encode(None))
        except (av.FFmpegError, OSError) as exc:
            log.error("%s: flushing the encoder failed: %s", self.name, self._why(exc))
        finally:
            try:
                self.container.close()
            except (av.FFmpegError, OSError) as exc:
                log.error("%s: closing failed: %s", self.name, self._why(exc))
            self.container = None  # type: ignore[assignment]


class AvVideoSink(Sink):
    """Annotated video of one source through ``AvVideoWriter``: an MP4 file or an
    RTSP push (``rtsp://host:port/path``, TCP; a server that does not answer
    within ``rtsp_timeout_s`` is an error, at open or mid-run)."""

    def __init__(
        self,
        target: str | Path,
        fps: float,
        size: tuple[int, int],
        config: EncoderConfig | None = None,
        rtsp_timeout_s: float = 5.0,
    ) -> None:
        self.target = target
        if str(target).lower().startswith(("rtsp://", "rtsps://")):
            options = {"rtsp_transport": "tcp",
                       "timeout": str(int(rtsp_timeout_s * 1_000_000))}
            self.writer = AvVideoWriter(target, fps, size, config, "rtsp", options)
        else:
            self.writer = AvVideoWriter(target, fps, size, config)

    @property
    def frames(self) -> int:
        return self.writer.frames

    def write(self, result: Result) -> None:
        self.writer.write(result.output_image, result.frame.timestamp)

    def close(self) -> None:
        self.writer.close()
