"""Decoding through FFmpeg's libraries directly (PyAV), optionally on NVDEC.

``AvCapture`` offers the part of ``cv2.VideoCapture`` that ``VideoSource`` uses
(``isOpened``, ``read``, ``get``, ``release``), so a source's reconnect, pacing
and accounting logic is the same whichever decoder runs. OpenCV stays the
default CPU decoder: on the bundled clip it decodes to BGR about twice as fast
as PyAV's ``to_ndarray`` (``benchmarks/encode_cost.py``); PyAV is used where it
adds something, i.e. NVDEC on an NVIDIA GPU (``hwaccel="cuda"``: the decoder runs
on the GPU, frames come back to host memory for the pipeline).
"""

from __future__ import annotations

import ctypes
import logging
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

DECODERS = ("auto", "cpu", "pyav", "nvdec")


@lru_cache(maxsize=1)
def cuda_decode_available() -> bool:
    """Whether FFmpeg's CUDA hwaccel can run here: the wheel has it and the CUDA
    driver reports at least one device."""
    try:
        from av.codec.hwaccel import hwdevices_available

        if "cuda" not in hwdevices_available():
            return False
        cuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        return (cuda.cuInit(0) == 0
                and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0
                and count.value > 0)
    except (ImportError, OSError, AttributeError):
        return False


class AvCapture:
    """``target`` opened with FFmpeg ``options`` (e.g. a protocol whitelist or
    the RTSP transport), open/read ``timeout_s`` (None = FFmpeg's own), decoded on
    ``hwaccel`` (``"cuda"`` = NVDEC, falling back to software for codecs NVDEC
    lacks; None = CPU). ``error`` says why opening failed."""

    def __init__(
        self,
        target: str,
        options: dict[str, str] | None = None,
        timeout_s: float | None = None,
        hwaccel: str | None = None,
    ) -> None:
        import av

        self.error = ""
        self.container: Any = None
        self._pos_ms = 0.0
        accel = None
        if hwaccel:
            from av.codec.hwaccel import HWAccel

            accel = HWAccel(device_type=hwaccel, allow_software_fallback=True)
        try:
            self.container = av.open(
                target, options=options or {},
                timeout=(timeout_s, timeout_s) if timeout_s else None, hwaccel=accel,
            )
            if not self.container.streams.video:
                raise ValueError("no video stream")
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "AUTO"
            self._frames = self.container.decode(self.stream)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self.error = getattr(exc, "strerror", None) or str(exc)
            self.release()

    def isOpened(self) -> bool:  # cv2.VideoCapture's name
        return self.container is not None

    def read(self) -> tuple[bool, np.ndarray | None]:
        import av

        if self.container is None:
            return False, None
        try:
            frame = next(self._frames)
        except (StopIteration, av.FFmpegError, OSError):
            return False, None
        if frame.time is not None:
            self._pos_ms = frame.time * 1000.0
        return True, frame.to_ndarray(format="bgr24")

    def get(self, prop: int) -> float:
        if self.container is None:
            return 0.0
        if prop == cv2.CAP_PROP_FPS:
            rate = self.stream.average_rate or self.stream.guessed_rate
            return float(rate) if rate else 0.0
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(self.stream.frames or 0)
        if prop == cv2.CAP_PROP_POS_MSEC:
            return self._pos_ms
        return 0.0

    def release(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            finally:
                self.container = None
