"""Shared fixtures: the bundled sample clip, a small detections factory, a
stub detector, small videos, and a Mosquitto broker on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from core.types import Detections
from engines.base import Detector

ROOT = Path(__file__).resolve().parent.parent

SAMPLE_VIDEO = ROOT / "samples" / "vtest.mp4"


def make_detections(
    boxes: list[list[float]] | np.ndarray, scores=None, class_ids=None, track_ids=None
) -> Detections:
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    n = len(boxes)
    return Detections(
        boxes,
        np.full(n, 0.9, np.float32) if scores is None else scores,
        np.zeros(n, np.int32) if class_ids is None else class_ids,
        track_ids,
    )


@pytest.fixture
def sample_video() -> Path:
    return SAMPLE_VIDEO


class StubDetector(Detector):
    """A fast fake detector: one box per frame at a fixed place, optional delay
    and a failure hook, for pipeline tests that are about plumbing, not models."""

    class_names = ["thing"]

    def __init__(
        self,
        delay: float = 0.0,
        max_batch: int = 1,
        fail_prepare_at: int | None = None,
        fail_infer_at: int | None = None,
        in_flight: int = 1,
    ) -> None:
        import threading

        self.delay = delay
        self._max_batch = max_batch
        self._in_flight = in_flight
        self.fail_prepare_at = fail_prepare_at
        self.fail_infer_at = fail_infer_at
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.running = self.most_at_once = 0  # infer calls under way
        self._lock = threading.Lock()

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def calls_in_flight(self) -> int:
        return self._in_flight

    def prepare(self, image):
        from engines.base import Prepared

        self.calls += 1
        if self.fail_prepare_at is not None and self.calls > self.fail_prepare_at:
            raise RuntimeError("injected prepare failure")
        return Prepared.whole(image)

    def infer(self, batch):
        with self._lock:
            self.batch_sizes.append(len(batch))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            call = len(self.batch_sizes)
        try:
            return self._infer(batch, call)
        finally:
            with self._lock:
                self.running -= 1

    def _infer(self, batch, call: int):
        import time

        if self.fail_infer_at is not None and call > self.fail_infer_at:
            raise RuntimeError("injected infer failure")
        if self.delay:
            time.sleep(self.delay)
        return [self.box(p.input) for p in batch]

    def box(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        return make_detections([[w * 0.25, h * 0.25, w * 0.5, h * 0.5]])



def write_video(
    path: Path, frames: int = 30, size: tuple[int, int] = (160, 120), fps: float = 10.0
) -> Path:
    """A small MP4 whose frames carry their index as a moving square."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        image = np.full((size[1], size[0], 3), 40, np.uint8)
        x = (i * 4) % (size[0] - 20)
        image[20:40, x : x + 20] = (0, 200, 255)
        writer.write(image)
    writer.release()
    return path


def decoded_frames(path: Path) -> int:
    """How many frames of a video decode (a torn file counts what is readable)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    return frames


@pytest.fixture
def small_video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "small clip.mp4")


# A Mosquitto MQTT broker on 127.0.0.1 for the event tests (CI installs it).
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
needs_broker = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto program not installed (CI installs it)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on {port}")


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto on 127.0.0.1 only; yields its port."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)
