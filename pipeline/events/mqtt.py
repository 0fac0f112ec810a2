"""Events to an MQTT broker through ``paho-mqtt`` 2.x.

paho's own network thread (``loop_start``) connects, keeps the connection alive
and reconnects with a growing delay, so nothing here waits on the network at
construction: a broker that is down when the run starts is reached when it comes
up. Events wait in the fan-out's bounded queue while it is down.
"""

from __future__ import annotations

import collections
import logging
import ssl
import threading
import time
import uuid
from urllib.parse import unquote

from core.events import Event
from pipeline.events.fanout import EventTarget, EventTargetError
from pipeline.events.urls import check_url

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
DEFAULT_TOPIC = "streamdet"
# Seconds between reconnect attempts: first and largest (paho doubles it).
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
# How long the delivery thread waits before it looks again whether the broker
# is back, first and largest (doubled per try).
WAIT_MIN_S, WAIT_MAX_S = 0.1, 2.0
# Messages handed to paho but not yet acknowledged, at most; beyond that the
# broker is not keeping up and events wait in the fan-out's queue instead.
MAX_UNACKED = 1000


class BrokerUnavailable(ConnectionError):
    """Not connected to the broker (or it is not keeping up): try again later."""


class MqttTarget(EventTarget):
    """Publishes ``Event.to_json()`` to ``TOPIC/EVENT_KIND`` (e.g.
    ``streamdet/line_cross``), so a subscriber takes everything with
    ``TOPIC/#`` or one kind by name. Not retained.

    ``url``: ``mqtt://[user:pass@]host[:port]/topic`` or ``mqtts://`` (TLS,
    checked against the system's CA store); ports default to 1883 and 8883; an
    empty topic is ``streamdet``. ``username``/``password`` may come here
    instead of the URL (a config file's separate keys). ``qos`` 1 (the default)
    is at least once: a receiver may see an ``event_id`` twice after a
    reconnect. The password is given only to paho, never to a log or error.
    """

    def __init__(
        self,
        url: str,
        qos: int = 1,
        queue_size: int = 1000,
        client_id: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
    ) -> None:
        checked = check_url(url, ("mqtt", "mqtts"), "MQTT")
        if qos not in (0, 1, 2):
            raise EventTargetError(f"MQTT qos must be 0, 1 or 2, got {qos!r}")
        if queue_size < 1:
            raise EventTargetError(f"MQTT queue_size must be >= 1, got {queue_size}")
        topic = unquote(checked.path).strip("/") or DEFAULT_TOPIC
        # "#" would be cut off as a URL fragment and "?" as a query: refuse
        # them rather than publish to a topic the user did not write.
        wildcard = "#" in url or bool(checked.query) or any(c in topic for c in "+#")
        if wildcard or "\x00" in topic or len(topic.encode()) > 60_000:
            raise EventTargetError(
                f"MQTT topic in {checked.safe} is not a topic to publish to "
                "(no '+', '#', '?' or NUL)"
            )
        try:
            import paho.mqtt.client as paho
        except ImportError:
            raise EventTargetError(
                f"MQTT target {checked.safe} needs paho-mqtt: "
                "pip install 'paho-mqtt>=2'"
            ) from None
        self._paho = paho
        self.topic = topic
        self.qos = qos
        self.queue_size = int(queue_size)
        self.host = checked.host
        self.port = checked.port or DEFAULT_PORTS[checked.scheme]
        self._safe = checked.safe
        self._connected = threading.Event()
        self._warned = False
        self._unacked: collections.deque = collections.deque()

        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"streamdet-{uuid.uuid4().hex[:12]}",
            protocol=paho.MQTTv311,
        )
        username = checked.username if checked.username is not None else username
        password = checked.password if checked.password is not None else password
        if username is not None:
            client.username_pw_set(username, password)
        if checked.scheme == "mqtts":
            client.tls_set_context(ssl.create_default_context())
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.connect_async(self.host, self.port, keepalive=keepalive_s)
        client.loop_start()
        self._client = client

    @property
    def name(self) -> str:
        return f"mqtt:{self._safe}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # paho's network thread calls these three.
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._warn(f"the broker refused the connection ({reason_code})")
            return
        log.info("MQTT connected to %s", self._safe)
        self._warned = False  # the next outage gets its one warning too
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            log.warning("MQTT lost %s (%s); reconnecting", self._safe, reason_code)
        self._connected.clear()

    def _on_connect_fail(self, client, userdata) -> None:
        self._warn("cannot connect; retrying in the background")

    def _warn(self, what: str) -> None:
        if not self._warned:  # the reconnect loop would repeat it every try
            self._warned = True
            log.warning("MQTT %s: %s", self._safe, what)

    def deliver(self, event: Event) -> None:
        if not self._connected.is_set():
            raise BrokerUnavailable(f"not connected to {self._safe}")
        self._forget_acked()
        if len(self._unacked) >= MAX_UNACKED:
            raise BrokerUnavailable(f"{self._safe} is not acknowledging")
        info = self._client.publish(
            f"{self.topic}/{event.event}", event.to_json().encode("utf-8"), self.qos
        )
        if info.rc != self._paho.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(
                f"publish to {self._safe}: {self._paho.error_string(info.rc)}"
            )
        self._unacked.append(info)

    def retry_delay(self, attempt: int, error: Exception) -> float | None:
        if not isinstance(error, BrokerUnavailable):
            return None
        # No limit on tries: the bounded queue limits what waits for the broker.
        return min(WAIT_MAX_S, WAIT_MIN_S * 2 ** min(attempt - 1, 10))

    def _forget_acked(self) -> None:
        while self._unacked and self._unacked[0].is_published():
            self._unacked.popleft()

    def flush(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self._unacked:
            self._forget_acked()
            if not self._unacked or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        return len(self._unacked)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
