#!/usr/bin/env python3
"""Per-frame cost of writing annotated video: OpenCV's ``mp4v`` writer (the former
default) against the PyAV writer (H.264 in fragmented MP4) at a few x264 presets,
on the same frames in the same run, plus decode cost through OpenCV and PyAV.

    python -m benchmarks.encode_cost [--source samples/vtest.mp4] [--frames 200]

Prints wall milliseconds per frame, process CPU milliseconds per frame (what the
encoder takes from a CPU shared with inference, all its threads included), the
file size and the luma PSNR of the file against the frames it was given.
Frames are decoded into memory first, so only encoding is timed.
Each writer runs ``--rounds`` times, interleaved, and the best round is kept.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from pipeline.sinks import EncoderConfig
from pipeline.video_writer import AvVideoWriter

ROOT = Path(__file__).resolve().parent.parent


def load_frames(path: Path, count: int) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"{path}: no frames decoded")
    return frames, fps


def opencv_writer(path: Path, frames: list[np.ndarray], fps: float) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()


def pyav_writer(config: EncoderConfig):
    def write(path: Path, frames: list[np.ndarray], fps: float) -> None:
        h, w = frames[0].shape[:2]
        writer = AvVideoWriter(path, fps, (w, h), config)
        for i, frame in enumerate(frames):
            writer.write(frame, i / fps)
        writer.close()

    return write


def decode_cv2(path: Path, count: int) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while n < count and cap.read()[0]:
        n += 1
    cap.release()
    return n


def decode_pyav(path: Path, count: int) -> int:
    import av

    n = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="bgr24")
            n += 1
            if n >= count:
                break
    return n


def luma_psnr(path: Path, frames: list[np.ndarray]) -> float:
    """Y-plane PSNR (dB) of the written file against the frames it was given."""
    import av

    errors = []
    with av.open(str(path)) as container:
        decoded = container.decode(video=0)
        for frame, image in zip(decoded, frames, strict=False):
            h = image.shape[0]
            y = frame.reformat(format="yuv420p").to_ndarray()[:h].astype(np.float32)
            ref = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)[:h].astype(np.float32)
            errors.append(float(np.mean((y - ref) ** 2)))
    return float(10 * np.log10(255**2 / max(np.mean(errors), 1e-9)))


def timed(fn, *args) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=ROOT / "samples" / "vtest.mp4")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    frames, fps = load_frames(args.source, args.frames)
    n = len(frames)
    h, w = frames[0].shape[:2]
    print(f"{n} frames of {w}x{h} at {fps:g} FPS from {args.source.name}; "
          f"{cv2.getNumberOfCPUs()} CPUs")
    writers = {
        "opencv mp4v (before)": opencv_writer,
        "pyav libx264 ultrafast (default)": pyav_writer(EncoderConfig("libx264")),
        "pyav libx264 superfast": pyav_writer(EncoderConfig("libx264", "superfast")),
        "pyav libx264 veryfast": pyav_writer(EncoderConfig("libx264", "veryfast")),
        "pyav libx264 medium": pyav_writer(EncoderConfig("libx264", "medium")),
        "pyav mpeg4": pyav_writer(EncoderConfig("mpeg4")),
    }
    best: dict[str, tuple[float, float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for i, (name, write) in enumerate(writers.items()):
                path = Path(tmp) / f"{i}.mp4"
                wall, cpu = timed(write, path, frames, fps)
                size = path.stat().st_size
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, cpu, size, luma_psnr(path, frames))
        print(f"\n{'writer':<34}{'wall ms/frame':>14}{'CPU ms/frame':>14}"
              f"{'KiB':>9}{'KiB/frame':>11}{'Y-PSNR dB':>11}")
        for name, (wall, cpu, size, psnr) in best.items():
            print(f"{name:<34}{wall / n * 1000:>14.2f}{cpu / n * 1000:>14.2f}"
                  f"{size / 1024:>9.0f}{size / 1024 / n:>11.2f}{psnr:>11.1f}")
        print(f"\n{'decoder':<34}{'wall ms/frame':>14}{'CPU ms/frame':>14}")
        for name, decode in (("opencv (cv2.VideoCapture)", decode_cv2),
                             ("pyav (to_ndarray bgr24)", decode_pyav)):
            runs = [timed(decode, args.source, n) for _ in range(args.rounds)]
            wall, cpu = min(runs)
            print(f"{name:<34}{wall / n * 1000:>14.2f}{cpu / n * 1000:>14.2f}")


if __name__ == "__main__":
    main()
