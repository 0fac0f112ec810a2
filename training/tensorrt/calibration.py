"""INT8 calibration: frames prepared as the detector prepares them, batched, and
fed to TensorRT's entropy calibrator (implicit quantization, TensorRT 10)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.formats import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from core.image import RESIZE_MODES, preprocess
from core.meta import ModelMeta
from engines.backends.tensorrt import require_tensorrt
from training.tensorrt.profile import Shape

log = logging.getLogger(__name__)

Prepare = Callable[[np.ndarray], np.ndarray]  # BGR uint8 HxWx3 -> CHW float32


def meta_prepare(meta: ModelMeta) -> Prepare:
    """The detectors' pre-processing from ``meta``: BGR uint8 HxWx3 -> CHW float32.

    Letterbox (pad 114) or stretch to ``input_size``, BGR->RGB, /255, then
    ``(x - mean) / std``.
    """
    if meta.resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize {meta.resize!r}; expected one of "
                         f"{RESIZE_MODES}")
    size = (int(meta.input_size[0]), int(meta.input_size[1]))

    def prepare(image: np.ndarray) -> np.ndarray:
        return preprocess(image, size, meta.resize, meta.mean, meta.std)[0]

    return prepare


def detector_prepare(onnx_path: Path, meta: ModelMeta) -> Prepare:
    """The model family's own ``Detector.prepare`` when it loads, else ``meta_prepare``.

    Using the detector keeps calibration data identical to what inference feeds.
    """
    try:
        from engines.build import load_detector

        detector = load_detector(onnx_path, device="cpu")
    except Exception as exc:  # family module missing or not loadable on CPU
        log.warning("calibration uses the metadata pre-processing (%s); could not "
                    "load the %s detector: %s", meta.resize, meta.family, exc)
        return meta_prepare(meta)

    def prepare(image: np.ndarray) -> np.ndarray:
        return np.asarray(detector.prepare(image).input, dtype=np.float32)

    return prepare


class CalibrationBatcher:
    """Fixed-size float32 NCHW batches for INT8 calibration.

    Reads up to ``max_images`` images from a folder (sorted by name) or frames
    spread evenly over a video, applies ``prepare`` (one BGR uint8 frame -> CHW
    float32, as the detector does) and yields ``(batch_size, C, H, W)`` arrays. A
    last partial batch is filled by repeating its own images, because TensorRT
    calibrates with the profile's fixed batch.
    """

    def __init__(self, source: str | Path, batch_size: int,
                 prepare: Prepare,
                 max_images: int = 256) -> None:
        if batch_size < 1:
            raise ValueError(f"calibration batch size must be >= 1, got {batch_size}")
        if max_images < 1:
            raise ValueError(f"--calib-images must be >= 1, got {max_images}")
        self.source = Path(source)
        if not self.source.exists():
            raise ValueError(f"calibration data not found: {self.source}")
        if self.source.is_file() and self.source.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"calibration data {self.source} is neither a folder of "
                             f"images nor a video ({sorted(VIDEO_SUFFIXES)})")
        self.batch_size = batch_size
        self.prepare = prepare
        self.max_images = max_images

    def images(self) -> Iterator[np.ndarray]:
        """BGR uint8 frames, at most ``max_images``."""
        if self.source.is_dir():
            files = sorted(p for p in self.source.iterdir()
                           if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"no images ({sorted(IMAGE_SUFFIXES)}) in "
                                 f"{self.source}")
            for path in files[: self.max_images]:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    log.warning("skipping unreadable image %s", path)
                    continue
                yield image
            return
        from pipeline.sources import media_info, read_frames

        total = media_info(self.source)[0]
        step = max(1, total // self.max_images) if total > 0 else 1
        for frame in read_frames(self.source, stride=step,
                                 max_frames=step * self.max_images):
            yield frame.image

    def __iter__(self) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        count = 0
        for image in self.images():
            pending.append(self.prepare(image))
            count += 1
            if len(pending) == self.batch_size:
                yield np.stack(pending).astype(np.float32, copy=False)
                pending = []
        if count == 0:
            raise ValueError(f"no frames could be read from {self.source}")
        if pending:
            filled = [pending[i % len(pending)] for i in range(self.batch_size)]
            yield np.stack(filled).astype(np.float32, copy=False)


def make_calibrator(batcher: CalibrationBatcher | None, cache_path: Path,
                    input_shape: Shape) -> Any:
    """An ``IInt8EntropyCalibrator2`` fed by ``batcher``; reuses ``cache_path``.

    When the cache file exists TensorRT reads it and never asks for batches, so
    ``batcher`` may be None then. Device memory for one batch is allocated here
    and freed by ``calibrator.free()``.
    """
    require_tensorrt()
    import tensorrt as trt

    from engines.backends.cuda_memory import DeviceBuffer, Stream

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = iter(batcher) if batcher is not None else iter(())
            self.shape = input_shape
            self.nbytes = int(np.prod(input_shape)) * 4
            self.device = DeviceBuffer(self.nbytes)
            self.stream = Stream()
            self.done = 0

        def get_batch_size(self) -> int:
            return int(self.shape[0]) if len(self.shape) == 4 else 1

        def get_batch(self, names: list[str]) -> list[int]:
            try:
                batch = next(self.batches)
            except StopIteration:
                return []  # tells TensorRT calibration data is exhausted
            if batch.size != np.prod(self.shape):
                raise ValueError(f"calibration batch {batch.shape} != profile "
                                 f"{self.shape}")
            batch = np.ascontiguousarray(batch.reshape(self.shape), dtype=np.float32)
            self.stream.copy_htod_async(self.device, batch)
            self.stream.synchronize()
            self.done += 1
            log.info("calibration batch %d (%d images)", self.done,
                     self.done * self.get_batch_size())
            return [self.device.ptr]

        # The stub types this as Buffer; TensorRT also accepts None = "no cache".
        def read_calibration_cache(self) -> bytes | None:  # type: ignore[override]
            if cache_path.is_file():
                log.info("reusing INT8 calibration cache %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))
            log.info("wrote INT8 calibration cache %s", cache_path)

        def free(self) -> None:
            self.device.free()
            self.stream.free()

    return EntropyCalibrator()
