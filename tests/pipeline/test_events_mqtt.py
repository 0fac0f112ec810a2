"""MQTT delivery against a real Mosquitto broker started on 127.0.0.1, and
against a broker that is down. Skipped where the mosquitto program is absent
(CI installs Debian's package)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import subprocess
import threading
import time

import pytest

from core.events import Event
from pipeline.events import (
    EventFanout,
    JsonlEventTarget,
    MqttTarget,
    WebhookTarget,
)
from tests.conftest import MOSQUITTO, free_port, needs_broker, wait_listening
from tests.pipeline.event_helpers import Receiver, make_event

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed")

class Subscriber:
    """A paho client subscribed to ``topic``, collecting (topic, payload)."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(5), "subscription not acknowledged"

    def _on_message(self, client, userdata, message) -> None:
        with self.cond:
            self.messages.append((message.topic, message.payload))
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 5.0) -> None:
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= n, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_connected(target: MqttTarget, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not target.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert target.connected


@needs_broker
def test_events_reach_the_broker_under_topic_and_kind(broker):
    sub = Subscriber(broker, "cams/#")
    try:
        target = MqttTarget(f"mqtt://127.0.0.1:{broker}/cams")
        wait_connected(target)
        events = [make_event(0), make_event(1, "zone_enter"), make_event(2, "loiter")]
        fanout = EventFanout([target])
        for e in events:
            fanout.publish(e)
        fanout.close(5.0)
        sub.wait_for(3)
    finally:
        sub.close()
    assert fanout.delivered == {f"mqtt:mqtt://127.0.0.1:{broker}/cams": 3}
    assert [t for t, _ in sub.messages] == ["cams/line_cross", "cams/zone_enter",
                                            "cams/loiter"]
    assert [Event.from_dict(json.loads(p)) for _, p in sub.messages] == events


@needs_broker
def test_events_published_before_the_broker_comes_up_are_delivered(tmp_path):
    """A broker that starts after the run: events wait in the queue, then go."""
    port = free_port()
    target = MqttTarget(f"mqtt://127.0.0.1:{port}/late", queue_size=100)
    fanout = EventFanout([target])
    for i in range(5):
        fanout.publish(make_event(i))
    time.sleep(0.3)
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        sub = Subscriber(port, "late/#")
        # paho retries after 1 s, then 2 s: the close timeout covers both
        fanout.close(8.0)
        sub.wait_for(5)
        sub.close()
    finally:
        proc.terminate()
        proc.wait(5)
    assert list(fanout.delivered.values()) == [5]
    assert list(fanout.dropped.values()) == [0]
    assert len(sub.messages) == 5


def test_broker_down_neither_blocks_publish_nor_close(caplog):
    caplog.set_level(logging.DEBUG)
    url = f"mqtt://cams:t0p-s3cret@127.0.0.1:{free_port()}/cams"
    target = MqttTarget(url, queue_size=10)
    fanout = EventFanout([target])
    start = time.monotonic()
    for i in range(30):
        fanout.publish(make_event(i))
    assert time.monotonic() - start < 0.1
    time.sleep(0.3)  # let paho try to connect and fail
    start = time.monotonic()
    fanout.close(2.0)
    assert time.monotonic() - start < 2.5
    assert list(fanout.dropped.values()) == [30]
    assert list(fanout.dropped) == [f"mqtt:mqtt://127.0.0.1:{url.rsplit(':', 1)[1]}"]
    assert "cannot connect" in caplog.text
    assert "t0p-s3cret" not in caplog.text
    assert "t0p-s3cret" not in target.name


def test_file_run_ends_on_time_with_dead_receivers(tmp_path):
    """The issue's check at the fan-out: a receiver that never answers and a
    broker that is down; every event still reaches the file, and close
    returns within its 2 s with the undelivered ones counted."""
    receiver = Receiver(hang=True)
    try:
        path = tmp_path / "cam1.events.jsonl"
        fanout = EventFanout([
            JsonlEventTarget(path),
            WebhookTarget(receiver.url, timeout_s=2.0, queue_size=1000),
            MqttTarget(f"mqtt://127.0.0.1:{free_port()}/cams"),
        ])
        start = time.monotonic()
        for i in range(200):
            fanout.publish(make_event(i))
        assert time.monotonic() - start < 0.2
        start = time.monotonic()
        fanout.close(2.0)
        assert time.monotonic() - start < 2.5
    finally:
        receiver.stop()
    assert len(path.read_text().splitlines()) == 200
    jsonl, webhook, mqtt = fanout.dropped.values()
    assert (jsonl, webhook, mqtt) == (0, 200, 200)


@pytest.fixture
def tls_broker(tmp_path):
    """A Mosquitto with a TLS listener and a self-signed certificate for
    localhost; yields (port, certificate path)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl program not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    port = free_port()
    conf = tmp_path / "tls.conf"
    # as root, mosquitto would switch to its own user, who cannot read tmp_path
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                    f"certfile {cert}\nkeyfile {key}\n{user}")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        yield port, cert
    finally:
        proc.terminate()
        proc.wait(5)


@needs_broker
def test_mqtts_checks_the_certificate(tls_broker, monkeypatch, caplog):
    port, cert = tls_broker
    # not in the system's CA store: refused
    untrusted = MqttTarget(f"mqtts://localhost:{port}/secure")
    time.sleep(1.0)
    assert not untrusted.connected
    assert "cannot connect" in caplog.text
    untrusted.close()
    # the same broker with its certificate trusted: TLS connects and delivers
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context",
                        lambda *a, **k: real(cafile=str(cert)))
    target = MqttTarget(f"mqtts://localhost:{port}/secure")
    wait_connected(target)
    fanout = EventFanout([target])
    fanout.publish(make_event())
    fanout.close(5.0)
    assert list(fanout.delivered.values()) == [1]
