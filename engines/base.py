"""Detector and Backend interfaces (``engines.build`` builds them by name).

A detector is pre-processing + a backend that runs the network + decoding.
The pipeline only knows ``Detector``: ``prepare`` one frame (thread-safe, runs
in the preprocess stage), ``infer`` a batch of prepared frames (runs in the
inference stage), or ``detect`` both at once.

Vocabulary: ``device`` names hardware (``cpu``, ``cuda``, ``cuda:N``);
``backend`` names the runtime (``onnxruntime``, ``openvino``, ``tensorrt``,
``torch``), chosen by the model file's suffix unless given.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from core.boxes import BoxTransform
from core.meta import ModelMeta
from core.types import Detections

log = logging.getLogger(__name__)

DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?)$")


def check_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``; anything else is a one-line error."""
    if not DEVICE_PATTERN.match(device):
        raise ValueError(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N' "
                         "(the runtime is chosen with --backend)")
    return device


def run_chunks(batch: np.ndarray, size: int,
               run_all: Callable[[list[np.ndarray]], list[list[np.ndarray]]],
               pad: bool = True) -> list[np.ndarray]:
    """Run a batch as chunks of ``size`` (the last zero-padded to ``size`` when
    ``pad``, as a fixed-batch model needs): ``run_all(chunks)`` -> each chunk's
    outputs (run in parallel by the caller), concatenated without the padding."""
    n = len(batch)
    chunks = []
    for start in range(0, n, size):
        chunk = batch[start:start + size]
        if pad and len(chunk) < size:
            zeros = np.zeros((size - len(chunk), *chunk.shape[1:]), chunk.dtype)
            chunk = np.concatenate([chunk, zeros])
        chunks.append(np.ascontiguousarray(chunk))
    outputs = run_all(chunks)
    return [np.concatenate(parts)[:n] for parts in zip(*outputs, strict=True)]


