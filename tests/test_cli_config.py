"""``--config cams.yaml`` end to end: two generated videos, each with its own
lines and zones, events to its own ``SOURCE.events.jsonl`` and to a signed
webhook and MQTT, secrets from ``${ENV}`` that no log line, error or output
file shows, and the rules between the file and the flags."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest

import run_stream
from pipeline.events import sign
from tests.conftest import needs_broker
from tests.pipeline.event_helpers import Receiver
from tests.pipeline.test_analytics_stage import (
    FPS,
    BlobDetector,
    write_scene_video,
)

HOOK_SECRET = "hook-Secret-9f3"
MQTT_PASSWORD = "mq/Pass:w0rd@x"


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_scene_video(folder / "a.mp4")
    write_scene_video(folder / "b.mp4")
    return folder


@pytest.fixture
def blob_model(monkeypatch):
    """The CLI with the object-finding stub instead of a model file, and
    without replacing the test runner's signal handlers."""
    monkeypatch.setattr(run_stream, "open_detector",
                        lambda args, options: BlobDetector())
    monkeypatch.setattr(run_stream, "install_signal_handlers", lambda stop: {})


def cams_yaml(events: str) -> str:
    """Source ``door`` has a vertical line (the object crosses it going right,
    then back) and a zone it never enters; ``desk`` has only a zone the object
    visits for 2.9 s, so each file's events tell which lines and zones ran."""
    return f"""
defaults:
  tracker: bytetrack
  anchor: bottom
  loiter_s: 1
events:
{events}
sources:
  - name: door
    url: "${{VIDEOS}}/a.mp4"
    lines:
      - {{name: entrance, points: [[0.5, 0], [0.5, 1]], classes: [thing]}}
    zones:
      - {{name: corner, points: [[0, 0], [20, 0], [20, 20], [0, 20]]}}
  - name: desk
    url: "${{VIDEOS}}/b.mp4"
    zones:
      - name: desk
        points: [[0.6, 0], [0.9, 0], [0.9, 1], [0.6, 1]]
        inertia: 2
    clips: {{on: [zone_enter, loiter], pre_s: 2, post_s: 3}}
"""


def events_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_camera_file_runs_each_source_with_its_own_lines_and_zones(
        tmp_path, videos, blob_model, monkeypatch, caplog) -> None:
    receiver = Receiver()
    monkeypatch.setenv("VIDEOS", str(videos))
    monkeypatch.setenv("HOOK_SECRET", HOOK_SECRET)
    config = tmp_path / "cams.yaml"
    config.write_text(cams_yaml(
        f'  webhook: {{url: "{receiver.url}", secret: "${{HOOK_SECRET}}"}}'))
    out = tmp_path / "out"
    try:
        with caplog.at_level(logging.DEBUG):
            code = run_stream.main(["--config", str(config), "--out", str(out),
                                    "--no-progress", "--no-video",
                                    "--metrics", str(tmp_path / "m.json")])
        assert code == 0
        door = events_of(out / "door.events.jsonl")
        desk = events_of(out / "desk.events.jsonl")
        receiver.wait_for(len(door) + len(desk))
    finally:
        receiver.stop()
    assert [(e["event"], e["line"], e["direction"]) for e in door] == [
        ("line_cross", "entrance", "out"), ("line_cross", "entrance", "in")]
    assert [(e["event"], e["zone"]) for e in desk] == [
        ("zone_enter", "desk"), ("loiter", "desk"), ("zone_exit", "desk")]
    assert {e["source"] for e in door} == {"door"}
    assert {e["source"] for e in desk} == {"desk"}
    assert abs(desk[-1]["dwell_s"] - 2.9) <= 1 / FPS + 1e-6
    # every event reached the webhook, signed with the secret from ${HOOK_SECRET}
    bodies = [body for _, body in receiver.requests]
    assert sorted(json.loads(b)["event_id"] for b in bodies) == sorted(
        e["event_id"] for e in door + desk)
    for headers, body in receiver.requests:
        assert headers["X-Streamdet-Signature"] == sign(HOOK_SECRET, body)
    analytics = json.loads((tmp_path / "m.json").read_text())["analytics"]
    assert set(analytics["door"]["lines"]) == {"entrance"}
    assert set(analytics["door"]["zones"]) == {"corner"}
    assert "lines" not in analytics["desk"] or not analytics["desk"]["lines"]
    assert set(analytics["desk"]["zones"]) == {"desk"}
    assert HOOK_SECRET not in caplog.text
    for path in out.rglob("*"):
        if path.is_file():
            assert HOOK_SECRET.encode() not in path.read_bytes(), path
    # the file's clips: (zone_enter, loiter) cut clips of the desk's events
    clips = sorted(p.name for p in (out / "clips").glob("*.mp4"))
    assert clips and all(name.startswith("desk_") for name in clips)


