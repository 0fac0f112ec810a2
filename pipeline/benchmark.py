"""`streamdet benchmark`: on one clip and one model, in one process, side by side:

1. decode-only ceiling: frames read and decoded, nothing else;
2. inference-only ceiling: frames already decoded and prepared in memory, the
   same batch size and thread settings, only ``detector.infer``;
3. a plain single-threaded loop: read → prepare → infer → track → draw → write;
4. the pipeline, with the same outputs as the loop.

Warm-up (a few inferences before each timed phase) is excluded from every figure.

CPU-seconds per frame per stage come two ways. Isolated: each stage runs alone
over the frames held in memory (decode over the whole clip) and the process's
CPU time is read around it, so the helper threads of FFmpeg, ONNX Runtime or
OpenVINO count too. In the pipeline: ``time.thread_time()`` of each stage thread,
which counts only that Python thread's own work (not a library's thread pool).

Two ceilings frame the pipeline's FPS: the lower of decode-only and
inference-only (what overlap could reach if the other stages cost nothing), and
the CPU-work ceiling, the cores divided by the isolated CPU per frame of the
stages this run needs (what it could reach with every core busy and no
overhead): on a CPU-bound machine the second is the one a pipeline can meet.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.types import Frame, Result
from engines.base import Detector
from engines.build import runtime_info
from pipeline.build import LaneBuilder, build_pipeline
from pipeline.config import PipelineConfig
from pipeline.lanes import run_plain_loop
from pipeline.metrics import Metrics
from pipeline.overlay import Overlay
from pipeline.sources import make_source

WARMUP_RUNS = 3
MAX_FRAMES_IN_MEMORY = 200  # the inference ceiling needs decoded frames in RAM


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Phase:
    """Wall time, CPU-seconds and CPU utilisation (% of all cores) of a block."""

    def __enter__(self) -> _Phase:
        self.wall0, self.cpu0 = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.wall0
        self.cpu = _cpu_seconds() - self.cpu0
        self.cpu_percent = (100.0 * self.cpu / max(self.seconds, 1e-9)
                            / (os.cpu_count() or 1))

    def row(self, frames: int) -> dict[str, float]:
        return {"frames": frames, "seconds": round(self.seconds, 3),
                "fps": round(frames / self.seconds, 2) if self.seconds else 0.0,
                "cpu_percent": round(self.cpu_percent, 1),
                "cpu_s_per_frame": round(self.cpu / frames, 5) if frames else 0.0}


def stage_cpu(detector: Detector, frames: list[Any], names: list[str],
              config: PipelineConfig, fps: float, out_dir: Path
              ) -> dict[str, float]:
    """Process CPU-seconds per frame of preprocess, infer, draw and encode, each
    run alone over ``frames`` (in memory)."""
    costs: dict[str, float] = {}
    with _Phase() as p:
        prepared = [detector.prepare(image) for image in frames]
    costs["preprocess"] = p.cpu / len(frames)
    with _Phase() as p:
        dets = [detector.infer([x])[0] for x in prepared]
    costs["infer"] = p.cpu / len(frames)
    overlay = Overlay(names, config.overlay)
    with _Phase() as p:
        drawn = [overlay.draw(image, d) for image, d in zip(frames, dets, strict=True)]
    costs["draw"] = p.cpu / len(frames)
    h, w = frames[0].shape[:2]
    from pipeline.video_writer import AvVideoSink  # the pipeline's own MP4 writer

    sink = AvVideoSink(out_dir / "encode.mp4", fps, (w, h), config.outputs.encoder)
    results = [Result(Frame("encode", i, 0.0, image), d, image=out)
               for i, (image, d, out) in enumerate(zip(frames, dets, drawn,
                                                       strict=True))]
    with _Phase() as p:
        for result in results:
            sink.write(result)
        sink.close()
    costs["encode"] = p.cpu / len(frames)
    return {k: round(v, 5) for k, v in costs.items()}


def _warm(detector: Detector, image: Any) -> None:
    for _ in range(WARMUP_RUNS):
        detector.detect([image])


def run_benchmark(spec: str, detector: Detector, config: PipelineConfig
                  ) -> dict[str, Any]:
    """All four measurements on ``spec``; returns a JSON-able report."""
    phases: dict[str, dict[str, float]] = {}

    with make_source(spec, config.sources) as source, _Phase() as p:
        frames = []
        count = 0
        for frame in source.frames():
            count += 1
            if len(frames) < MAX_FRAMES_IN_MEMORY:
                frames.append(frame.image)
    phases["decode_only"] = p.row(count)
    if not frames:
        raise ValueError(f"{spec}: no frames to benchmark")
    decode_cpu = p.cpu / count

    _warm(detector, frames[0])
    prepared = [detector.prepare(image) for image in frames]
    step = max(1, min(config.batch, detector.max_batch))
    batches = [prepared[i:i + step] for i in range(0, len(prepared), step)]
    # as many calls at once as the pipeline runs on files
    with _Phase() as p, ThreadPoolExecutor(detector.calls_in_flight) as calls:
        list(calls.map(detector.infer, batches))
    phases["inference_only"] = p.row(len(prepared))

    with tempfile.TemporaryDirectory(prefix="streamdet-bench-") as tmp:
        stages_cpu = {"decode": round(decode_cpu, 5),
                      **stage_cpu(detector, frames, list(detector.class_names),
                                  config, source.fps or 25.0, Path(tmp))}
        loop_config = replace(config, outputs=replace(
            config.outputs, out_dir=Path(tmp) / "loop", show=False))
        source = make_source(spec, config.sources)
        source.open()
        lane = LaneBuilder(detector, loop_config, Metrics())(source, lambda: None)
        _warm(detector, frames[0])
        with _Phase() as p:
            loop_frames, _ = run_plain_loop(lane, detector)
        phases["plain_loop"] = p.row(loop_frames)

        pipe_config = replace(config, progress=False, outputs=replace(
            config.outputs, out_dir=Path(tmp) / "pipeline", show=False))
        _warm(detector, frames[0])
        pipeline = build_pipeline([spec], detector, pipe_config)
        with _Phase() as p:
            metrics = pipeline.run()
        written = sum(c.written for c in metrics.sources.values())
        phases["pipeline"] = p.row(written)
        thread_cpu: dict[str, float] = {}
        for thread in pipeline._threads:
            thread_cpu[thread.stage] = thread_cpu.get(thread.stage, 0.0) + (
                thread.cpu_seconds)
        threads_cpu = {k: round(v / max(written, 1), 5) for k, v in thread_cpu.items()}
    summary = metrics.summary()
    pipe_fps = phases["pipeline"]["fps"]
    ceiling = min(phases["decode_only"]["fps"], phases["inference_only"]["fps"])
    # The stages the pipeline ran (draw and encode only when it wrote video),
    # each alone, summed: all cores busy with that work give this FPS.
    outputs = pipe_config.outputs
    used = [k for k in stages_cpu if (k != "draw" or outputs.needs_overlay)
            and (k != "encode" or outputs.video)]
    work_s = sum(stages_cpu[k] for k in used)
    work_ceiling = (os.cpu_count() or 1) / work_s if work_s else 0.0
    return {
        "source": source.display_name,
        "model": type(detector).__name__,
        "backend": runtime_info(detector),
        "batch": step,
        "cpu_count": os.cpu_count(),
        "warmup": f"{WARMUP_RUNS} inferences before each timed phase, excluded",
        "phases": phases,
        "pipeline_stages_ms": summary["stages_ms"],
        "stage_cpu_s_per_frame": stages_cpu,
        "pipeline_thread_cpu_s_per_frame": threads_cpu,
        "pipeline_end_to_end_ms": summary["end_to_end_ms"],
        "ratio_pipeline_vs_loop": round(pipe_fps / phases["plain_loop"]["fps"], 3)
        if phases["plain_loop"]["fps"] else None,
        "ratio_pipeline_vs_min_ceiling": round(pipe_fps / ceiling, 3)
        if ceiling else None,
        "cpu_work_ceiling_fps": round(work_ceiling, 2),
        "ratio_pipeline_vs_cpu_work_ceiling": round(pipe_fps / work_ceiling, 3)
        if work_ceiling else None,
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [f"benchmark: {report['model']} ({report['backend'] or 'no backend'}) "
             f"on {report['source']} "
             f"(batch {report['batch']}, {report['cpu_count']} cores; "
             "warm-up excluded)",
             f"{'phase':<16}{'frames':>8}{'seconds':>10}{'FPS':>9}{'CPU %':>8}"
             f"{'CPU ms/frame':>14}"]
    for name, row in report["phases"].items():
        lines.append(f"{name:<16}{row['frames']:>8}{row['seconds']:>10.2f}"
                     f"{row['fps']:>9.2f}{row['cpu_percent']:>8.1f}"
                     f"{1000 * row['cpu_s_per_frame']:>14.1f}")
    lines.append("pipeline stage latency (ms): " + ", ".join(
        f"{k} p50 {v['p50']:.1f} / p95 {v['p95']:.1f}"
        for k, v in report["pipeline_stages_ms"].items()))
    lines.append("CPU-seconds per frame, each stage alone: " + ", ".join(
        f"{k} {1000 * v:.1f} ms" for k, v in report["stage_cpu_s_per_frame"].items())
        + f" (sum {1000 * sum(report['stage_cpu_s_per_frame'].values()):.1f} ms)")
    lines.append("CPU-seconds per frame, pipeline stage threads: " + ", ".join(
        f"{k} {1000 * v:.1f} ms"
        for k, v in report["pipeline_thread_cpu_s_per_frame"].items())
        + f"; whole process "
          f"{1000 * report['phases']['pipeline']['cpu_s_per_frame']:.1f} ms")
    lines.append(f"pipeline / plain loop: {report['ratio_pipeline_vs_loop']}x   "
                 f"pipeline / min(decode, inference) ceiling: "
                 f"{report['ratio_pipeline_vs_min_ceiling']}x   "
                 f"pipeline / CPU-work ceiling ({report['cpu_work_ceiling_fps']:.0f} "
                 f"FPS: {report['cpu_count']} cores over the stages' CPU per frame): "
                 f"{report['ratio_pipeline_vs_cpu_work_ceiling']}x")
    return "\n".join(lines)
