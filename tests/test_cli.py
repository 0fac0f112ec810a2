"""The command line as a user meets it: exit codes, one-line errors, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, decoded_frames, write_video

CLI = [sys.executable, str(ROOT / "run_stream.py"), "--no-progress"]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_help_reads_well() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for flag in ("--source", "--model", "--tracker", "--batch", "--metrics", "--show"):
        assert flag in out.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--source", "missing.mp4"], "missing.mp4: file not found"),
        (["--source", "pyproject.toml"], "not a readable video"),
        (["--model", "nope.onnx"], "model file not found: nope.onnx"),
        (["--model", "pyproject.toml"], "unknown model format"),
        (
            ["--source", "rtsp://127.0.0.1:9/x", "--timeout", "1", "--reconnect", "0"],
            "cannot connect",
        ),
        (["--batch", "0"], "batch must be >= 1"),
    ],
)
def test_bad_input_one_clear_line(args: list[str], needle: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    out = run_cli(*args, "--out", str(tmp_path))
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
    assert time.perf_counter() - started < 15


def test_corrupt_onnx_fails_before_sources_open(tmp_path: Path) -> None:
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"\x08\x01garbage" * 10)
    out = run_cli(
        "--model", str(model), "--source", "missing.mp4", "--out", str(tmp_path)
    )
    assert out.returncode == 2
    assert "broken.onnx: not a loadable ONNX model" in out.stderr
    assert "missing.mp4" not in out.stderr  # the model was checked first


def test_run_writes_outputs_and_metrics(tmp_path: Path) -> None:
    metrics = tmp_path / "m.json"
    out = run_cli(
        "--max-frames", "6", "--out", str(tmp_path), "--metrics", str(metrics), "--mot"
    )
    assert out.returncode == 0, out.stderr
    assert "FPS" in out.stdout
    data = json.loads(metrics.read_text())
    assert data["sources"]["vtest"]["written"] == 6
    assert (tmp_path / "vtest.mot.txt").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_run_exits_fast_with_valid_outputs(
    tmp_path: Path, sig: signal.Signals
) -> None:
    video = write_video(tmp_path / "long.mp4", frames=2000, size=(640, 480))
    proc = subprocess.Popen(
        [*CLI, "--source", str(video), "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    jsonl = tmp_path / "long.jsonl"
    deadline = time.time() + 30
    while time.time() < deadline and (not jsonl.exists() or jsonl.stat().st_size < 200):
        time.sleep(0.1)
    assert jsonl.exists(), "pipeline never started writing"
    proc.send_signal(sig)
    sent = time.perf_counter()
    proc.wait(timeout=10)
    assert time.perf_counter() - sent < 2.0
    assert proc.returncode == 128 + sig
    lines = jsonl.read_text().splitlines()
    assert lines and all(json.loads(line) for line in lines)
    frames = decoded_frames(tmp_path / "long.mp4")
    assert frames == len(lines)  # MP4 finalised: readable to its last written frame


def test_benchmark_mode_reports_every_phase(tmp_path):
    """``--benchmark`` runs the four phases on the same frames and writes JSON."""
    import json

    import run_stream
    from tests.conftest import write_video

    clip = write_video(tmp_path / "clip.mp4", frames=12, size=(256, 192))
    out = tmp_path / "bench.json"
    assert run_stream.main(["--benchmark", "--model", "yolo", "--source", str(clip),
                            "--metrics", str(out), "--log-level", "WARNING"]) == 0
    report = json.loads(out.read_text())
    assert set(report["phases"]) == {"decode_only", "inference_only", "plain_loop",
                                     "pipeline"}
    assert all(row["frames"] == 12 for row in report["phases"].values())
    assert report["ratio_pipeline_vs_loop"] > 0
