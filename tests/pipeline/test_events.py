"""The event fan-out and its local targets (JSON Lines, callbacks), the webhook
against a real HTTP receiver on 127.0.0.1, and URL checks. MQTT is in
test_events_mqtt.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time

import pytest

from core.errors import InputError
from core.events import Event
from pipeline.events import (
    CallbackTarget,
    EventFanout,
    EventTarget,
    EventTargetError,
    JsonlEventTarget,
    MqttTarget,
    WebhookTarget,
    open_event_targets,
)
from tests.pipeline.event_helpers import Receiver, make_event


@pytest.fixture
def receiver_factory():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def test_webhook_posts_signed_json(receiver_factory):
    receiver = receiver_factory()
    secret = "s3cret-key"
    events = [make_event(i) for i in range(3)]
    fanout = EventFanout([WebhookTarget(receiver.url, secret=secret)])
    for e in events:
        fanout.publish(e)
    fanout.close(5.0)
    assert fanout.delivered == {f"webhook:{receiver.url}": 3}
    assert fanout.dropped == {f"webhook:{receiver.url}": 0}
    assert len(receiver.requests) == 3
    for (headers, body), event in zip(receiver.requests, events, strict=True):
        assert headers["Content-Type"] == "application/json"
        # what a receiver does: HMAC of the exact bytes, constant-time compare
        expected = "sha256=" + hmac.new(secret.encode(), body,
                                        hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Streamdet-Signature"], expected)
        assert abs(int(headers["X-Streamdet-Timestamp"]) - time.time()) < 60
        assert Event.from_dict(json.loads(body)) == event


def test_webhook_without_secret_sends_no_signature(receiver_factory):
    receiver = receiver_factory()
    with EventFanout([WebhookTarget(receiver.url)]) as fanout:
        fanout.publish(make_event())
    headers, _ = receiver.requests[0]
    assert "X-Streamdet-Signature" not in headers


def test_webhook_retries_5xx_then_delivers_once(receiver_factory):
    receiver = receiver_factory(statuses=[503, 502])
    fanout = EventFanout([WebhookTarget(receiver.url, backoff_s=0.05)])
    event = make_event(7)
    fanout.publish(event)
    fanout.close(5.0)
    assert len(receiver.requests) == 3
    ids = {json.loads(body)["event_id"] for _, body in receiver.requests}
    assert ids == {event.event_id}  # the receiver de-duplicates on it
    assert list(fanout.delivered.values()) == [1]
    assert list(fanout.dropped.values()) == [0]


def test_webhook_gives_up_after_retries(receiver_factory):
    receiver = receiver_factory(statuses=[500] * 10)
    fanout = EventFanout([WebhookTarget(receiver.url, retries=2, backoff_s=0.01)])
    fanout.publish(make_event())
    fanout.close(5.0)
    assert len(receiver.requests) == 3  # the first try and two retries
    assert list(fanout.dropped.values()) == [1]


@pytest.mark.parametrize("status", [400, 401, 404, 301])
def test_webhook_does_not_retry_4xx_or_redirects(receiver_factory, status):
    receiver = receiver_factory(statuses=[status, 200])
    fanout = EventFanout([WebhookTarget(receiver.url, backoff_s=0.01)])
    fanout.publish(make_event())
    fanout.close(5.0)
    assert len(receiver.requests) == 1
    assert list(fanout.dropped.values()) == [1]


def test_hung_receiver_neither_blocks_publish_nor_close(receiver_factory):
    receiver = receiver_factory(hang=True)
    fanout = EventFanout([WebhookTarget(receiver.url, timeout_s=2.0)])
    start = time.monotonic()
    for i in range(50):
        fanout.publish(make_event(i))
    assert time.monotonic() - start < 0.1
    receiver.wait_for(1)
    start = time.monotonic()
    fanout.close(2.0)
    took = time.monotonic() - start
    assert 1.5 < took < 2.5
    assert list(fanout.dropped.values()) == [50]
    assert list(fanout.delivered.values()) == [0]


def test_webhook_url_credentials_become_basic_auth_and_stay_out_of_logs(
    receiver_factory, caplog
):
    receiver = receiver_factory(statuses=[500] * 10)
    url = receiver.url.replace("http://", "http://alice:pa55word@")
    caplog.set_level(logging.DEBUG)
    target = WebhookTarget(url, retries=1, backoff_s=0.01)
    fanout = EventFanout([target])
    fanout.publish(make_event())
    fanout.close(5.0)
    headers, _ = receiver.requests[0]
    assert headers["Authorization"] == "Basic YWxpY2U6cGE1NXdvcmQ="
    assert list(fanout.dropped) == [f"webhook:{receiver.url}"]
    assert "retrying" in caplog.text and "dropped" in caplog.text
    assert "pa55word" not in caplog.text
    assert "pa55word" not in repr(target.__dict__.get("_safe"))


def test_jsonl_target_writes_one_event_per_line(tmp_path):
    path = tmp_path / "cam1.events.jsonl"
    events = [make_event(i, kind) for i, kind in
              enumerate(["line_cross", "zone_enter", "loiter", "zone_exit"])]
    fanout = EventFanout([JsonlEventTarget(path)])
    for e in events:
        fanout.publish(e)
    fanout.close()
    lines = path.read_text().splitlines()
    assert [Event.from_dict(json.loads(line)) for line in lines] == events


def test_jsonl_target_flushes_each_event(tmp_path):
    path = tmp_path / "e.jsonl"
    target = JsonlEventTarget(path)
    target.deliver(make_event(1))
    assert json.loads(path.read_text())["frame"] == 1  # before close
    target.close()


def test_unwritable_jsonl_path_fails_at_construction(tmp_path):
    path = tmp_path / "missing" / "e.jsonl"
    with pytest.raises(EventTargetError, match=re.escape(str(path))):
        JsonlEventTarget(path)


def test_callbacks_get_events_in_order_on_their_own_thread():
    got: list[tuple[int, str]] = []
    fanout = EventFanout([CallbackTarget(lambda e: got.append(
        (e.frame, threading.current_thread().name)))])
    for i in range(20):
        fanout.publish(make_event(i))
    fanout.close()
    assert [f for f, _ in got] == list(range(20))
    assert all(name != threading.current_thread().name for _, name in got)


def test_full_queue_drops_counts_and_logs_once(caplog):
    gate = threading.Event()
    slow = CallbackTarget(lambda e: gate.wait(5), queue_size=2)
    fast: list[Event] = []
    fanout = EventFanout([slow, CallbackTarget(fast.append)])
    start = time.monotonic()
    for i in range(20):
        fanout.publish(make_event(i))
    assert time.monotonic() - start < 0.1  # a stuck callback never blocks publish
    gate.set()
    fanout.close(5.0)
    slow_name, fast_name = list(fanout.dropped)
    assert 17 <= fanout.dropped[slow_name] <= 18  # two queued, at most one in hand
    assert fanout.dropped[slow_name] + fanout.delivered[slow_name] == 20
    assert fanout.dropped[fast_name] == 0 and len(fast) == 20
    drop_logs = [r for r in caplog.records
                 if r.levelno == logging.WARNING and "dropped" in r.getMessage()]
    assert len(drop_logs) == 1 and slow_name in drop_logs[0].getMessage()


def test_failing_callback_drops_that_event_only(caplog):
    def picky(e: Event) -> None:
        if e.frame % 2:
            raise RuntimeError("odd frame")

    fanout = EventFanout([CallbackTarget(picky), CallbackTarget(picky)])
    for i in range(10):
        fanout.publish(make_event(i))
    fanout.close()
    # two targets with one name still count apart
    assert fanout.dropped == {"callback:test_failing_callback_drops_that_event_only"
                              ".<locals>.picky": 5,
                              "callback:test_failing_callback_drops_that_event_only"
                              ".<locals>.picky#2": 5}
    assert sum(fanout.delivered.values()) == 10
    assert "odd frame" in caplog.text


def test_publish_after_close_is_dropped():
    got: list[Event] = []
    fanout = EventFanout([CallbackTarget(got.append)])
    fanout.close()
    fanout.publish(make_event())
    assert got == [] and list(fanout.dropped.values()) == [1]


class Flaky(EventTarget):
    """Fails its first ``fails`` tries of every event, then succeeds."""

    name = "flaky"

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.tries = 0
        self.delivered: list[Event] = []

    def deliver(self, event: Event) -> None:
        self.tries += 1
        if self.tries <= self.fails:
            raise ConnectionError("not yet")
        self.delivered.append(event)

    def retry_delay(self, attempt: int, error: Exception) -> float | None:
        return 0.01


def test_retries_follow_the_targets_policy():
    target = Flaky(fails=3)
    fanout = EventFanout([target])
    fanout.publish(make_event())
    fanout.close()
    assert target.tries == 4 and len(target.delivered) == 1
    assert fanout.dropped == {"flaky": 0}


def test_close_cuts_retry_waits_short():
    target = Flaky(fails=10**9)
    fanout = EventFanout([target])
    for i in range(5):
        fanout.publish(make_event(i))
    start = time.monotonic()
    fanout.close(0.5)
    assert time.monotonic() - start < 0.8
    assert fanout.dropped == {"flaky": 5}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "ftp://host/x is not supported"),
        ("file:///etc/passwd", "is not supported; use http://, https://"),
        ("mqtt://broker/t", "is not supported"),
        ("http://", "has no host"),
        ("https://host:99999/x", "has an invalid port"),
        ("", "URL is empty"),
        ("http://host/a\nb", "control characters"),
        ("http://host/a b", "spaces or control characters"),
    ],
)
def test_webhook_url_errors(url, message):
    with pytest.raises(InputError, match=message):
        WebhookTarget(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://broker/t", "is not supported; use mqtt://, mqtts://"),
        ("mqtt:///topic", "has no host"),
        ("mqtt://broker:0x50/t", "has an invalid port"),
        ("mqtt://broker/cams/+/events", "not a topic to publish to"),
        ("mqtt://broker/cams/%23", "not a topic to publish to"),
        ("mqtt://broker?x=1", "not a topic to publish to"),
    ],
)
def test_mqtt_url_errors(url, message):
    with pytest.raises(InputError, match=message):
        MqttTarget(url)


@pytest.mark.parametrize(
    "url",
    ["ftp://bob:hunter22@host/x", "https://bob:hunter22@host:99999/x",
     "mqtt://bob:hunter22@broker/a/#", "gopher://bob:hunter22@host"],
)
def test_url_errors_never_show_the_password(url):
    target = MqttTarget if url.startswith("mqtt") else WebhookTarget
    with pytest.raises(InputError) as info:
        target(url)
    assert "hunter22" not in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_s": 0}, "timeout_s must be > 0"),
        ({"retries": -1}, "retries must be >= 0"),
        ({"queue_size": 0}, "queue_size must be >= 1"),
        ({"secret": ""}, "secret is empty"),
    ],
)
def test_webhook_parameter_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        WebhookTarget("http://127.0.0.1/x", **kwargs)


def test_open_event_targets_builds_what_was_asked(tmp_path, receiver_factory):
    receiver = receiver_factory()
    targets = open_event_targets(jsonl=tmp_path / "e.jsonl", webhook=receiver.url,
                                 webhook_secret="k", callbacks=[print])
    assert [type(t) for t in targets] == [JsonlEventTarget, WebhookTarget,
                                          CallbackTarget]
    assert open_event_targets() == []
    for t in targets:
        t.close()


def test_open_event_targets_rejects_and_cleans_up(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="secret was given without a webhook"):
        open_event_targets(webhook_secret="k")
    closed: list[str] = []
    monkeypatch.setattr(JsonlEventTarget, "close",
                        lambda self: closed.append(self.name))
    with pytest.raises(InputError, match="ftp://h"):
        open_event_targets(jsonl=tmp_path / "e.jsonl", webhook="ftp://h")
    assert closed == [f"jsonl:{tmp_path / 'e.jsonl'}"]  # opened first, closed again