class Backend(ABC):
    """Runs a network: NCHW float32 batch in, raw output arrays out.

    ``max_batch``: the largest batch one ``infer`` call takes when the backend
    caps it (0: no cap of its own; a fixed-batch model then caps it). On a CPU
    with several threads, a batch runs as chunks, each its own single-thread
    request, all at once: one chunk per thread for a dynamic-batch model, chunks
    of its batch for a fixed-batch one (e.g. a static batch-1 export, which then
    takes ``batch x threads`` frames per call). Single-thread requests side by
    side keep every core busy where one multi-thread request leaves cores waiting
    at its synchronisation points, so this pays wherever ``--batch`` gathers
    frames (files, several sources); docs/benchmarks.md has the measurements.
    Such a backend also takes overlapping ``infer`` calls (``calls_in_flight``):
    the next call's chunks start while the caller decodes the last call's
    outputs, so no core waits between calls.

    Every backend is built as ``Backend(path, device="cpu", threads=None)``;
    ``threads`` caps CPU threads (so inference leaves cores for decoding and
    encoding). Subclasses do their heavy imports inside ``load`` so importing
    engines/ never needs torch, onnxruntime, OpenVINO or TensorRT.
    """

    def __init__(self, path: str | Path, device: str = "cpu",
                 threads: int | None = None) -> None:
        self.path = Path(path)
        self.device = check_device(device)
        self.threads = threads
        self.meta: ModelMeta | None = None
        self.input_shape: tuple[int | str | None, ...] = ()
        self.max_batch = 0
        self.fixed_batch: int | None = None  # see _allow_parallel_chunks
        self.workers = 1
        self.calls_in_flight = 1  # how many infer calls may overlap
        self._chunk_pool: ThreadPoolExecutor | None = None
        self._chunk_lock = threading.Lock()
        self.load()

    @abstractmethod
    def load(self) -> None:
        """Open the model; set ``meta`` (if the file carries it) and ``input_shape``."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one batch; returns the network's outputs in declaration order."""

    def _allow_parallel_chunks(self) -> None:
        """Called by CPU backends at the end of ``load``: batches then run as
        parallel single-thread chunks on ``workers`` threads, and a fixed-batch
        model (``fixed_batch``) takes ``fixed_batch x workers`` frames per call."""
        b = self.input_shape[0] if self.input_shape else None
        self.fixed_batch = b if isinstance(b, int) and b > 0 else None
        self.workers = max(1, self.threads or os.cpu_count() or 1)
        if self.workers > 1:
            self.calls_in_flight = 2
            if self.fixed_batch:
                self.max_batch = self.fixed_batch * self.workers

    def _chunked(self, batch: np.ndarray) -> bool:
        """Whether ``batch`` runs as parallel chunks (``_infer_chunks``)."""
        return self.workers > 1 and len(batch) > (self.fixed_batch or 1)

    def _infer_chunks(self, batch: np.ndarray) -> list[np.ndarray]:
        """``batch`` as chunks (of the fixed batch, or one per worker), each a
        ``_run_chunk`` call on one of ``workers`` threads (the runtimes release
        the GIL); thread-safe."""
        with self._chunk_lock:
            if self._chunk_pool is None:
                self._open_chunk_runner()
                self._chunk_pool = ThreadPoolExecutor(
                    self.workers, thread_name_prefix=f"{type(self).__name__}-chunk")
        pool = self._chunk_pool
        size = self.fixed_batch or -(-len(batch) // self.workers)
        return run_chunks(batch, size,
                          lambda chunks: list(pool.map(self._run_chunk, chunks)),
                          pad=self.fixed_batch is not None)

    def _open_chunk_runner(self) -> None:
        """Prepare single-thread execution for ``_run_chunk`` (first use only)."""
        raise NotImplementedError(f"{type(self).__name__} does not run chunks")

    def _run_chunk(self, chunk: np.ndarray) -> list[np.ndarray]:
        """One chunk on a single thread; called from several threads at once."""
        raise NotImplementedError(f"{type(self).__name__} does not run chunks")

    def _close_chunks(self) -> None:
        if self._chunk_pool is not None:
            self._chunk_pool.shutdown()
            self._chunk_pool = None

    def warmup(self, runs: int = 2) -> None:
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in self.input_shape]
        if shape:
            for _ in range(runs):
                self.infer(np.zeros(shape, dtype=np.float32))

    def close(self) -> None:
        """Release device memory and sessions."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Prepared:
    """One frame made ready for the network: ``input`` (C×H×W float32, or the raw
    image for detectors that take one) and the transform that maps boxes back."""

    input: np.ndarray
    transform: BoxTransform

    @classmethod
    def whole(cls, image: np.ndarray) -> Prepared:
        """The raw frame itself, for detectors that scan the image as it is."""
        return cls(image, BoxTransform.identity(image.shape[1], image.shape[0]))


class Detector(ABC):
    """The only thing the pipeline knows about models.

    A detector stores what ``engines.build`` resolved for it (an open
    ``Backend``, class names, sizes, thresholds) and opens no file itself.
    ``options`` names the ``DetectorOptions`` its constructor takes under the
    same names (``conf``, ``iou``, ``max_det``, ...). Families that run a network
    through a ``Backend`` (``uses_backend``) also use ``device``, ``threads`` and
    ``backend``. Every family takes ``classes`` (the class ids to keep, applied
    by ``select``) and applies ``max_det`` itself, as its NMS cap.
    """

    class_names: list[str]
    options: ClassVar[tuple[str, ...]] = ()
    uses_backend: ClassVar[bool] = True
    # Families whose threshold is a logit of ``conf`` need 0 < conf < 1.
    conf_open_interval: ClassVar[bool] = False
    classes: frozenset[int] | None = None

    @abstractmethod
    def prepare(self, image: np.ndarray) -> Prepared:
        """Resize/normalise one BGR uint8 frame. Stateless and thread-safe."""

    @abstractmethod
    def infer(self, batch: list[Prepared]) -> list[Detections]:
        """Run prepared frames; boxes come back in original-frame pixels."""

    def select(self, detections: Detections) -> Detections:
        """Keep only the chosen ``classes``."""
        if self.classes is not None and len(detections):
            detections = detections[np.isin(detections.class_ids, list(self.classes))]
        return detections

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        dets = self.infer([self.prepare(image) for image in images])
        return [self.select(d) for d in dets]

    def __call__(self, image: np.ndarray) -> Detections:
        """Detections on one BGR uint8 image (H×W×3), boxes in its pixels."""
        return self.detect([image])[0]

    @property
    def max_batch(self) -> int:
        """Largest batch ``infer`` accepts in one call."""
        return 1

    @property
    def calls_in_flight(self) -> int:
        """How many ``infer`` calls may run at once, from different threads, and
        gain from it (1: calls must not overlap)."""
        return 1

    def warmup(self) -> None:
        """Run once on a dummy input so the first real frame is not slow."""

    def close(self) -> None:
        """Release the backend."""

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
