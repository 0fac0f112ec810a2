"""Live view: each source's annotated stream and the run's metrics in a browser.

``LiveView`` keeps the latest annotated JPEG of every source (published by a
``LiveViewSink`` per source, like any other sink) and serves, with the standard
FastAPI app (``pipeline.server_app``) run by uvicorn in a daemon thread:

- ``/``: a page with one MJPEG image per source and a table of live metrics
  (FPS, per-stage latency, queue depths, drops, losses, reconnects), refreshed
  once a second from ``/stats.json``;
- ``/stream/SOURCE.mjpg``: ``multipart/x-mixed-replace`` JPEG parts, one per new
  frame; ``/frame/SOURCE.jpg``: the latest frame;
- ``/metrics``: the same numbers in Prometheus text format.

It binds to 127.0.0.1 unless told otherwise: the page shows camera images. Any
other address needs a token (``pipeline.server_auth``); see docs/server.md.
"""

from __future__ import annotations

import html
import logging
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.types import Result
from pipeline.metrics import Metrics, prometheus_analytics
from pipeline.server_config import DEFAULT_HOST, ServerAuth, parse_address
from pipeline.sinks import Sink, SinkError

__all__ = ["DEFAULT_HOST", "LiveView", "LiveViewSink", "parse_address"]

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("live_page.html")  # the page's HTML, CSS and JS

DEFAULT_PORT = 8080
FPS_WINDOW_S = 2.0  # the live FPS is over this many seconds
PART_WAIT_S = 1.0  # an MJPEG client re-checks for shutdown this often
START_WAIT_S = 5.0  # uvicorn is up well within this on a loaded machine
STOP_WAIT_S = 1.0  # close() returns within this


class LiveView:
    """Latest frames and the pipeline's ``Metrics``, served over HTTP.

    ``address``: ``HOST:PORT`` (port 0 = any free port; ``url`` tells which).
    ``max_fps``: JPEG encodes per source and second at most (the encode runs on
    the sink thread, so this bounds what the view costs). ``jpeg_quality``: 0-100.
    ``auth``: token and TLS (default: none, which only a loopback bind allows).
    ``control``: the control API's routes (``pipeline.server_api``), if any.
    """

    def __init__(
        self,
        address: str,
        metrics: Metrics,
        max_fps: float = 15.0,
        jpeg_quality: int = 80,
        auth: ServerAuth | None = None,
    ) -> None:
        self.host, self.port = parse_address(address)
        self.auth = auth or ServerAuth()
        self.auth.check(self.host)
        self.control: Any = None
        self.metrics = metrics
        self.max_fps = max_fps
        self.jpeg_quality = jpeg_quality
        self._frames: dict[str, tuple[int, bytes]] = {}  # source -> (sequence, jpeg)
        self._written: dict[str, deque[float]] = {}
        self._last_encode: dict[str, float] = {}
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self.asgi: Any = None  # the served app, once started
        self._server: Any = None  # uvicorn.Server
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.auth.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/"

    # -- frames in -----------------------------------------------------------
    def sink(self, source_id: str) -> LiveViewSink:
        with self._changed:
            self._written.setdefault(source_id, deque(maxlen=10_000))
        return LiveViewSink(self, source_id)

    def publish(self, source_id: str, image: np.ndarray) -> None:
        """Offer the newest annotated frame (H×W×3 uint8 BGR) of ``source_id``."""
        now = time.perf_counter()
        with self._changed:
            self._written.setdefault(source_id, deque(maxlen=10_000)).append(now)
            if now - self._last_encode.get(source_id, 0.0) < 1.0 / self.max_fps:
                return
            self._last_encode[source_id] = now
        ok, data = cv2.imencode(
            ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
        )
        if not ok:
            return
        with self._changed:
            sequence = self._frames.get(source_id, (0, b""))[0] + 1
            self._frames[source_id] = (sequence, data.tobytes())
            self._changed.notify_all()

    def latest(self, source_id: str) -> tuple[int, bytes] | None:
        with self._changed:
            return self._frames.get(source_id)

    def wait_newer(self, source_id: str, sequence: int) -> tuple[int, bytes] | None:
        """The first frame after ``sequence``; None after ``PART_WAIT_S`` or close."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._closed.is_set()
                or self._frames.get(source_id, (0, b""))[0] > sequence,
                timeout=PART_WAIT_S,
            )
            item = self._frames.get(source_id)
            return item if item and item[0] > sequence else None

    def source_ids(self) -> list[str]:
        with self._changed:
            return sorted(self._written)

    def live_fps(self) -> dict[str, float]:
        """Frames written per second over the last ``FPS_WINDOW_S``, per source."""
        now = time.perf_counter()
        with self._changed:
            return {
                sid: round(sum(1 for t in times if now - t <= FPS_WINDOW_S)
                           / FPS_WINDOW_S, 2)
                for sid, times in self._written.items()
            }

    def stats(self) -> dict[str, Any]:
        """``Metrics.summary()`` plus the live FPS, for the page."""
        summary = self.metrics.summary()
        fps = self.live_fps()
        summary["live_fps"] = fps
        summary["live_fps_total"] = round(sum(fps.values()), 2)
        return summary

    def publish_event(self, event: Any) -> None:
        """Send a ``core.events.Event`` to the control API's event streams."""
        if self.control is not None:
            self.control.publish(event)

    def page(self) -> str:
        return page(self.source_ids())

    def prometheus(self) -> bytes:
        return prometheus_text(self)

    # -- server --------------------------------------------------------------
    def start(self) -> LiveView:
        """Bind and serve in a daemon thread; ``SinkError`` when the port is taken."""
        import uvicorn

        from pipeline.server_app import build_app

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            sock = socket.create_server((self.host, self.port), family=family)
        except OSError as exc:
            raise SinkError(
                f"live view: cannot listen on {self.host}:{self.port} "
                f"({exc.strerror or exc})"
            ) from exc
        self.port = sock.getsockname()[1]
        self.asgi = build_app(self)
        config = uvicorn.Config(
            self.asgi, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=STOP_WAIT_S / 2,
            ssl_certfile=self.auth.tls_cert, ssl_keyfile=self.auth.tls_key)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]},
            name="live-view", daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + START_WAIT_S
        while not self._server.started and self._thread.is_alive() and (
                time.monotonic() < deadline):
            time.sleep(0.01)
        if not self._server.started:
            self.close()
            raise SinkError(f"live view: the server on {self.host}:{self.port} "
                            "did not start")
        if self.auth.token is None and self.host != "localhost":
            log.info("live view without a token (loopback only)")
        log.info("live view at %s (metrics: %smetrics)", self.url, self.url)
        return self

    def close(self) -> None:
        """Stop serving within ``STOP_WAIT_S``: open MJPEG streams end first."""
        self._closed.set()
        if self.control is not None:
            self.control.close()
        with self._changed:
            self._changed.notify_all()
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(STOP_WAIT_S)
            self._server = None

    def __enter__(self) -> LiveView:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()


