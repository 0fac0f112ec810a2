"""Throughput and latency of a TensorRT engine on random inputs, per batch size.

    python -m benchmarks.trt_bench models/yolo_demo_fp16.engine --batches 1 4 8
    python -m benchmarks.trt_bench X.engine --onnx X.onnx --ort-device cuda

Times ``backend.infer`` (host->device copy, execution, device->host copy), the
cost the pipeline's inference stage pays; with ``--onnx`` the same batches run
through ONNX Runtime for comparison. Needs an NVIDIA GPU and TensorRT.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from engines.base import Backend

ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger("trt_bench")


def time_backend(backend: Backend, shape: tuple[int, ...], runs: int,
                 warmup: int = 10) -> dict[str, float]:
    """Latency percentiles (ms) and images/s of ``runs`` calls on one random batch."""
    batch = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(warmup):
        backend.infer(batch)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        backend.infer(batch)
        times[i] = time.perf_counter() - start
    return {"p50_ms": float(np.percentile(times, 50) * 1e3),
            "p95_ms": float(np.percentile(times, 95) * 1e3),
            "images_per_s": shape[0] * runs / float(times.sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("engine", type=Path)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--onnx", type=Path, default=None,
                        help="also time this ONNX with ONNX Runtime")
    parser.add_argument("--ort-device", default="cuda", help="cpu, cuda or tensorrt")
    args = parser.parse_args(argv)
    if args.runs < 1 or any(b < 1 for b in args.batches):
        parser.error("--runs and --batches must be >= 1")
    logging.basicConfig(level=logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")

    from engines.backends.tensorrt import TensorRTBackend

    rows = []
    with TensorRTBackend(args.engine, device=args.device) as trt_backend:
        dims = tuple(int(d) for d in trt_backend.input_shape[1:])
        precision = (trt_backend.meta.precision or "?") if trt_backend.meta else "?"
        for b in args.batches:
            if not trt_backend.min_batch <= b <= trt_backend.max_batch:
                log.warning("batch %d outside the engine profile [%d, %d]; skipped", b,
                            trt_backend.min_batch, trt_backend.max_batch)
                continue
            rows.append((f"tensorrt {precision}", b,
                         time_backend(trt_backend, (b, *dims), args.runs)))
    if args.onnx is not None:
        from engines.backends.onnxruntime import OnnxRuntimeBackend

        with OnnxRuntimeBackend(args.onnx, device=args.ort_device) as ort_backend:
            for b in args.batches:
                rows.append((f"onnxruntime {ort_backend.providers[0]}", b,
                             time_backend(ort_backend, (b, *dims), args.runs)))
    print(f"{'backend':<40} {'batch':>5} {'p50 ms':>8} {'p95 ms':>8} {'img/s':>9}")
    for name, b, r in rows:
        print(f"{name:<40} {b:>5} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} "
              f"{r['images_per_s']:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
