"""The one place event targets are built from what the user gave (the CLI's
flags, a config file's ``events:`` section, the Python API's callbacks)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.events import Event
from pipeline.events.fanout import EventFanout, EventTarget
from pipeline.events.local import CallbackTarget, JsonlEventTarget
from pipeline.events.mqtt import MqttTarget
from pipeline.events.urls import check_url
from pipeline.events.webhook import WebhookTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventsConfig:
    """Where a run's events go besides each source's ``SOURCE.events.jsonl``:
    ``webhook`` (an http(s) URL; signed with ``webhook_secret`` when set) and
    ``mqtt`` (``mqtt[s]://[user:pass@]host[:port]/topic``). The URLs are
    checked here, at construction; none of the three is shown in a repr, since
    they may carry credentials."""

    webhook: str = field(default="", repr=False)
    webhook_secret: str = field(default="", repr=False)
    mqtt: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.webhook_secret and not self.webhook:
            raise ValueError("a webhook secret was given without a webhook URL")
        if self.webhook:
            check_url(self.webhook, ("http", "https"), "webhook")
        if self.mqtt:
            check_url(self.mqtt, ("mqtt", "mqtts"), "MQTT")

    def open(self) -> EventFanout | None:
        """The run's shared fan-out to the network targets (None: none asked)."""
        if not (self.webhook or self.mqtt):
            return None
        return EventFanout(open_event_targets(
            webhook=self.webhook or None, webhook_secret=self.webhook_secret or None,
            mqtt=self.mqtt or None))


def open_event_targets(
    *,
    jsonl: Path | None = None,
    webhook: str | None = None,
    webhook_secret: str | None = None,
    mqtt: str | None = None,
    callbacks: Sequence[Callable[[Event], object]] = (),
) -> list[EventTarget]:
    """The targets asked for, each checked and opened now: a bad URL or an
    unwritable file raises an ``EventTargetError`` (an ``InputError``) naming
    it before the run starts. A webhook secret without a webhook is a mistake,
    not something to ignore. What was opened before an error is closed again."""
    if webhook_secret is not None and webhook is None:
        raise ValueError("a webhook secret was given without a webhook URL")
    targets: list[EventTarget] = []
    try:
        if jsonl is not None:
            targets.append(JsonlEventTarget(jsonl))
        if webhook is not None:
            targets.append(WebhookTarget(webhook, secret=webhook_secret))
        if mqtt is not None:
            targets.append(MqttTarget(mqtt))
        targets.extend(CallbackTarget(fn) for fn in callbacks)
    except BaseException:
        for target in targets:
            target.close()
        raise
    for target in targets:
        log.info("events to %s", target.name)
    return targets
