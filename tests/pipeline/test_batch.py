"""Batch processing of many files: accounting, resumability, workers, Ray."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.batch import BatchJob, find_videos, run_batch
from pipeline.runner import PipelineConfig
from pipeline.sinks import OutputConfig
from tests.conftest import ROOT, write_video


def make_inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        write_video(folder / f"clip{i}.mp4", frames=10 + 5 * i)
    (folder / "broken.mp4").write_bytes(b"garbage" * 100)
    (folder / "notes.txt").write_text("not a video")
    return folder


def job(tmp_path: Path, force: bool = False) -> BatchJob:
    return BatchJob(detector={"model": "hog"},
                    pipeline=PipelineConfig(outputs=OutputConfig(out_dir=tmp_path / "out"),
                                            progress=False),
                    force=force)


def test_find_videos_expands_folders(tmp_path: Path) -> None:
    folder = make_inputs(tmp_path)
    names = [Path(f).name for f in find_videos([str(folder)])]
    assert names == ["broken.mp4", "clip0.mp4", "clip1.mp4", "clip2.mp4"]


def test_batch_accounts_for_every_frame_and_resumes(tmp_path: Path) -> None:
    folder = make_inputs(tmp_path)
    reports = run_batch([str(folder)], job(tmp_path), workers=2, progress=False)
    by_name = {Path(r.file).name: r for r in reports}
    assert by_name["broken.mp4"].status == "failed"
    assert "not a readable video" in by_name["broken.mp4"].reason
    for i in range(3):
        r = by_name[f"clip{i}.mp4"]
        assert r.status == "ok"
        assert r.read == r.processed == r.written == 10 + 5 * i
    with open(tmp_path / "out" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok", "failed"}
    # resumable: finished files are skipped, failed ones are retried
    again = {Path(r.file).name: r for r in
             run_batch([str(folder)], job(tmp_path), progress=False)}
    assert again["clip0.mp4"].status == "skipped"
    assert again["clip0.mp4"].written == 10
    assert again["broken.mp4"].status == "failed"
    forced = run_batch([str(folder / "clip0.mp4")], job(tmp_path, force=True),
                       progress=False)
    assert forced[0].status == "ok"


def test_batch_cli(tmp_path: Path) -> None:
    folder = make_inputs(tmp_path)
    out = subprocess.run(
        [sys.executable, "run_stream.py", "batch", str(folder / "clip*.mp4"),
         "--out", str(tmp_path / "o"), "--no-progress", "--workers", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "3 ok" in out.stdout
    assert (tmp_path / "o" / "summary.csv").exists()
    assert (tmp_path / "o" / "clip2.mp4").exists()


def test_batch_on_local_ray(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    folder = make_inputs(tmp_path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        reports = run_batch([str(folder)], job(tmp_path), ray_address="local",
                            progress=False)
    finally:
        ray.shutdown()
    statuses = sorted(r.status for r in reports)
    assert statuses == ["failed", "ok", "ok", "ok"]
    assert all(r.read == r.written for r in reports if r.status == "ok")
