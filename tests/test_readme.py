"""The README as a new user meets it: every ``streamdet`` / ``python
run_stream.py`` command that a CPU machine can run is run in-process (with
``--max-frames 2``, placeholders replaced by small real files), every ``python
-m training`` command line parses with the real parser, the Python example runs
as a script from another folder, and every link to the docs resolves inside the
repository. None may end in a traceback."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest

import run_stream
from tests.conftest import ROOT, write_video

README = (ROOT / "README.md").read_text()
# Lines that need what CI has not: a camera, a display, a network camera, a
# GPU with TensorRT, a Ray cluster; or that run until stopped (serve). Each of
# those has its own test or skips.
NEEDS_MORE = ("--source 0", "--show", "rtsp://", ".engine", "--ray", "build-engine",
              "streamdet serve")


def commands() -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_readme_shows_the_commands_tested_here():
    cmds = commands()
    assert any(c.startswith("streamdet ") for c in cmds)
    assert any(c.startswith("streamdet benchmark") for c in cmds)
    assert any(c.startswith("python -m training") for c in cmds)
    assert cmds[0].startswith("python3 -m venv") and cmds[0].endswith("streamdet")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("readme")
    clip = write_video(root / "video.mp4", frames=4, size=(256, 192))
    frames = root / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i}.jpg"), np.full((192, 256, 3), 90, np.uint8))
    videos = root / "videos"
    videos.mkdir()
    write_video(videos / "one.mp4", frames=3, size=(256, 192))
    (root / "cams.txt").write_text(f"{clip}\n{clip}\n")
    (root / "cams.yaml").write_text(
        f"sources:\n  - name: door\n    url: {clip}\n"
        "    lines: [{name: entrance, points: [[0.5, 0.1], [0.5, 0.9]]}]\n")
    return {"video.mp4": str(clip), "a.mp4": str(clip), "b.mp4": str(clip),
            "frames/": str(frames), "videos/": str(videos),
            "cams.txt": str(root / "cams.txt"), "cams.yaml": str(root / "cams.yaml"),
            "model.onnx": str(ROOT / "models" / "yolo_demo.onnx"),
            "metrics.json": str(root / "metrics.json")}


def stream_commands() -> list[str]:
    out = []
    for c in commands():
        if c.startswith(("python run_stream.py", "streamdet")) or c.endswith(
                "&& streamdet"):
            if not any(marker in c for marker in NEEDS_MORE):
                out.append(c.split("&& ")[-1])
    return out


@pytest.mark.parametrize("command", stream_commands())
def test_stream_command_runs(command, files, tmp_path, caplog):
    argv = shlex.split(command)
    argv = argv[2:] if argv[0] == "python" else argv[1:]
    argv = [files.get(a, a) for a in argv]
    if "--help" in argv:
        with pytest.raises(SystemExit) as exit_:
            run_stream.main(argv)
        assert exit_.value.code == 0
        return
    if argv[:1] == ["batch"]:
        argv += ["--out", str(tmp_path), "--no-progress"]
    else:
        argv += ["--out", str(tmp_path), "--no-progress", "--max-frames", "2"]
    assert run_stream.main(argv) == 0, caplog.text


TRAINING = [c for c in commands() if c.startswith("python -m training")]


@pytest.mark.parametrize("command", TRAINING)
def test_training_command_line_parses(command):
    from training.__main__ import parse

    argv = shlex.split(command)[3:]
    args = parse(argv)
    assert callable(args.handler)


def test_evaluate_tracking_command_runs():
    """It needs TrackEval, which the README's first command installs."""
    pytest.importorskip("trackeval", reason="installed by the README's first command")
    from training.__main__ import main

    [command] = [c for c in TRAINING if "evaluate-tracking" in c]
    assert main(shlex.split(command)[3:]) == 0


def test_readme_is_a_users_page():
    """Short, and no lab log: measurement history lives in docs/benchmarks.md."""
    assert len(README.splitlines()) <= 250
    for phrase in ("today", "the day before", "yesterday"):
        assert phrase not in README.lower()


def python_example() -> str:
    [first, *_] = re.findall(r"```python\n(.*?)```", README, re.S)
    return first


def test_python_example_runs_from_another_folder(tmp_path):
    """The README's Python example, as a user would paste it into a script."""
    code = python_example()
    assert len(code.splitlines()) <= 15
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(script)], capture_output=True,
                         text=True, timeout=180, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [int(line.split()[0]) for line in lines] == list(range(51))
    assert lines[-1].startswith("50 5.00s")  # vtest.mp4 runs at 10 FPS


def doc_links(path) -> list[str]:
    text = path.read_text()
    return [link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", text)
            if not link.startswith(("http://", "https://", "#", "mailto:"))]


@pytest.mark.parametrize("page", ["README.md", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_links_resolve_inside_the_repository(page):
    path = ROOT / page
    assert "../" not in path.read_text(), f"{page} names a path above its folder"
    for link in doc_links(path):
        target = (path.parent / link).resolve()
        assert target.is_relative_to(ROOT), f"{page} points outside: {link}"
        assert target.exists(), f"{page}: {link} does not exist"
