"""The control API on the live view's server: sources join and leave a running
pipeline over HTTP, and its events stream out as server-sent events.

- ``GET /api/sources``: each source's name, redacted URL, status and counts;
- ``POST /api/sources``: one ``sources:`` entry of the camera file (JSON),
  checked by ``parse_source_entry`` as ``--config`` checks it; 201 and its name;
- ``PATCH /api/sources/NAME``: the same entry replaces the source (remove, add);
- ``DELETE /api/sources/NAME``: its outputs finalised, the others untouched;
- ``GET /api/events``: ``core.events.Event`` as server-sent events.

What arrives here is hostile until checked: only network URLs
(``pipeline.sources.URL_SCHEMES``) are accepted, so no request makes the process
read a local file; a request that fails changes nothing; credentials in a URL
never appear in an answer. Authentication is the app's (``pipeline.server_auth``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from core.events import Event
from pipeline.camconfig import SourceEntry, parse_source_entry
from pipeline.sources import URL_SCHEMES, SourceConfig, redact_url

log = logging.getLogger(__name__)

MAX_SUBSCRIBERS = 16  # event streams open at once; each holds a server thread
SUBSCRIBER_QUEUE = 256  # events buffered per slow subscriber before dropping
HEARTBEAT_S = 1.0  # an idle event stream sends a comment this often


class ApiError(Exception):
    """A refused request: HTTP ``status`` and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ControlAPI:
    """Adds and removes sources of ``pipeline`` (a ``pipeline.runner.Pipeline``)
    and fans events out to the ``/api/events`` subscribers. ``source_config``:
    how sources added over the API read (the run's ``SourceConfig``).
    ``build_sources``: ``pipeline.build.build_sources``, given by the builder
    (which imports this module)."""

    def __init__(self, pipeline: Any, source_config: SourceConfig,
                 build_sources: Callable[..., list[Any]]) -> None:
        self.pipeline = pipeline
        self.source_config = source_config
        self.build_sources = build_sources
        self._subscribers: list[queue.Queue[Event | None]] = []
        self._lock = threading.Lock()  # one change of the source set at a time
        self._sub_lock = threading.Lock()
        self._closed = threading.Event()

    # -- events --------------------------------------------------------------
    def publish(self, event: Event) -> None:
        """Send ``event`` to every ``/api/events`` subscriber; a subscriber
        that does not keep up loses events rather than slowing the run."""
        with self._sub_lock:
            subscribers = list(self._subscribers)
        for q in subscribers:
            try:
                q.put_nowait(event)
            except queue.Full:
                log.debug("event stream subscriber is behind: event dropped")

    def close(self) -> None:
        """End every event stream now (None wakes each one)."""
        self._closed.set()
        with self._sub_lock:
            subscribers = list(self._subscribers)
        for q in subscribers:
            try:
                q.put_nowait(None)
            except queue.Full:
                pass  # it re-checks within HEARTBEAT_S

    def _stream(self, q: queue.Queue[Event | None]) -> Iterator[bytes]:
        try:
            yield b": streamdet events\n\n"
            while not self._closed.is_set():
                try:
                    event = q.get(timeout=HEARTBEAT_S)
                except queue.Empty:
                    yield b": keep-alive\n\n"
                    continue
                if event is None:
                    return
                yield (f"id: {event.event_id}\nevent: {event.event}\n"
                       f"data: {event.to_json()}\n\n").encode()
        finally:
            with self._sub_lock:
                if q in self._subscribers:
                    self._subscribers.remove(q)

    # -- sources -------------------------------------------------------------
    def listing(self) -> list[dict[str, Any]]:
        out = []
        sources = self.pipeline.current_sources()
        for source in sources:
            counts = dataclasses.asdict(self.pipeline.metrics.source(source.source_id))
            out.append({"name": source.source_id, "url": redact_url(source.spec),
                        "state": counts.pop("status"), "counts": counts})
        return out

    def names(self) -> set[str]:
        return {s.source_id for s in self.pipeline.current_sources()}

    def add(self, data: object, replace: str | None = None) -> str:
        """Check ``data`` as one camera entry and add it (``replace``: the name
        it takes over). Raises ``ApiError``; a failed request changes nothing
        before the old source is removed."""
        entry = checked_entry(data)
        if replace is not None and entry.name != replace:
            raise ApiError(400, f"the entry's name {entry.name!r} is not {replace!r}")
        with self._lock:
            names = self.names()
            if replace is not None and replace not in names:
                raise ApiError(404, f"no source {replace!r}")
            taken = names - {replace} if replace else names
            try:
                (source,) = self.build_sources([entry], self.source_config, taken=taken)
            except ValueError as exc:
                raise ApiError(409, scrub(str(exc), entry.url)) from None
            if replace is not None:
                self.remove(replace, locked=True)
            try:
                self.pipeline.add_source(source)
            except (ValueError, RuntimeError, OSError) as exc:
                raise ApiError(422, f"source {entry.name!r} cannot be opened: "
                                    f"{scrub(str(exc), entry.url)}") from None
        log.info("source %s added over the API (%s)", entry.name,
                 redact_url(entry.url))
        self.publish(Event(event="source_added", source=entry.name))
        return entry.name

    def remove(self, name: str, locked: bool = False) -> None:
        if not locked:
            with self._lock:
                self.remove(name, locked=True)
            return
        if name not in self.names():
            raise ApiError(404, f"no source {name!r}")
        self.pipeline.remove_source(name)
        log.info("source %s removed over the API", name)
        self.publish(Event(event="source_removed", source=name))

    # -- routes --------------------------------------------------------------
    def add_routes(self, app: FastAPI) -> None:
        api = self
        app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]

        @app.get("/api/sources")
        def list_sources() -> JSONResponse:
            """Each source's name, redacted URL, state and frame counts."""
            return JSONResponse({"sources": api.listing()})

        @app.post("/api/sources", status_code=201)
        async def add_source(request: Request) -> JSONResponse:
            """Add one camera entry (JSON: ``name``, ``url``, ...)."""
            data = json_body(await request.body())
            name = await run_in_threadpool(api.add, data)
            return JSONResponse({"name": name}, status_code=201)

        @app.patch("/api/sources/{name}")
        async def replace_source(name: str, request: Request) -> JSONResponse:
            """Replace a source by a new entry of the same name."""
            data = json_body(await request.body())
            await run_in_threadpool(api.add, data, name)
            return JSONResponse({"name": name})

        @app.delete("/api/sources/{name}", status_code=204)
        async def delete_source(name: str) -> Response:
            """Remove a source; its outputs are finalised."""
            await run_in_threadpool(api.remove, name)
            return Response(status_code=204)

        @app.get("/api/events")
        def events() -> Response:
            """Server-sent events: one ``core.events.Event`` per message."""
            q: queue.Queue[Event | None] = queue.Queue(SUBSCRIBER_QUEUE)
            with api._sub_lock:
                if len(api._subscribers) >= MAX_SUBSCRIBERS:
                    raise ApiError(429, "too many event streams open")
                api._subscribers.append(q)
            return StreamingResponse(api._stream(q), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store"})


def json_body(body: bytes) -> object:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ApiError(400, f"the body is not JSON ({type(exc).__name__})") from None


def checked_entry(data: object) -> SourceEntry:
    """One camera entry from a request, refused (400) unless its URL is a
    network URL: a request must not make the process read a local file."""
    try:
        entry = parse_source_entry(data)
    except ValueError as exc:
        url = data.get("url") if isinstance(data, dict) else None
        raise ApiError(400, scrub(str(exc), url if isinstance(url, str) else "")
                       ) from None
    if not entry.url.lower().startswith(URL_SCHEMES):
        raise ApiError(400, f"source {entry.name!r}: only network URLs "
                            f"({', '.join(s[:-3] for s in URL_SCHEMES)}) may be "
                            "added over the API")
    if entry.analytics.enabled or entry.clips is not None or (
            isinstance(data, dict) and "record" in data):
        raise ApiError(400, f"source {entry.name!r}: lines, zones, clips and "
                            "record are not taken over the API")
    return entry


def scrub(message: str, url: str) -> str:
    """``message`` without the password or user of ``url``."""
    if url:
        message = message.replace(url, redact_url(url))
        parts = urlsplit(url)
        for secret in (parts.password, parts.username):
            if secret:
                message = message.replace(secret, "***")
    return message


async def _api_error(request: Request, exc: ApiError) -> Response:
    return JSONResponse({"detail": exc.reason}, status_code=exc.status)
