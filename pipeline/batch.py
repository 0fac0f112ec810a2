"""Batch processing of many video files: one pipeline per file, N worker
processes on this machine or tasks on a Ray cluster, one summary at the end.

Resumable: a finished file leaves ``NAME.done.json`` beside its outputs, naming
the settings that made them (model by content hash, thresholds, tracker, ...);
the next run skips it only when its settings are the same, unless ``force``.
Every file gets a row in the summary (ok / partial / failed with the reason,
and how many attempts it took), so nothing is silently lost.

Outputs are written into a private folder per attempt (``.partial/RUN/NAME/ID``
under the output folder) and moved into place when the file is finished, so an
attempt that dies (a worker or a Ray node lost mid-file) never leaves a
half-written MP4 or a JSON Lines log that a retry appends to. Live and
single-file runs (``Pipeline``) write in place: a kill leaves a playable file.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.errors import InputError
from core.formats import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from pipeline.config import PipelineConfig
from pipeline.sources import expand_sources, unique_ids

log = logging.getLogger(__name__)

SUMMARY_FIELDS = ["file", "status", "reason", "read", "processed", "written",
                  "skipped", "dropped", "fps", "seconds", "attempts"]
PARTIAL_DIR = ".partial"  # per-attempt output folders, under the output folder
# Settings that do not change what is written (a file done on another device or
# with other thread counts is still done).
NEUTRAL_DETECTOR_OPTIONS = ("model", "device", "threads")
# Model files left out of the code shipped to a cluster unless they are in use.
MODEL_SUFFIXES = {".onnx", ".engine", ".plan", ".pt", ".pth"}
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BatchJob:
    """Everything a worker needs to process one file (picklable for processes/Ray).

    ``detector``: arguments of ``engines.build.load_detector``. ``threads``: ONNX
    Runtime threads per worker (default: cores / workers). ``settings``: what
    decides the outputs (``output_settings``), computed once by ``run_batch``.
    ``run_id`` names this run's folder of unfinished attempts.
    """

    detector: dict[str, Any]
    pipeline: PipelineConfig
    force: bool = False
    settings: dict[str, Any] | None = None
    run_id: str = "run"


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
    attempts: int = 1  # > 1: earlier attempts died (node or worker lost)
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


def model_fingerprint(model: str) -> dict[str, Any]:
    """The model by content: a shipped name's file or a model file, with its
    metadata sidecar if any (not an unrelated ``.json``). Built-in models (``hog``)
    are known by name; a missing file gets no hash (loading it says why)."""
    from core.meta import file_sha256, read_sidecar_data, sidecar_path
    from engines.build import SHIPPED, shipped_path

    path = shipped_path(model) if model in SHIPPED else Path(model)
    fingerprint: dict[str, Any] = {"model": model if path is None else path.name}
    if path is not None and path.is_file():
        fingerprint["sha256"] = file_sha256(path)
        if sidecar_path(path) != path and read_sidecar_data(path, warn=False):
            fingerprint["sidecar_sha256"] = file_sha256(sidecar_path(path))
    return fingerprint


def output_settings(job: BatchJob) -> dict[str, Any]:
    """Everything that changes a file's outputs, as plain JSON values: the model
    (by content), its options (thresholds, classes, family, backend), the tracker
    and how often the detector runs, which frames are read, which outputs are
    written and how they are drawn."""
    cfg = job.pipeline
    options = {k: v for k, v in job.detector.items()
               if k not in NEUTRAL_DETECTOR_OPTIONS and v is not None}
    settings = {
        "model": model_fingerprint(str(job.detector["model"])),
        "detector_options": options,
        "tracker": cfg.tracker,
        "tracker_params": cfg.tracker_params,
        "detect_every": cfg.detect_every,
        "frames": {"stride": cfg.sources.stride,
                   "max_frames": cfg.sources.max_frames,
                   "realtime": cfg.sources.realtime},
        "outputs": {"video": cfg.outputs.video, "jsonl": cfg.outputs.jsonl,
                    "mot": cfg.outputs.mot, "txt": cfg.outputs.txt,
                    "txt_conf": cfg.outputs.txt_conf,
                    "encoder": {k: v for k, v in asdict(cfg.outputs.encoder).items()
                                if k != "threads"}},
        "overlay": asdict(cfg.overlay),
    }
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def _read_marker(marker: Path) -> dict[str, Any] | None:
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) else None


def _publish(attempt_dir: Path, out_dir: Path) -> dict[str, str]:
    """Move a finished attempt's outputs into ``out_dir`` (each one a rename on
    the same file system, replacing what an earlier run left)."""
    outputs: dict[str, str] = {}
    for item in sorted(attempt_dir.iterdir()):
        target = out_dir / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(item, target)
        outputs[item.name] = str(target)
    return outputs


def process_file(spec: str, source_id: str, job: BatchJob) -> FileReport:
    """Run one pipeline over one file; never raises (failures become the report).

    Outputs go to a folder of this attempt and are moved into the output folder
    when the file is finished; the ``.done.json`` marker is written last.
    """
    from engines.build import load_detector
    from pipeline.build import build_pipeline
    from pipeline.sources import make_source

    report = FileReport(file=spec)
    out_dir = job.pipeline.outputs.out_dir
    marker = out_dir / f"{source_id}.done.json"
    settings = job.settings if job.settings is not None else output_settings(job)
    done = None if job.force else _read_marker(marker)
    if done is not None:
        if done.get("settings") == settings:
            done.update(status="skipped", reason="already done (use --force)")
            return FileReport(**{k: v for k, v in done.items()
                                 if k in FileReport.__dataclass_fields__})
        log.info("%s: done before with other settings; processing again", spec)
    started = time.perf_counter()
    # Attempts of this run that died before finishing left their folders here.
    attempts_dir = out_dir / PARTIAL_DIR / job.run_id / source_id
    attempts_dir.mkdir(parents=True, exist_ok=True)
    earlier = [p for p in attempts_dir.iterdir() if p.is_dir()]
    report.attempts = len(earlier) + 1
    attempt_dir = attempts_dir / uuid.uuid4().hex[:12]
    attempt_dir.mkdir()
    config = replace(job.pipeline,
                     outputs=replace(job.pipeline.outputs, out_dir=attempt_dir))
    try:
        with load_detector(**job.detector) as detector:
            source = make_source(spec, config.sources, source_id)
            metrics = build_pipeline([source], detector, config).run()
        counts = metrics.sources[source_id]
        report.status, report.reason = counts.status, counts.reason
        report.read, report.processed = counts.read, counts.processed
        report.written, report.skipped = counts.written, counts.skipped
        report.dropped = counts.dropped
        if metrics.elapsed:
            report.fps = round(counts.written / metrics.elapsed, 2)
        if report.status in ("ok", "partial"):
            report.outputs = _publish(attempt_dir, out_dir)
    except Exception as exc:  # one bad file must not stop the batch
        report.status, report.reason = "failed", str(exc).splitlines()[0][:300]
    finally:
        shutil.rmtree(attempt_dir, ignore_errors=True)
    for stale in earlier:
        shutil.rmtree(stale, ignore_errors=True)
    report.seconds = round(time.perf_counter() - started, 2)
    if report.status == "ok":
        partial_marker = attempts_dir / f"{attempt_dir.name}.done.json"
        partial_marker.write_text(json.dumps({**asdict(report), "settings": settings}))
        os.replace(partial_marker, marker)
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


def ray_runtime_env(model: str) -> dict[str, Any]:
    """Ship the code to the cluster (Ray's ``working_dir``): the packages a worker
    imports and the model in use, not the training code, tests, samples, the
    virtual environment or the other shipped models. A model file outside the
    repository is read from its path on each node."""
    from engines.build import MODELS_DIR, SHIPPED, shipped_path

    used = Path(model).resolve()
    if model in SHIPPED:
        used = shipped_path(model) or MODELS_DIR  # weight-free: no model file
    # A model's companions (an RoI head, a sidecar) share its file stem.
    excludes = [f"/models/{p.name}" for p in MODELS_DIR.iterdir()
                if p.suffix.lower() in MODEL_SUFFIXES
                and not p.name.startswith(used.stem)]
    excludes += [".git", ".venv", "venv", "__pycache__", "*.pyc", "/tests",
                 "/training", "/samples", "/docs", "/benchmarks", "/output", "/out",
                 "/runs", "*.mp4", "*.avi", "*.mkv"]
    return {"working_dir": str(ROOT), "excludes": excludes}


def _run_ray(items: list[tuple[str, str]], job: BatchJob, address: str,
             cpus_per_task: float, gpus_per_task: float, retries: int
             ) -> Iterator[FileReport]:
    """One Ray task per file with declared CPU/GPU resources; Ray schedules them.

    A task whose worker or node dies is run again (``retries`` times); a file
    that fails is not, since ``process_file`` turns its errors into the report.
    On a cluster the code travels in the job's ``working_dir``; input and output
    paths are made absolute, since workers run in that folder.
    """
    import ray

    started_here = not ray.is_initialized()
    ship = started_here and address != "local"
    model = str(job.detector["model"])
    if started_here:
        ray.init(address=None if address == "local" else address,
                 runtime_env=ray_runtime_env(model) if ship else None,
                 include_dashboard=False, log_to_driver=False)
    if Path(model).is_file():  # shipped inside working_dir, or found by its path
        path = Path(model).resolve()
        model = str(path.relative_to(ROOT) if ship and ROOT in path.parents else path)
    outputs = job.pipeline.outputs
    job = replace(job, detector={**job.detector, "model": model}, pipeline=replace(
        job.pipeline, outputs=replace(outputs, out_dir=outputs.out_dir.resolve())))
    remote = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task,
                        max_retries=retries, retry_exceptions=False)(process_file)
    pending = {remote.remote(_absolute(spec), sid, job): spec for spec, sid in items}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                spec = pending.pop(ref)
                try:
                    report = ray.get(ref)
                except Exception as exc:  # RayTaskError, retries used up
                    reason = str(exc).strip().splitlines()[0]
                    report = FileReport(file=spec, status="failed",
                                        reason=f"ray task failed: {reason}",
                                        attempts=retries + 1)
                report.file = spec
                yield report
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def _absolute(spec: str) -> str:
    from pipeline.sources import is_url

    return spec if is_url(spec) else str(Path(spec).resolve())


def run_batch(inputs: list[str], job: BatchJob, workers: int = 1,
              ray_address: str | None = None, cpus_per_task: float = 1.0,
              gpus_per_task: float = 0.0, progress: bool = True,
              on_report: Callable[[FileReport], None] | None = None,
              retries: int = 3) -> list[FileReport]:
    """Process every file; write ``summary.csv`` and ``summary.json`` in the output
    folder; return the reports in input order. ``retries``: how often Ray runs a
    task again whose worker or node died."""
    if retries < 0:
        raise InputError(f"retries must be >= 0, got {retries}")
    files = find_videos(inputs)
    if not files:
        raise InputError(f"no video files found in {inputs}")
    out_dir = job.pipeline.outputs.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = unique_ids(files)
    # Workers write their own outputs; per-frame progress bars would interleave.
    job = replace(job, pipeline=replace(job.pipeline, progress=False),
                  settings=output_settings(job), run_id=uuid.uuid4().hex[:12])
    items = list(zip(files, ids, strict=True))
    reports: dict[str, FileReport] = {}
    stream = (_run_ray(items, job, ray_address, cpus_per_task, gpus_per_task,
                       retries)
              if ray_address else _run_local(items, job, workers))
    try:
        with tqdm(total=len(items), unit="file", desc="files",
                  disable=not progress) as bar:
            for report in stream:
                reports[report.file] = report
                bar.update(1)
                bar.set_postfix_str(f"{Path(report.file).name}: {report.status}")
                if on_report:
                    on_report(report)
    finally:
        _remove_run_dir(out_dir, job.run_id)
    ordered = [reports[f] for f in files]
    write_summary(ordered, out_dir)
    return ordered


def _remove_run_dir(out_dir: Path, run_id: str) -> None:
    """Drop this run's unfinished attempts (and ``.partial`` when left empty)."""
    partial = out_dir / PARTIAL_DIR
    shutil.rmtree(partial / run_id, ignore_errors=True)
    try:
        partial.rmdir()
    except OSError:
        pass  # another run's attempts are still there


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
             f"{'FPS':>8}{'tries':>6}  reason"]
    for r in reports:
        lines.append(f"{Path(r.file).name[:35]:<36}{r.status:<9}{r.read:>7}"
                     f"{r.processed:>7}{r.written:>8}{r.fps:>8.1f}{r.attempts:>6}"
                     f"  {r.reason}")
    by_status: dict[str, int] = {}
    for r in reports:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(by_status.items())))
    retried = [Path(r.file).name for r in reports if r.attempts > 1]
    if retried:
        lines.append(f"retried after a lost worker or node: {', '.join(retried)}")
    return "\n".join(lines)


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))
