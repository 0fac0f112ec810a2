"""The command line as a user meets it: exit codes, one-line errors, signals."""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import run_stream
from core.errors import InputError
from core.meta import ModelError
from pipeline.sinks import SinkError
from pipeline.sources import SourceError
from tests.conftest import ROOT, decoded_frames, write_video
from training.__main__ import COMMANDS as TRAINING_COMMANDS

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
    for command in ("run", "batch", "benchmark"):
        assert f"streamdet {command}" in out.stdout
    assert "[--benchmark]" not in out.stdout  # a command now, not a flag


@pytest.mark.parametrize("command", ["run", "batch", "benchmark"])
def test_each_command_has_its_help(command: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_stream.main([command, "--help"])
    assert exit_.value.code == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--line-wid", "3"],  # would be --line-width 3 with abbreviations
        ["run", "--max-fr", "2"],
        ["benchmark", "--max-fr", "2"],
        ["batch", "videos/", "--work", "2"],
    ],
)
def test_abbreviated_option_is_refused(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_stream.main(argv)
    assert exit_.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_former_benchmark_flag_points_to_the_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_stream.main(["--benchmark", "--model", "yolo"])
    assert exit_.value.code == 2
    assert "streamdet benchmark" in capsys.readouterr().err


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
        (["--conf", "1.5"], "conf must be in [0, 1]"),
        (["--tracker", "bytetrack", "--tracker-param", "nope=1"], "nope"),
        (["--tracker", "bytetrack", "--tracker-param", "min_hits=0"], "min_hits"),
        (["--serve", "host:port"], "--serve expects HOST:PORT"),
        (["--codec", "nope"], "codec 'nope'"),
        (["--rtsp-out", "http://nvr/x"], "expected rtsp://host:port/path"),
        (["--conf", "0", "--model", "lineage-dpm"], "got 0.0"),
        (["--model", "yolo", "--classes", "nope"], "no class named 'nope'"),
        (["--out", "pyproject.toml/sub", "--max-frames", "2"], "pyproject.toml"),
        (["--metrics", "no/such/folder/m.json"], "--metrics no/such/folder/m.json"),
    ],
)
def test_bad_input_one_clear_line(args: list[str], needle: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    out = run_cli(*args, *([] if "--out" in args else ["--out", str(tmp_path)]))
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


def test_benchmark_command_reports_every_phase(tmp_path: Path) -> None:
    """``benchmark`` runs the four phases on the same frames and writes JSON."""
    clip = write_video(tmp_path / "clip.mp4", frames=12, size=(256, 192))
    out = tmp_path / "bench.json"
    assert run_stream.main(["benchmark", "--model", "yolo", "--source", str(clip),
                            "--metrics", str(out), "--log-level", "WARNING"]) == 0
    report = json.loads(out.read_text())
    assert set(report["phases"]) == {"decode_only", "inference_only", "plain_loop",
                                     "pipeline"}
    assert all(row["frames"] == 12 for row in report["phases"].values())
    assert report["ratio_pipeline_vs_loop"] > 0


@pytest.mark.parametrize("error", [ModelError, SourceError, SinkError])
def test_the_input_errors_share_one_base(error: type[Exception]) -> None:
    assert issubclass(error, InputError)


# Runs the CLI with one stage broken: the pipeline is real, the fault is injected.
BROKEN_DRAW = """
import pipeline.overlay
import pipeline.sinks
import run_stream

def draw(*args, **kwargs):
    raise {error}
pipeline.overlay.Overlay.draw = draw
run_stream.cli()  # as the streamdet command runs it
"""


def run_broken(error: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = BROKEN_DRAW.format(error=error)
    return subprocess.run(
        [sys.executable, "-c", script, "--no-progress", "--max-frames", "5", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )


def test_internal_error_exits_1_with_its_traceback(tmp_path: Path) -> None:
    """A ``ValueError`` from deep inside a stage is a bug, not bad input."""
    out = run_broken('ValueError("bug in draw")', "--out", str(tmp_path))
    assert out.returncode == 1, out.stderr
    assert "Traceback (most recent call last)" in out.stderr
    assert "ValueError: bug in draw" in out.stderr
    assert "in draw" in out.stderr  # the frame that raised it


def test_input_error_mid_run_exits_2_in_one_line(tmp_path: Path) -> None:
    out = run_broken(
        'pipeline.sinks.SinkError("disk.mp4: no space left")', "--out", str(tmp_path)
    )
    assert out.returncode == 2, out.stderr
    assert "disk.mp4: no space left" in out.stderr
    assert "Traceback" not in out.stderr


def test_training_refuses_an_abbreviated_option(capsys) -> None:
    from training.__main__ import parse

    given = ["evaluate", "--model", "yolo", "--data", "data.yaml"]
    assert parse([*given, "--limit", "5"]).limit == 5
    with pytest.raises(SystemExit) as exit_:
        parse([*given, "--lim", "5"])  # would be --limit 5 with abbreviations
    assert exit_.value.code == 2
    assert "unrecognized arguments: --lim 5" in capsys.readouterr().err


def parser_tree(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += parser_tree(sub)
    return found


@pytest.mark.parametrize("command", sorted(TRAINING_COMMANDS))
def test_every_training_parser_refuses_abbreviations(command: str) -> None:
    from training.__main__ import build_parser

    parsers = parser_tree(build_parser(command))
    assert len(parsers) >= 2
    assert [p.prog for p in parsers if p.allow_abbrev] == []


def argparse_calls_allowing_abbreviations() -> list[str]:
    """Every ``ArgumentParser(...)`` / ``.add_parser(...)`` call in the repository
    that does not pass ``allow_abbrev=False`` (subparsers do not inherit it)."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if any(part.startswith(".") for part in path.relative_to(ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(
                func, "id", "")
            if name not in ("ArgumentParser", "add_parser"):
                continue
            strict = any(k.arg == "allow_abbrev" and isinstance(k.value, ast.Constant)
                         and k.value.value is False for k in node.keywords)
            if not strict:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_parser_in_the_repository_abbreviates() -> None:
    assert argparse_calls_allowing_abbreviations() == []


@pytest.mark.slow
def test_installed_package_runs_from_another_folder(tmp_path: Path) -> None:
    """``pip install .`` (not editable) ships the models and the sample clip: the
    default source and a shipped model resolve inside site-packages."""
    clone = tmp_path / "clone"  # what a clone holds, so no build files land here
    clone.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "README.md", "run_stream.py"):
        shutil.copy2(ROOT / name, clone / name)
    for name in ("core", "engines", "pipeline", "training", "streamdet", "models",
                 "samples"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, clone / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
         "--no-build-isolation", "--target", str(site), str(clone)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr
    assert (site / "models" / "yolo_demo.onnx").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "run_stream", "--model", "yolo", "--max-frames", "3",
         "--no-progress", "--no-video", "--out", str(elsewhere / "out")],
        capture_output=True, text=True, timeout=120, cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert out.returncode == 0, out.stderr
    assert str(site / "samples" / "vtest.mp4") in out.stderr  # the shipped sample
    assert len((elsewhere / "out" / "vtest.jsonl").read_text().splitlines()) == 3


def test_batch_without_videos_is_bad_input(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "run_stream.py"), "batch",
         str(tmp_path / "none*.mp4"), "--out", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert out.returncode == 2, out.stderr
    assert "no video files found" in out.stderr
    assert "Traceback" not in out.stderr
