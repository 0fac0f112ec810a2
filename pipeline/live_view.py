"""Live view: each source's annotated stream and the run's metrics in a browser.

``LiveView`` keeps the latest annotated JPEG of every source (published by a
``LiveViewSink`` per source, like any other sink) and serves, with the standard
library's threaded HTTP server:

- ``/``: a page with one MJPEG image per source and a table of live metrics
  (FPS, per-stage latency, queue depths, drops, losses, reconnects), refreshed
  once a second from ``/stats.json``;
- ``/stream/SOURCE.mjpg``: ``multipart/x-mixed-replace`` JPEG parts, one per new
  frame; ``/frame/SOURCE.jpg``: the latest frame;
- ``/metrics``: the same numbers in Prometheus text format.

It binds to 127.0.0.1 unless told otherwise: the page shows camera images.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.types import Result
from pipeline.metrics import Metrics, prometheus_analytics
from pipeline.sinks import Sink, SinkError

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("live_page.html")  # the page's HTML, CSS and JS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
FPS_WINDOW_S = 2.0  # the live FPS is over this many seconds
PART_WAIT_S = 1.0  # an MJPEG client re-checks for shutdown this often
BOUNDARY = "streamdet-frame"


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` → (host, port); host defaults to
    127.0.0.1. Raises ``SinkError`` (a ``ValueError``) naming the value."""
    host, sep, port_text = address.strip().rpartition(":")
    if not sep:
        host, port_text = "", address.strip()
    host = host.strip("[]") or DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        raise SinkError(
            f"--serve expects HOST:PORT (e.g. 127.0.0.1:8080), got {address!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise SinkError(f"--serve port must be in 0..65535, got {port}")
    return host, port


class LiveView:
    """Latest frames and the pipeline's ``Metrics``, served over HTTP.

    ``address``: ``HOST:PORT`` (port 0 = any free port; ``url`` tells which).
    ``max_fps``: JPEG encodes per source and second at most (the encode runs on
    the sink thread, so this bounds what the view costs). ``jpeg_quality``: 0-100.
    """

    def __init__(
        self,
        address: str,
        metrics: Metrics,
        max_fps: float = 15.0,
        jpeg_quality: int = 80,
    ) -> None:
        self.host, self.port = parse_address(address)
        self.metrics = metrics
        self.max_fps = max_fps
        self.jpeg_quality = jpeg_quality
        self._frames: dict[str, tuple[int, bytes]] = {}  # source -> (sequence, jpeg)
        self._written: dict[str, deque[float]] = {}
        self._last_encode: dict[str, float] = {}
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

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

    # -- server --------------------------------------------------------------
    def start(self) -> LiveView:
        """Bind and serve in a daemon thread; ``SinkError`` when the port is taken."""
        view = self

        class Handler(_Handler):
            live_view = view

        try:
            self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            raise SinkError(
                f"live view: cannot listen on {self.host}:{self.port} "
                f"({exc.strerror or exc})"
            ) from exc
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name="live-view", daemon=True,
        )
        self._thread.start()
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("live view listens on %s: anyone who can reach it sees the "
                        "video", self.host)
        log.info("live view at %s (metrics: %smetrics)", self.url, self.url)
        return self

    def close(self) -> None:
        self._closed.set()
        with self._changed:
            self._changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
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


class _Handler(BaseHTTPRequestHandler):
    live_view: LiveView
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        view = self.live_view
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8",
                       page(view.source_ids()).encode())
        elif path == "/stats.json":
            self._send(HTTPStatus.OK, "application/json",
                       json.dumps(view.stats()).encode())
        elif path == "/metrics":
            from prometheus_client.exposition import CONTENT_TYPE_LATEST

            self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, prometheus_text(view))
        elif path.startswith("/frame/") and path.endswith(".jpg"):
            item = view.latest(path[len("/frame/"):-len(".jpg")])
            if item is None:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"no frame yet\n")
            else:
                self._send(HTTPStatus.OK, "image/jpeg", item[1])
        elif path.startswith("/stream/") and path.endswith(".mjpg"):
            self._stream(path[len("/stream/"):-len(".mjpg")])
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, source_id: str) -> None:
        view = self.live_view
        if source_id not in view.source_ids():
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"no such source\n")
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type",
                         f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sequence = 0
        try:
            while not view.closed:
                item = view.wait_newer(source_id, sequence)
                if item is None:
                    continue
                sequence, jpeg = item
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                    + jpeg + b"\r\n"
                )
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the viewer went away

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("live view: " + format, *args)


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
