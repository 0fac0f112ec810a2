"""Where events go: one fan-out to a JSON Lines file, a webhook, an MQTT
broker and Python callbacks, each target on its own thread and bounded queue.

    targets = open_event_targets(jsonl=out / "cam1.events.jsonl",
                                 webhook="https://hooks.example/streamdet",
                                 webhook_secret=secret)
    fanout = EventFanout(targets)
    for event in events:
        fanout.publish(event)        # never blocks
    fanout.close(timeout_s=2.0)      # delivers what it can, counts the rest
    fanout.dropped                   # {target name: events not delivered}
"""

from __future__ import annotations

from pipeline.events.build import EventsConfig, open_event_targets
from pipeline.events.fanout import EventFanout, EventTarget, EventTargetError
from pipeline.events.local import CallbackTarget, JsonlEventTarget
from pipeline.events.mqtt import MqttTarget
from pipeline.events.webhook import WebhookTarget, sign

__all__ = [
    "CallbackTarget",
    "EventFanout",
    "EventTarget",
    "EventTargetError",
    "EventsConfig",
    "JsonlEventTarget",
    "MqttTarget",
    "WebhookTarget",
    "open_event_targets",
    "sign",
]