@needs_broker
def test_mqtt_credentials_from_the_environment_reach_the_broker_unlogged(
        tmp_path, videos, blob_model, broker, monkeypatch, caplog) -> None:
    import paho.mqtt.client as mqtt

    monkeypatch.setenv("VIDEOS", str(videos))
    monkeypatch.setenv("MQTT_PASSWORD", MQTT_PASSWORD)
    config = tmp_path / "cams.yaml"
    config.write_text(cams_yaml(
        f'  mqtt: {{url: "mqtt://127.0.0.1:{broker}/cams", username: cams, '
        'password: "${MQTT_PASSWORD}"}'))
    received: list[dict] = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *a: c.subscribe("cams/#", qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    client.connect("127.0.0.1", broker)
    client.loop_start()
    out = tmp_path / "out"
    try:
        assert subscribed.wait(5)
        with caplog.at_level(logging.DEBUG):
            assert run_stream.main(["--config", str(config), "--out", str(out),
                                    "--no-progress", "--no-video"]) == 0
        deadline = time.monotonic() + 5
        while len(received) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.loop_stop()
    assert sorted(e["source"] for e in received) == ["desk"] * 3 + ["door"] * 2
    for secret in (MQTT_PASSWORD, "mq%2FPass%3Aw0rd%40x"):
        assert secret not in caplog.text


def run_config(tmp_path: Path, text: str, *flags: str) -> int:
    config = tmp_path / "cams.yaml"
    config.write_text(text)
    return run_stream.main(["--config", str(config), "--out", str(tmp_path / "out"),
                            "--no-progress", "--no-video", *flags])


def one_error(caplog) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


@pytest.mark.parametrize(("flags", "needle"), [
    (["--source", "x.mp4"], "--source cannot be used with --config"),
    (["--line", "0,0,1,1"], "--line cannot be used with --config: the file gives "
                            "it (sources[].lines)"),
    (["--zone", "0,0,1,0,1,1"], "--zone cannot be used with --config"),
    (["--loiter", "3"], "(defaults.loiter_s)"),
    (["--webhook", "http://127.0.0.1:9/h"], "(events.webhook)"),
    (["--tracker", "sort"], "--tracker and defaults.tracker in"),
    (["--tracker", "none"], "--tracker and defaults.tracker in"),
])
def test_flags_that_the_file_gives_are_errors(flags, needle, tmp_path, videos,
                                              blob_model, monkeypatch,
                                              caplog) -> None:
    monkeypatch.setenv("VIDEOS", str(videos))
    monkeypatch.setenv("HOOK_SECRET", HOOK_SECRET)
    events = '  webhook: {url: "http://127.0.0.1:9/h", secret: "${HOOK_SECRET}"}'
    assert run_config(tmp_path, cams_yaml(events), *flags) == 2
    assert needle in one_error(caplog)
    assert not (tmp_path / "out").exists()


def test_a_flag_gives_what_the_files_defaults_leave_out(
        tmp_path, videos, blob_model, monkeypatch) -> None:
    """The file sets no tracker: --tracker sort applies; --model is the
    flags' (the stub replaces loading), the rest of the run as usual."""
    monkeypatch.setenv("VIDEOS", str(videos))
    text = cams_yaml("  {}").replace("  tracker: bytetrack\n", "")
    text = text.replace("events:\n  {}\n", "")
    seen = {}
    original = run_stream.pipeline_config

    def spy(args, camera=None):
        seen["config"] = original(args, camera)
        return seen["config"]

    monkeypatch.setattr(run_stream, "pipeline_config", spy)
    assert run_config(tmp_path, text, "--tracker", "sort") == 0
    assert seen["config"].tracker == "sort"
    assert (tmp_path / "out" / "door.events.jsonl").exists()


def test_a_secret_in_a_bad_file_stays_out_of_the_error(
        tmp_path, blob_model, monkeypatch, caplog) -> None:
    monkeypatch.setenv("CAM_PASS", "Cam-Secret-42")
    monkeypatch.setenv("MQTT_PASSWORD", MQTT_PASSWORD)
    for text, needle in [
        ('sources:\n  - {name: "${CAM_PASS}x/", url: a.mp4}\n', "sources[0].name"),
        ('events:\n  mqtt: {url: "ftp://u:${MQTT_PASSWORD}@h/t"}\n'
         'sources: [{name: a, url: a.mp4}]\n', "events.mqtt.url"),
        ('events:\n  mqtt: {url: "mqtt://h:99999/t", username: u, '
         'password: "${MQTT_PASSWORD}"}\nsources: [{name: a, url: a.mp4}]\n',
         "invalid port"),
        ('sources: [{name: a, url: "rtsp://u:${CAM_PASS}@cam/s", lines: 3}]\n',
         "sources[0].lines: expected a list"),
    ]:
        caplog.clear()
        assert run_config(tmp_path, text) == 2
        error = one_error(caplog)
        assert needle in error
        for secret in ("Cam-Secret-42", MQTT_PASSWORD, "mq%2FPass%3Aw0rd%40x"):
            assert secret not in error


@pytest.mark.parametrize(("edit", "flags", "needle"), [
    (lambda t: t.replace("  tracker: bytetrack\n", ""), ["--tracker", "none"],
     "tracker none cannot be used with the lines and zones of"),
    (lambda t: t.replace("    lines:\n", "    lnes:\n"), [],
     "sources[0].lnes: unknown key"),
    (lambda t: t.split("sources:")[0] + "sources: [{name: a, url: a.mp4}]\n", [],
     "events: sends line and zone events, but no source has lines or zones"),
])
def test_a_bad_file_or_combination_exits_2_in_one_line(
        edit, flags, needle, tmp_path, videos, blob_model, monkeypatch,
        caplog) -> None:
    monkeypatch.setenv("VIDEOS", str(videos))
    events = '  webhook: {url: "http://127.0.0.1:9/h"}'
    assert run_config(tmp_path, edit(cams_yaml(events)), *flags) == 2
    assert needle in one_error(caplog)


def test_serve_takes_a_camera_file(tmp_path, videos, monkeypatch) -> None:
    monkeypatch.setenv("VIDEOS", str(videos))
    config = tmp_path / "cams.yaml"
    config.write_text(cams_yaml("  {}"))
    seen = {}
    monkeypatch.setattr(run_stream, "run_pipeline",
                        lambda args, specs, keep_alive, camera=None: seen.update(
                            specs=specs, keep_alive=keep_alive, camera=camera) or 0)
    assert run_stream.main(["serve", "--config", str(config)]) == 0
    assert [s.name for s in seen["specs"]] == ["door", "desk"]
    assert seen["keep_alive"] and seen["camera"].defaults.tracker == "bytetrack"
    assert seen["specs"][1].clips.on == ("zone_enter", "loiter")


def test_the_files_defaults_fill_the_run_options(tmp_path, videos,
                                                 monkeypatch) -> None:
    monkeypatch.setenv("VIDEOS", str(videos))
    config = tmp_path / "cams.yaml"
    config.write_text(cams_yaml("  {}").replace(
        "defaults:\n",
        "defaults:\n  model: yolo\n  conf: 0.35\n  classes: [thing, 0]\n"))
    argv = ["--config", str(config), "--iou", "0.6"]
    args = run_stream.build_parser().parse_args(argv)
    camera = run_stream.camera_config(args, argv, run_stream.build_parser)
    assert (args.model, args.conf, args.classes) == ("yolo", 0.35, ("thing", 0))
    assert args.iou == 0.6 and args.tracker == "bytetrack"
    options = run_stream.typed_configs(args, camera)[1]
    assert options.conf == 0.35 and options.classes == ("thing", 0)


def test_a_camera_that_cannot_be_reached_is_named_without_its_password(
        tmp_path, blob_model, monkeypatch, caplog) -> None:
    monkeypatch.setenv("CAM_PASS", "Cam-Secret-77")
    text = ('sources:\n  - name: cam\n'
            '    url: "rtsp://admin:${CAM_PASS}@127.0.0.1:1/stream"\n'
            '    lines: [{points: [[0.5, 0], [0.5, 1]]}]\n')
    with caplog.at_level(logging.DEBUG):
        code = run_config(tmp_path, text, "--timeout", "1", "--reconnect", "0")
    assert code == 2
    assert "rtsp://127.0.0.1:1/stream" in one_error(caplog)
    assert "Cam-Secret-77" not in caplog.text
