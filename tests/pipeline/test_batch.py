"""Batch processing of many files: accounting, resumability, workers, Ray."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from core.meta import file_sha256
from engines.build import MODELS_DIR
from pipeline.batch import (
    PARTIAL_DIR,
    BatchJob,
    find_videos,
    model_fingerprint,
    output_settings,
    process_file,
    run_batch,
    summary_table,
)
from pipeline.config import PipelineConfig
from pipeline.sinks import OutputConfig
from tests.conftest import ROOT, StubDetector, decoded_frames, write_video


def make_inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        write_video(folder / f"clip{i}.mp4", frames=10 + 5 * i)
    (folder / "broken.mp4").write_bytes(b"garbage" * 100)
    (folder / "notes.txt").write_text("not a video")
    return folder


def job(tmp_path: Path, force: bool = False, **detector: object) -> BatchJob:
    outputs = OutputConfig(out_dir=tmp_path / "out")
    return BatchJob(detector={"model": "hog", **detector},
                    pipeline=PipelineConfig(outputs=outputs, progress=False),
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
    assert {r["attempts"] for r in rows} == {"1"}
    assert not (tmp_path / "out" / PARTIAL_DIR).exists()
    assert decoded_frames(tmp_path / "out" / "clip2.mp4") == 20
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


def test_resume_redoes_a_file_done_with_other_settings(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", frames=8)
    first = run_batch([str(clip)], job(tmp_path, conf=0.5), progress=False)
    assert first[0].status == "ok"
    marker = json.loads((tmp_path / "out" / "clip.done.json").read_text())
    assert marker["settings"]["detector_options"] == {"conf": 0.5}
    same = run_batch([str(clip)], job(tmp_path, conf=0.5), progress=False)
    assert same[0].status == "skipped"
    # another threshold, another tracker: the outputs would differ, so redo
    other = run_batch([str(clip)], job(tmp_path, conf=0.9), progress=False)
    assert other[0].status == "ok" and other[0].written == 8
    tracked = replace(job(tmp_path, conf=0.9),
                      pipeline=replace(job(tmp_path).pipeline, tracker="bytetrack"))
    assert run_batch([str(clip)], tracked, progress=False)[0].status == "ok"
    assert run_batch([str(clip)], tracked, progress=False)[0].status == "skipped"
    every_2 = replace(tracked, pipeline=replace(tracked.pipeline, detect_every=2))
    assert output_settings(every_2) != output_settings(tracked)
    # neutral settings (device, threads) do not make a file undone
    neutral = replace(tracked, detector={**tracked.detector, "threads": 1})
    assert run_batch([str(clip)], neutral, progress=False)[0].status == "skipped"


def test_model_fingerprint_is_the_file_content(tmp_path: Path) -> None:
    shipped = model_fingerprint("yolo")
    assert shipped["sha256"] == file_sha256(MODELS_DIR / "yolo_demo.onnx")
    copy = tmp_path / "m.onnx"
    shutil.copy(MODELS_DIR / "yolo_demo.onnx", copy)
    assert model_fingerprint(str(copy))["sha256"] == shipped["sha256"]
    with open(copy, "r+b") as f:  # same name and size, other weights
        f.seek(-16, 2)
        f.write(b"\0" * 16)
    assert model_fingerprint(str(copy))["sha256"] != shipped["sha256"]
    assert model_fingerprint("hog") == {"model": "hog"}


def test_a_failed_file_leaves_no_half_written_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = write_video(tmp_path / "clip.mp4", frames=30)
    monkeypatch.setattr("engines.build.load_detector",
                        lambda **_: StubDetector(fail_infer_at=5))
    report = run_batch([str(clip)], job(tmp_path), progress=False)[0]
    assert report.status == "failed" and "injected infer failure" in report.reason
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["summary.csv", "summary.json"]


def test_an_attempt_that_died_is_counted_and_replaced(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", frames=12)
    out = tmp_path / "out"
    stale = out / PARTIAL_DIR / "r1" / "clip" / "0123456789ab"
    stale.mkdir(parents=True)
    (stale / "clip.mp4").write_bytes(b"\0" * 100)  # what a killed writer leaves
    (stale / "clip.jsonl").write_text('{"frame": 0}\n')
    report = process_file(str(clip), "clip", replace(job(tmp_path), run_id="r1"))
    assert report.status == "ok" and report.attempts == 2
    assert not stale.exists()
    assert decoded_frames(out / "clip.mp4") == 12
    lines = (out / "clip.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(12))
    assert "retried after a lost worker or node: clip.mp4" in summary_table([report])
