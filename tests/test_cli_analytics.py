"""``--line`` / ``--zone`` on the command line: a run's events and counts, the
tracker chosen for them, the one-line errors (exit 2), and events that reach a
signed webhook and a real MQTT broker — or, when those are dead, never hold up
a file run."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from pathlib import Path

import pytest

import run_stream
from pipeline.tracking import RECOMMENDED_TRACKER
from tests.conftest import decoded_frames, free_port, needs_broker
from tests.pipeline.event_helpers import Receiver
from tests.pipeline.test_analytics_stage import (
    LINE,
    ZONE,
    BlobDetector,
    write_scene_video,
)


@pytest.fixture
def scene_video(tmp_path: Path) -> Path:
    return write_scene_video(tmp_path / "cam.mp4")


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


# Events beyond the JSON Lines file: a signed webhook and MQTT.
SECRET = "s3cret-for-tests"


def run(args: list[str]) -> int:
    return run_stream.main(["--no-progress", "--line", LINE, "--zone", ZONE,
                            "--loiter", "1", *args])


@needs_broker
def test_events_reach_a_signed_webhook_and_mqtt(tmp_path, scene_video, blob_model,
                                                broker, monkeypatch):
    import paho.mqtt.client as mqtt

    monkeypatch.setenv(run_stream.WEBHOOK_SECRET_ENV, SECRET)
    received: list[tuple[str, dict]] = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *a: c.subscribe("cams/#", qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = lambda c, u, m: received.append(
        (m.topic, json.loads(m.payload)))
    client.connect("127.0.0.1", broker)
    client.loop_start()
    receiver = Receiver()
    try:
        assert subscribed.wait(5)
        out = tmp_path / "out"
        assert run(["--source", str(scene_video), "--out", str(out),
                    "--webhook", receiver.url,
                    "--mqtt", f"mqtt://127.0.0.1:{broker}/cams"]) == 0
        written = [json.loads(x) for x in
                   (out / "cam.events.jsonl").read_text().splitlines()]
        assert len(written) == 5
        receiver.wait_for(5)
        deadline = time.monotonic() + 5
        while len(received) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.loop_stop()
        receiver.stop()
    ids = [e["event_id"] for e in written]
    for headers, body in receiver.requests:
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Streamdet-Signature"] == f"sha256={expected}"
    assert sorted(json.loads(b)["event_id"] for _, b in receiver.requests) == \
        sorted(ids)
    assert sorted(e["event_id"] for _, e in received) == sorted(ids)
    assert {t for t, _ in received} == {f"cams/{e['event']}" for e in written}


def test_dead_receivers_never_hold_a_file_run(tmp_path, scene_video, blob_model):
    receiver = Receiver(hang=True)
    out = tmp_path / "out"
    done_at: list[float] = []
    original = run_stream.run_pipeline

    def timed(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        finally:
            done_at.append(time.monotonic())

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(run_stream, "run_pipeline", timed)
            assert run(["--source", str(scene_video), "--out", str(out),
                        "--webhook", receiver.url,
                        "--mqtt", f"mqtt://127.0.0.1:{free_port()}/cams",
                        "--metrics", str(tmp_path / "m.json")]) == 0
    finally:
        receiver.stop()
    last_frame = (out / "cam.mp4").stat().st_mtime
    metrics = json.loads((tmp_path / "m.json").read_text())
    counts = metrics["sources"]["cam"]
    assert counts["read"] == counts["written"] == decoded_frames(out / "cam.mp4")
    assert done_at[0] - time.monotonic() + time.time() - last_frame < 2.0
    dropped = metrics["events_dropped"]
    assert sum(dropped.values()) >= 5  # the MQTT broker got none of them


def test_webhook_without_lines_or_zones_is_refused(tmp_path, caplog):
    code = run_stream.main(["--no-progress", "--webhook", "http://127.0.0.1:9/x",
                            "--out", str(tmp_path)])
    assert code == 2
    assert "--webhook and --mqtt send line and zone events" in caplog.text


def test_a_bad_event_url_is_one_line(tmp_path, caplog):
    code = run(["--mqtt", "ftp://user:hunter2@host/x", "--out", str(tmp_path)])
    assert code == 2 and "MQTT URL" in caplog.text and "hunter2" not in caplog.text
