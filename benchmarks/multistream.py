#!/usr/bin/env python3
"""Several sources through one batched pipeline vs the same number of unbatched
pipelines running side by side, in one process and one run.

    python -m benchmarks.multistream --model yolo --streams 4 --frames 150
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from engines.build import load_detector
from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig

ROOT = Path(__file__).resolve().parent.parent


def config(out: Path, batch: int, frames: int, video: bool) -> PipelineConfig:
    return PipelineConfig(batch=batch, max_wait_ms=10.0, progress=False,
                          sources=SourceConfig(max_frames=frames),
                          outputs=OutputConfig(out_dir=out, video=video, jsonl=True))


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=str(ROOT / "samples" / "vtest.mp4"))
    p.add_argument("--model", default="yolo")
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--frames", type=int, default=150, help="frames per stream")
    p.add_argument("--threads", type=int, default=None, help="ORT threads per session")
    p.add_argument("--no-video", action="store_true", help="skip MP4 encoding")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    specs = [args.source] * args.streams
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up of both variants' sessions happens outside the timed region.
        detector = load_detector(args.model, threads=args.threads)
        detector.detect([__import__("numpy").zeros((576, 768, 3), "uint8")] * 2)
        started = time.perf_counter()
        batched = config(Path(tmp) / "batched", args.streams, args.frames,
                         not args.no_video)
        metrics = build_pipeline(specs, detector, batched).run()
        seconds = time.perf_counter() - started
        written = sum(c.written for c in metrics.sources.values())
        results["batched"] = {"frames": written, "seconds": round(seconds, 2),
                              "fps": round(written / seconds, 2),
                              "mean_batch": metrics.summary()["mean_batch"]}
        detector.close()

        detectors = [load_detector(args.model, threads=args.threads)
                     for _ in range(args.streams)]
        for d in detectors:
            d.detect([__import__("numpy").zeros((576, 768, 3), "uint8")])
        counts: list[int] = [0] * args.streams

        def one(i: int) -> None:
            m = build_pipeline([specs[i]], detectors[i], config(
                Path(tmp) / f"single{i}", 1, args.frames, not args.no_video)).run()
            counts[i] = sum(c.written for c in m.sources.values())

        threads = [threading.Thread(target=one, args=(i,)) for i in range(args.streams)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        results["separate"] = {"frames": sum(counts), "seconds": round(seconds, 2),
                               "fps": round(sum(counts) / seconds, 2)}
    results["ratio_batched_vs_separate"] = round(
        results["batched"]["fps"] / results["separate"]["fps"], 3)
    results["cpu_count"] = os.cpu_count()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