class LiveViewSink(Sink):
    """Publishes each annotated frame of one source to a ``LiveView``."""

    def __init__(self, view: LiveView, source_id: str) -> None:
        self.view = view
        self.source_id = source_id

    def write(self, result: Result) -> None:
        self.view.publish(self.source_id, result.output_image)


def prometheus_text(view: LiveView) -> bytes:
    """The run's metrics in Prometheus text exposition format."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    s = view.stats()

    class Collector:
        def collect(self) -> Any:
            counters = {
                "read": "frames decoded from the source",
                "written": "frames through every sink",
                "processed": "frames through inference",
                "dropped": "live frames dropped to keep latency low",
                "lost": "frames the source missed (outages, gaps in its timestamps)",
                "skipped": "frames skipped by stride",
                "reconnects": "successful reconnects",
            }
            for key, doc in counters.items():
                name = "streamdet_reconnects" if key == "reconnects" else (
                    f"streamdet_frames_{key}")
                fam = CounterMetricFamily(name, doc.capitalize(), labels=["source"])
                for sid, counts in s["sources"].items():
                    fam.add_metric([sid], counts[key])
                yield fam
            fps = GaugeMetricFamily("streamdet_fps", "Frames written per second "
                                    f"over the last {FPS_WINDOW_S:g} s",
                                    labels=["source"])
            for sid, value in s["live_fps"].items():
                fps.add_metric([sid], value)
            yield fps
            latency = GaugeMetricFamily(
                "streamdet_stage_latency_seconds",
                "Per-stage latency per frame (mean, p50, p95 of recent frames)",
                labels=["stage", "stat"])
            for stage, st in [*s["stages_ms"].items(),
                              ("end_to_end", s["end_to_end_ms"])]:
                for stat in ("mean", "p50", "p95"):
                    latency.add_metric([stage, stat], st[stat] / 1000.0)
            yield latency
            depth = GaugeMetricFamily("streamdet_queue_depth",
                                      "Queue depth (mean and max of samples)",
                                      labels=["queue", "stat"])
            for queue_name, d in s["queue_depth"].items():
                depth.add_metric([queue_name, "mean"], d["mean"])
                depth.add_metric([queue_name, "max"], d["max"])
            yield depth
            yield from prometheus_analytics(s.get("analytics", {}))

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())  # type: ignore[arg-type]
    return generate_latest(registry)


def page(source_ids: list[str]) -> str:
    """The live page: one MJPEG image per source, metrics refreshed each second."""
    tiles = "\n".join(
        f'<figure><img src="/stream/{html.escape(sid)}.mjpg" alt="{html.escape(sid)}">'
        f"<figcaption>{html.escape(sid)}</figcaption></figure>"
        for sid in source_ids
    )
    return PAGE.read_text(encoding="utf-8").replace("{tiles}", tiles)
