"""CPU-seconds per frame of each stage around inference, and of the cheaper
alternatives for each, on one clip (each variant run alone, process CPU time):

    python -m benchmarks.cpu_per_stage samples/vtest.mp4 --model yolo --frames 200

* decode: OpenCV's FFmpeg capture with its default threads, with 1 thread
  (``OPENCV_FFMPEG_CAPTURE_OPTIONS=threads;1``), and PyAV (frame threads,
  ``to_ndarray("bgr24")``);
* preprocess: the detector's ``prepare`` vs one ``cv2.dnn.blobFromImageWithParams``
  call doing resize + letterbox + BGR->RGB + /255 (checked equal within 1/255);
* draw: ``Overlay.draw`` (copies the frame) vs drawing on the frame in place;
* encode: OpenCV ``mp4v`` (the former writer, kept for comparison) vs PyAV
  libx264 presets (the pipeline writes H.264 through PyAV, ``ultrafast`` by default).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.build import load_detector
from pipeline.overlay import Overlay

ROOT = Path(__file__).resolve().parent.parent


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(frames: int, body: Callable[[], Any]) -> tuple[float, float]:
    """(CPU ms per frame, wall ms per frame) of ``body()``."""
    c0, w0 = cpu(), time.perf_counter()
    body()
    return 1000 * (cpu() - c0) / frames, 1000 * (time.perf_counter() - w0) / frames


def read_cv2(path: str, limit: int, threads: int | None) -> list[np.ndarray]:
    if threads is not None:
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"threads;{threads}"
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
    frames = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def read_av(path: str, limit: int) -> list[np.ndarray]:
    import av

    frames = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) >= limit:
                break
    return frames


def encode_av(frames: list[np.ndarray], path: Path, preset: str, fps: int) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": preset, "crf": "23"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, "bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def encode_cv2(frames: list[np.ndarray], path: Path, fps: int) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for image in frames:
        writer.write(image)
    writer.release()


def fused_letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    params = cv2.dnn.Image2BlobParams()
    params.scalefactor = (1 / 255.0,) * 3
    params.size = (size[1], size[0])
    params.swapRB = True
    params.paddingmode = cv2.dnn.DNN_PMODE_LETTERBOX
    params.borderValue = (114.0,) * 3
    return cv2.dnn.blobFromImageWithParams(image, params)[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("clip")
    p.add_argument("--model", default="yolo")
    p.add_argument("--frames", type=int, default=200)
    args = p.parse_args(argv)
    rows: list[tuple[str, str, float, float, str]] = []

    def row(stage: str, variant: str, result: tuple[float, float], note: str = ""
            ) -> None:
        rows.append((stage, variant, *result, note))

    holder: dict[str, Any] = {}
    n = len(read_cv2(args.clip, args.frames, None))
    row("decode", "cv2 default threads", measure(n, lambda: holder.update(
        frames=read_cv2(args.clip, args.frames, None))))
    row("decode", "cv2 threads;1", measure(n, lambda: read_cv2(args.clip, n, 1)))
    row("decode", "cv2 threads;2", measure(n, lambda: read_cv2(args.clip, n, 2)))
    try:
        row("decode", "pyav AUTO threads", measure(n, lambda: read_av(args.clip, n)))
    except ImportError:
        pass
    frames = holder["frames"]
    h, w = frames[0].shape[:2]

    detector = load_detector(args.model)
    size = detector.imgsz
    row("preprocess", "detector.prepare", measure(n, lambda: holder.update(
        prepared=[detector.prepare(f) for f in frames])))
    fused = [fused_letterbox(f, size) for f in frames[:5]]
    diff = max(float(np.abs(a - b.input).max())
               for a, b in zip(fused, holder["prepared"][:5], strict=False))
    row("preprocess", "blobFromImageWithParams letterbox",
        measure(n, lambda: [fused_letterbox(f, size) for f in frames]),
        f"max diff {diff * 255:.1f}/255")
    dets = [detector.infer([x])[0] for x in holder["prepared"]]
    names = list(detector.class_names)
    overlay = Overlay(names)
    row("draw", "Overlay.draw (copy + draw)", measure(n, lambda: holder.update(
        drawn=[overlay.draw(f, d) for f, d in zip(frames, dets, strict=True)])),
        f"{sum(len(d) for d in dets) / n:.1f} boxes/frame")
    row("draw", "frame copy alone", measure(n, lambda: [f.copy() for f in frames]))
    with tempfile.TemporaryDirectory() as tmp:
        row("encode", "cv2 mp4v", measure(n, lambda: encode_cv2(
            holder["drawn"], Path(tmp) / "a.mp4", 25)),
            f"{(Path(tmp) / 'a.mp4').stat().st_size / n / 1e3:.0f} kB/frame"
            if (Path(tmp) / "a.mp4").exists() else "")
        for preset in ("ultrafast", "superfast", "veryfast"):
            out = Path(tmp) / f"{preset}.mp4"
            try:
                result = measure(n, lambda o=out, pr=preset: encode_av(
                    holder["drawn"], o, pr, 25))
            except ImportError:
                break
            row("encode", f"pyav libx264 {preset} crf 23", result,
                f"{out.stat().st_size / n / 1e3:.0f} kB/frame")
    print(f"{args.clip}: {n} frames {w}x{h}, model input {size}, "
          f"{os.cpu_count()} cores; process CPU per frame, each variant alone")
    print(f"{'stage':<11}{'variant':<36}{'CPU ms':>8}{'wall ms':>9}  note")
    for stage, variant, c, wall, note in rows:
        print(f"{stage:<11}{variant:<36}{c:>8.2f}{wall:>9.2f}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
