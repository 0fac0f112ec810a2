#!/usr/bin/env python3
"""Soak test: run the pipeline for a set time on a looping clip and record, every
interval, resident memory (RSS), FPS and capture-to-sink latency; report memory
growth after warm-up and FPS stability.

    python -m benchmarks.soak --minutes 10 --interval 60 --model yolo
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

import numpy as np

from engines.build import load_detector
from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    """Resident set size now (not the peak), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=str(ROOT / "samples" / "vtest.mp4"))
    p.add_argument("--model", default="yolo")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--interval", type=float, default=60.0, help="seconds per sample")
    p.add_argument("--tracker", default="bytetrack")
    p.add_argument("--json", type=Path, help="write samples and summary here")
    p.add_argument("--no-realtime", action="store_true",
                   help="read as fast as possible (latency then measures queueing)")
    args = p.parse_args()

    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp, load_detector(args.model) as detector:
        config = PipelineConfig(
            tracker=args.tracker, progress=False,
            sources=SourceConfig(loop=True, realtime=not args.no_realtime),
            outputs=OutputConfig(out_dir=Path(tmp), video=True, jsonl=True))
        pipeline = build_pipeline([args.source], detector, config)
        done = threading.Event()

        def sample() -> None:
            last_written, last_t = 0, time.perf_counter()
            while not done.wait(args.interval):
                now = time.perf_counter()
                written = sum(c.written for c in pipeline.metrics.sources.values())
                recent = list(pipeline.metrics.end_to_end)[-200:]
                row = {"t_min": round((now - pipeline.metrics.started) / 60, 2),
                       "rss_mb": round(rss_mb(), 1),
                       "fps": round((written - last_written) / (now - last_t), 2),
                       "latency_p50_ms": round(float(np.median(recent)) * 1000, 1)
                       if recent else 0.0,
                       "dropped": sum(c.dropped
                                      for c in pipeline.metrics.sources.values())}
                samples.append(row)
                print(json.dumps(row), flush=True)
                last_written, last_t = written, now

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        threading.Timer(args.minutes * 60, pipeline.request_stop).start()
        pipeline.run()
        done.set()
    # Warm-up: the first sample holds model/session allocations and queue fill.
    steady = samples[1:] if len(samples) > 2 else samples
    fps = np.array([s["fps"] for s in steady])
    summary = {
        "minutes": args.minutes, "model": args.model, "samples": samples,
        "rss_growth_mb_after_warmup": round(steady[-1]["rss_mb"] - steady[0]["rss_mb"],
                                            1) if steady else None,
        "fps_mean": round(float(fps.mean()), 2) if len(fps) else None,
        "fps_cv_percent": round(float(fps.std() / fps.mean() * 100), 1)
        if len(fps) and fps.mean() else None,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # daemon threads may still be inside native calls
