"""Batch processing of many video files: one pipeline per file, N worker
processes on this machine or tasks on a Ray cluster, one summary at the end.

Resumable: a finished file leaves ``NAME.done.json`` beside its outputs and is
skipped on the next run unless ``force``. Every file gets a row in the summary
(ok / partial / failed with the reason), so nothing is silently lost.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.formats import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from pipeline.runner import PipelineConfig
from pipeline.sources import expand_sources, unique_ids

log = logging.getLogger(__name__)

SUMMARY_FIELDS = ["file", "status", "reason", "read", "processed", "written",
                  "skipped", "dropped", "fps", "seconds"]


@dataclass(frozen=True)
class BatchJob:
    """Everything a worker needs to process one file (picklable for processes/Ray).

    ``detector``: arguments of ``engines.registry.load_detector``. ``threads``: ONNX
    Runtime threads per worker (default: cores / workers).
    """

    detector: dict[str, Any]
    pipeline: PipelineConfig
    force: bool = False


@dataclass
class FileReport:
    file: str
    status: str = "ok"
    reason: str = ""
    read: int = 0
    processed: int = 0
    written: int = 0
    skipped: int = 0
    dropped: int = 0
    fps: float = 0.0
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)


def find_videos(inputs: list[str]) -> list[str]:
    """Expand folders (video files inside, sorted), globs and ``.txt`` lists."""
    files: list[str] = []
    for spec in expand_sources(inputs):
        path = Path(spec)
        if path.is_dir():
            files += sorted(str(p) for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif any(ch in spec for ch in "*?["):
            files += sorted(p for p in glob.glob(spec)
                            if Path(p).suffix.lower() not in IMAGE_SUFFIXES)
        else:
            files.append(spec)
    return files


def process_file(spec: str, source_id: str, job: BatchJob) -> FileReport:
    """Run one pipeline over one file; never raises (failures become the report)."""
    from engines.registry import load_detector
    from pipeline.runner import Pipeline

    report = FileReport(file=spec)
    out_dir = job.pipeline.outputs.out_dir
    marker = out_dir / f"{source_id}.done.json"
    if marker.exists() and not job.force:
        done = json.loads(marker.read_text())
        done.update(status="skipped", reason="already done (use --force)")
        return FileReport(**{k: v for k, v in done.items()
                             if k in FileReport.__dataclass_fields__})
    started = time.perf_counter()
    try:
        with load_detector(**job.detector) as detector:
            from pipeline.sources import make_source

            source = make_source(spec, job.pipeline.sources, source_id)
            metrics = Pipeline([source], detector, job.pipeline).run()
        counts = metrics.sources[source_id]
        report.status, report.reason = counts.status, counts.reason
        report.read, report.processed = counts.read, counts.processed
        report.written, report.skipped = counts.written, counts.skipped
        report.dropped = counts.dropped
        report.fps = round(counts.written / metrics.elapsed, 2) if metrics.elapsed else 0
    except Exception as exc:  # one bad file must not stop the batch
        report.status, report.reason = "failed", str(exc).splitlines()[0][:300]
    report.seconds = round(time.perf_counter() - started, 2)
    if report.status == "ok":
        marker.write_text(json.dumps(asdict(report)))
    return report


def _run_local(items: list[tuple[str, str]], job: BatchJob, workers: int
               ) -> Iterator[FileReport]:
    if workers <= 1:
        for spec, sid in items:
            yield process_file(spec, sid, job)
        return
    # spawn: forking a process that already runs threads (ORT, OpenCV) is unsafe
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        pending = {pool.submit(process_file, spec, sid, job): spec
                   for spec, sid in items}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                spec = pending.pop(future)
                try:
                    yield future.result()
                except Exception as exc:  # a worker that died (e.g. segfault)
                    yield FileReport(file=spec, status="failed",
                                     reason=f"worker crashed: {exc}")


def _run_ray(items: list[tuple[str, str]], job: BatchJob, address: str,
             cpus_per_task: float, gpus_per_task: float) -> Iterator[FileReport]:
    """One Ray task per file with declared CPU/GPU resources; Ray schedules them."""
    import ray

    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address,
                 include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task,
                        max_retries=0)(process_file)
    pending = {remote.remote(spec, sid, job): spec for spec, sid in items}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            spec = pending.pop(ref)
            try:
                yield ray.get(ref)
            except Exception as exc:  # RayTaskError, worker died
                yield FileReport(file=spec, status="failed",
                                 reason=f"ray task failed: {str(exc).splitlines()[0]}")


def run_batch(inputs: list[str], job: BatchJob, workers: int = 1,
              ray_address: str | None = None, cpus_per_task: float = 1.0,
              gpus_per_task: float = 0.0, progress: bool = True,
              on_report: Callable[[FileReport], None] | None = None
              ) -> list[FileReport]:
    """Process every file; write ``summary.csv`` and ``summary.json`` in the output
    folder; return the reports in input order."""
    files = find_videos(inputs)
    if not files:
        raise ValueError(f"no video files found in {inputs}")
    out_dir = job.pipeline.outputs.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = unique_ids(files)
    # Workers write their own outputs; per-frame progress bars would interleave.
    job = replace(job, pipeline=replace(job.pipeline, progress=False))
    items = list(zip(files, ids, strict=True))
    reports: dict[str, FileReport] = {}
    stream = (_run_ray(items, job, ray_address, cpus_per_task, gpus_per_task)
              if ray_address else _run_local(items, job, workers))
    with tqdm(total=len(items), unit="file", desc="files", disable=not progress) as bar:
        for report in stream:
            reports[report.file] = report
            bar.update(1)
            bar.set_postfix_str(f"{Path(report.file).name}: {report.status}")
            if on_report:
                on_report(report)
    ordered = [reports[f] for f in files]
    write_summary(ordered, out_dir)
    return ordered


def write_summary(reports: list[FileReport], out_dir: Path) -> None:
    with open(out_dir / "summary.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, SUMMARY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in reports:
            writer.writerow(asdict(r))
    (out_dir / "summary.json").write_text(
        json.dumps([asdict(r) for r in reports], indent=2))


def summary_table(reports: list[FileReport]) -> str:
    lines = [f"{'file':<36}{'status':<9}{'read':>7}{'proc':>7}{'written':>8}"
             f"{'FPS':>8}  reason"]
    for r in reports:
        lines.append(f"{Path(r.file).name[:35]:<36}{r.status:<9}{r.read:>7}"
                     f"{r.processed:>7}{r.written:>8}{r.fps:>8.1f}  {r.reason}")
    by_status: dict[str, int] = {}
    for r in reports:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(by_status.items())))
    return "\n".join(lines)


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))
