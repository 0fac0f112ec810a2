"""The live view's HTTP routes, as a FastAPI app served by uvicorn.

``build_app(view)`` declares every route of the server: the live page, the MJPEG
streams, ``/metrics``, ``/stats.json`` and the OpenAPI document. Authentication
(``pipeline.server_auth``) is one dependency given to the app itself, so no route
can be declared without it; FastAPI's own ``/openapi.json`` and ``/docs`` are
switched off and ``/openapi.json`` is served here, behind the same dependency.
Request bodies are bounded by ``BodyLimit`` before any route reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from pipeline.server_auth import (
    AuthError,
    BodyLimit,
    auth_error_response,
    login_response,
    require_auth,
)

log = logging.getLogger(__name__)

BOUNDARY = "streamdet-frame"
NO_STORE = {"Cache-Control": "no-store"}


def build_app(view: Any) -> Any:
    """The ASGI app of ``view`` (a ``pipeline.live_view.LiveView``, which imports
    this module): the FastAPI routes inside the body-size limit."""
    app = FastAPI(title="streamdet", docs_url=None, redoc_url=None,
                  openapi_url=None, dependencies=[Depends(require_auth)])
    app.state.view = view
    app.state.auth = view.auth
    app.add_exception_handler(AuthError, auth_error_response)  # type: ignore[arg-type]

    @app.get("/", response_class=HTMLResponse)
    @app.get("/index.html", response_class=HTMLResponse, include_in_schema=False)
    def live_page() -> HTMLResponse:
        """One MJPEG image per source and the metrics, refreshed each second."""
        return HTMLResponse(view.page(), headers=NO_STORE)

    @app.post("/login")
    def login(request: Request) -> Response:
        """Trade the token (header or form field ``token``) for a cookie."""
        return login_response(request)

    @app.get("/stats.json")
    def stats() -> JSONResponse:
        """``Metrics.summary()`` plus the live FPS per source."""
        return JSONResponse(view.stats(), headers=NO_STORE)

    @app.get("/metrics")
    def metrics() -> Response:
        """The run's metrics in Prometheus text format."""
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return Response(view.prometheus(), media_type=CONTENT_TYPE_LATEST,
                        headers=NO_STORE)

    @app.get("/frame/{source_id}.jpg")
    def frame(source_id: str) -> Response:
        """The latest annotated frame of one source."""
        item = view.latest(source_id)
        if item is None:
            return Response("no frame yet\n", status_code=404, media_type="text/plain")
        return Response(item[1], media_type="image/jpeg", headers=NO_STORE)

    @app.get("/stream/{source_id}.mjpg")
    def stream(source_id: str) -> Response:
        """``multipart/x-mixed-replace`` JPEG parts, one per new frame."""
        if source_id not in view.source_ids():
            return Response("no such source\n", status_code=404,
                            media_type="text/plain")
        return StreamingResponse(
            mjpeg_parts(view, source_id),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers=NO_STORE)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        """The OpenAPI document of these routes."""
        return JSONResponse(app.openapi())

    if view.control is not None:
        view.control.add_routes(app)
    return BodyLimit(app)


def mjpeg_parts(view: Any, source_id: str) -> Iterator[bytes]:
    """Each new JPEG of ``source_id`` as one multipart part, until the view
    closes. Runs in the server's thread pool; it re-checks for shutdown at least
    every ``PART_WAIT_S``, so ``close()`` ends it."""
    sequence = 0
    while not view.closed:
        item = view.wait_newer(source_id, sequence)
        if item is None:
            continue
        sequence, jpeg = item
        yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
               f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
