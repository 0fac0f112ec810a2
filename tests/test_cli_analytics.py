"""``--line`` / ``--zone`` on the command line: a run's events and counts, the
tracker chosen for them, and the one-line errors (exit 2)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import pytest

import run_stream
from pipeline.tracking import RECOMMENDED_TRACKER
from tests.pipeline.test_analytics_stage import (
    FPS,
    HEIGHT,
    LINE,
    WIDTH,
    ZONE,
    BlobDetector,
    scene_frames,
)


@pytest.fixture
def scene_video(tmp_path: Path) -> Path:
    path = tmp_path / "cam.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS,
                             (WIDTH, HEIGHT))
    for image, _ in scene_frames():
        writer.write(image)
    writer.release()
    return path


@pytest.fixture
def blob_model(monkeypatch):
    """The CLI with the object-finding stub instead of a model file, and
    without replacing the test runner's signal handlers."""
    monkeypatch.setattr(run_stream, "open_detector",
                        lambda args, options: BlobDetector())
    monkeypatch.setattr(run_stream, "install_signal_handlers", lambda stop: {})


def test_a_run_with_a_line_and_a_zone_writes_events_and_metrics(
        tmp_path: Path, scene_video: Path, blob_model, caplog) -> None:
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        code = run_stream.main([
            "--source", str(scene_video), "--out", str(out), "--no-progress",
            "--line", LINE, "--zone", ZONE, "--loiter", "1", "--anchor", "bottom",
            "--line-classes", "thing", "--metrics", str(tmp_path / "m.json")])
    assert code == 0
    assert f"recommended tracker {RECOMMENDED_TRACKER}" in caplog.text
    records = [json.loads(line) for line in
               (out / "cam.events.jsonl").read_text().splitlines()]
    assert [(r["event"], r.get("direction")) for r in records] == [
        ("line_cross", "out"), ("zone_enter", None), ("loiter", None),
        ("zone_exit", None), ("line_cross", "in")]
    analytics = json.loads((tmp_path / "m.json").read_text())["analytics"]["cam"]
    assert analytics["lines"]["door"] == {"in": {"thing": 1}, "out": {"thing": 1}}
    assert analytics["zones"]["desk"] == {"thing": 0}


@pytest.mark.parametrize(("args", "needle"), [
    (["--line", "0.5,0.1,0.5"], "--line '0.5,0.1,0.5': expected X1,Y1,X2,Y2"),
    (["--line", "0.5,0.1,640,0.9"], "0.5 is a fraction of the frame but 640"),
    (["--zone", "0,0,1,0"], "--zone '0,0,1,0': expected X,Y,X,Y,X,Y"),
    (["--zone", "0,0,1,0,x,1:desk"], "'x' is not a number"),
    (["--line", "0,0,1,1:a/b"], "a/b"),
    (["--zone", "0,0,1,0,1,1", "--loiter", "0"], "--loiter must be > 0"),
    (["--zone", "0,0,1,0,1,1", "--zone-inertia", "0"], "--zone-inertia must be"),
    (["--line", LINE, "--tracker", "none"], "--tracker none cannot be used with "
                                            "--line/--zone"),
    (["--line", LINE, "--line-classes", "person"], "unknown class 'person'"),
])
def test_bad_analytics_options_exit_2_in_one_line(
        args: list[str], needle: str, tmp_path: Path, scene_video: Path, blob_model,
        caplog) -> None:
    code = run_stream.main(["--source", str(scene_video), "--out", str(tmp_path),
                            "--no-progress", *args])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert code == 2
    assert len(errors) == 1 and needle in errors[0] and "\n" not in errors[0]
    assert not (tmp_path / "cam.events.jsonl").exists()


def test_line_does_not_abbreviate_line_width(capsys) -> None:
    args = run_stream.build_parser().parse_args(["--line", "0,0,1,1:a",
                                                 "--line-width", "3"])
    assert args.line == ["0,0,1,1:a"] and args.line_width == 3


def test_serve_takes_the_analytics_options() -> None:
    args = run_stream.build_serve_parser().parse_args(["--zone", ZONE,
                                                       "--zone-inertia", "5"])
    config = run_stream.pipeline_config(args)
    assert [z.name for z in config.analytics.zones] == ["desk"]
    assert config.analytics.zone_inertia == 5 and config.tracker == RECOMMENDED_TRACKER
