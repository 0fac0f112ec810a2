"""Accuracy and CPU speed of YOLO models: COCO mAP on a dataset split, mAP on a
generated video's MOT ground truth, and ONNX Runtime ms/frame at batch 1.

    python -m benchmarks.yolo_bench models/yolo_demo.onnx runs/yolo_grid/best.onnx \
        --data runs/data/shapes/data.yaml --video samples/demo.mp4 --threads 1
    python -m benchmarks.yolo_bench models/yolo_people.onnx \
        --data runs/data/vtest_hog/data.yaml --hog   # student vs its HOG teacher

ms_per_frame is the median ``detect`` time at batch 1 (prepare + infer + NMS) on
video frames when ``--video`` is given, else on val images.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from core.boxes import xywh_to_xyxy
from engines.backends.onnxruntime import OnnxRuntimeBackend
from engines.base import Detector
from engines.build import build_detector
from training.data.datasets import DetectionDataset, load_dataset
from training.evaluate import evaluate_detector

ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger("yolo_bench")
MIN_VISIBILITY = 0.5  # video ground truth rows less visible than this are dropped


def video_dataset(video: Path, class_names: list[str], out_dir: Path,
                  max_frames: int) -> DetectionDataset:
    """Frames of ``video`` + its ``<stem>_gt.txt`` (MOT rows) as a dataset."""
    gt = np.loadtxt(video.with_name(f"{video.stem}_gt.txt"), delimiter=",", ndmin=2)
    cap = cv2.VideoCapture(str(video))
    paths, labels = [], []
    index = 0
    while index < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        index += 1
        rows = gt[(gt[:, 0] == index) & (gt[:, 8] >= MIN_VISIBILITY)]
        xyxy = xywh_to_xyxy(rows[:, 2:6])
        path = out_dir / f"{index:06d}.png"
        cv2.imwrite(str(path), frame)
        paths.append(path)
        labels.append((xyxy.astype(np.float32), rows[:, 7].astype(np.int64) - 1))
    cap.release()
    return DetectionDataset(paths, labels, class_names, normalized=False)


def time_frames(detector: Detector, frames: list[np.ndarray]) -> float:
    """Median ms per frame of ``detect`` (prepare + infer + decode), batch 1."""
    detector.detect(frames[:1])
    times = []
    for frame in frames:
        t0 = time.perf_counter()
        detector.detect([frame])
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help=".onnx or .pt files")
    parser.add_argument("--data", type=Path, help="data.yaml to score (val split)")
    parser.add_argument("--video", type=Path, help="generated video with _gt.txt")
    parser.add_argument("--frames", type=int, default=150, help="video frames used")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    parser.add_argument("--hog", action="store_true",
                        help="also time the HOG detector on the --data val frames")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            if model.suffix == ".onnx":
                backend = OnnxRuntimeBackend(model, threads=args.threads)
            else:
                from engines.backends.torch import TorchBackend
                backend = TorchBackend(model)
            scorer = build_detector(backend, family="yolo", conf=0.001, iou=0.6)
            row = {"model": model.name, "input": "x".join(map(str, scorer.imgsz))}
            if args.data:
                val = load_dataset(args.data, "val")
                r = evaluate_detector(scorer, val)
                row.update(val_map=r["map"], val_map50=r["map50"])
                frames = [val[i].image for i in range(min(50, len(val)))]
                default = build_detector(backend, family="yolo")
                row["ms_per_frame"] = time_frames(default, frames)
            if args.video:
                vds = video_dataset(args.video, scorer.class_names, Path(tmp),
                                    args.frames)
                r = evaluate_detector(scorer, vds)
                row.update(video_map=r["map"], video_map50=r["map50"])
                frames = [cv2.imread(str(p)) for p in vds.image_paths[:100]]
                default = build_detector(backend, family="yolo")
                row["ms_per_frame"] = time_frames(default, frames)
            rows.append(row)
        if args.hog and args.data:
            from engines.hog import HogDetector

            hog = HogDetector()
            val = load_dataset(args.data, "val")
            frames = [val[i].image for i in range(min(20, len(val)))]
            rows.append({"model": "hog", "input": "frame",
                         "ms_per_frame": time_frames(hog, frames)})
    keys = ["model", "input", "val_map", "val_map50", "video_map", "video_map50",
            "ms_per_frame"]
    print(" | ".join(f"{k:>12}" for k in keys))
    for row in rows:
        print(" | ".join(f"{row[k]:>12.4f}" if isinstance(row.get(k), float)
                         else f"{row.get(k, '-')!s:>12}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
