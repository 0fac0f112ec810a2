#!/usr/bin/env python3
"""Live-mode latency under load: paced sources against detectors of a fixed call
time, one run per cell of (sources × frame rate × call time).

Each source is a camera-like live source: frames are produced on its clock
(``--source synthetic``: generated images; ``--source file``: a generated clip
read with ``realtime``, as ``run_stream.py --realtime`` does), so a detector
slower than the frame period forces drops. The detector sleeps for the call time
per ``infer`` call whatever the batch size, as one batched GPU call would, and
releases the GIL as real inference does.

Prints, per source: capture-to-sink latency p50/p95 as a multiple of the median
inference *call* time (measured by the pipeline's metrics; a batched call counts
once), frames dropped, and frames written per second.

    python -m benchmarks.live_latency                       # the full grid
    python -m benchmarks.live_latency --sources 1 --fps 10 --call-ms 300 --seconds 8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.types import Detections, Frame
from engines.base import Detector, Prepared
from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.sinks import OutputConfig
from pipeline.sources import Source, SourceConfig, VideoSource


class FixedCallDetector(Detector):
    """Takes ``call_s`` per ``infer`` call for any batch up to ``max_batch``;
    one box per frame, in the middle."""

    class_names = ["thing"]

    def __init__(self, call_s: float, max_batch: int = 4) -> None:
        if call_s < 0 or max_batch < 1:
            raise ValueError(f"need call_s >= 0 and max_batch >= 1, got "
                             f"{call_s}, {max_batch}")
        self.call_s = call_s
        self._max_batch = max_batch

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def prepare(self, image: np.ndarray) -> Prepared:
        return Prepared.whole(image)

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        time.sleep(self.call_s)
        out = []
        for prepared in batch:
            h, w = prepared.input.shape[:2]
            box = np.array([[w / 4, h / 4, w / 2, h / 2]], np.float32)
            out.append(Detections(box, np.ones(1, np.float32), np.zeros(1, np.int32)))
        return out


class PacedSource(Source):
    """A synthetic camera: ``fps`` frames per second for ``seconds``, starting
    ``phase_s`` late (cameras are not synchronised); a frame is stamped when its
    time comes, whether or not the pipeline is ready for it."""

    live = True

    def __init__(self, source_id: str, fps: float, seconds: float,
                 size: tuple[int, int], phase_s: float = 0.0) -> None:
        super().__init__(f"paced:{source_id}", SourceConfig(), source_id)
        self.fps, self.size = fps, size
        self.total = max(1, round(fps * seconds))
        self.phase_s = phase_s
        self.image = np.full((size[1], size[0], 3), 60, np.uint8)

    def frames(self) -> Iterator[Frame]:
        start = time.perf_counter() + self.phase_s
        for index in range(self.total):
            delay = start + index / self.fps - time.perf_counter()
            if (delay > 0 and self._closed.wait(delay)) or self._closed.is_set():
                return
            self.stats.read += 1
            yield Frame(self.source_id, index, index / self.fps, self.image,
                        time.perf_counter())


def write_clip(path: Path, fps: float, seconds: float, size: tuple[int, int]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: cannot write a test clip")
    for i in range(max(1, round(fps * seconds))):
        image = np.full((size[1], size[0], 3), 60, np.uint8)
        x = (i * 4) % (size[0] - 20)
        image[20:40, x:x + 20] = (0, 200, 255)
        writer.write(image)
    writer.release()
    return path


def run_cell(n_sources: int, fps: float, call_ms: float, args: argparse.Namespace,
             tmp: Path) -> dict[str, Any]:
    sources: list[Source]
    if args.source == "file":
        clip = write_clip(tmp / f"clip_{fps:g}.mp4", fps, args.seconds, args.size)
        cfg = SourceConfig(realtime=True)
        sources = [VideoSource(str(clip), cfg, f"s{i}") for i in range(n_sources)]
    else:
        sources = [PacedSource(f"s{i}", fps, args.seconds, args.size,
                               phase_s=i / (n_sources * fps))
                   for i in range(n_sources)]
    detector = FixedCallDetector(call_ms / 1000, max_batch=args.max_batch or args.batch)
    config = PipelineConfig(batch=args.batch, progress=False,
                            outputs=OutputConfig(out_dir=tmp / "out", video=False,
                                                 jsonl=False))
    metrics = build_pipeline(sources, detector, config).run()
    summary = metrics.summary()
    call_p50 = summary["stages_ms"]["infer_call"]["p50"]
    rows = []
    for sid, counts in summary["sources"].items():
        latency = counts["latency_ms"]
        rows.append({
            "source": sid,
            "read": counts["read"],
            "dropped": counts["dropped"],
            "written": counts["written"],
            "fps": round(counts["written"] / summary["elapsed_s"], 2),
            "latency_p50_ms": latency["p50"],
            "latency_p95_ms": latency["p95"],
            "p50_x_call": round(latency["p50"] / call_p50, 2) if call_p50 else None,
            "p95_x_call": round(latency["p95"] / call_p50, 2) if call_p50 else None,
        })
    return {"sources": n_sources, "fps": fps, "call_ms": call_ms,
            "call_p50_ms": call_p50, "mean_batch": summary["mean_batch"],
            "per_source": rows}


def format_rows(cells: list[dict[str, Any]]) -> str:
    header = (f"{'src':>3}{'fps':>5}{'call':>6}{'call p50':>10}{'batch':>6}  "
              f"{'source':<7}{'p50 ms':>8}{'p95 ms':>8}{'p50×':>7}{'p95×':>7}"
              f"{'drop':>10}{'FPS':>7}")
    lines = [header]
    for cell in cells:
        for r in cell["per_source"]:
            drop = f"{r['dropped']}/{r['read']}"
            lines.append(
                f"{cell['sources']:>3}{cell['fps']:>5g}{cell['call_ms']:>6g}"
                f"{cell['call_p50_ms']:>10.1f}{cell['mean_batch']:>6.2f}  "
                f"{r['source']:<7}{r['latency_p50_ms']:>8.0f}{r['latency_p95_ms']:>8.0f}"
                f"{_x(r['p50_x_call']):>7}{_x(r['p95_x_call']):>7}{drop:>10}"
                f"{r['fps']:>7.2f}")
    return "\n".join(lines)


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def parse_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 10,25,30: {text!r}")
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers: {text!r}")
    return values


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH like 320x240: {text!r}")
    return w, h


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", type=parse_list, default=[1, 4],
                   help="numbers of live sources (default 1,4)")
    p.add_argument("--fps", type=parse_list, default=[10, 25, 30],
                   help="source frame rates (default 10,25,30)")
    p.add_argument("--call-ms", type=parse_list, default=[20, 100, 300],
                   help="detector time per inference call (default 20,100,300)")
    p.add_argument("--seconds", type=float, default=4.0,
                   help="length of each source per cell (default 4)")
    p.add_argument("--batch", type=int, default=4, help="pipeline batch (default 4)")
    p.add_argument("--max-batch", type=int, default=0,
                   help="most frames the detector takes per call (default: --batch; "
                        "1 = a detector that cannot batch)")
    p.add_argument("--size", type=parse_size, default=(320, 240),
                   help="frame size WxH (default 320x240)")
    p.add_argument("--source", choices=["synthetic", "file"], default="synthetic",
                   help="synthetic paced frames, or a generated clip read with "
                        "realtime pacing (default synthetic)")
    p.add_argument("--json", type=Path, help="write the cells as JSON")
    args = p.parse_args()
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sources:
            for fps in args.fps:
                for call_ms in args.call_ms:
                    print(f"{int(n)} source(s) at {fps:g} fps, {call_ms:g} ms "
                          "per call ...", file=sys.stderr, flush=True)
                    cells.append(run_cell(int(n), fps, call_ms, args, Path(tmp)))
    print(f"{args.source} sources, {args.seconds:g} s each, {args.size[0]}x"
          f"{args.size[1]}, pipeline batch {args.batch}, detector max batch "
          f"{args.max_batch or args.batch}; latency = capture to sink; "
          "p50×/p95× = latency / median inference call")
    print(format_rows(cells))
    if args.json:
        args.json.write_text(json.dumps(cells, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
