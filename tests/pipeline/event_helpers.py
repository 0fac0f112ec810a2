"""A local HTTP receiver and an event factory for the event target tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from core.events import Event


def make_event(i: int = 0, kind: str = "line_cross") -> Event:
    extra = {"line": "door", "direction": "in"} if kind == "line_cross" else {}
    if kind in ("zone_enter", "zone_exit", "loiter"):
        extra = {"zone": "desk"}
    return Event(event=kind, source="cam1", frame=i, timestamp=i / 10, track_id=i,
                 class_id=0, **extra)


class Receiver:
    """An HTTP receiver on 127.0.0.1 that records every POST and answers with
    the next of ``statuses`` (200 once they run out); ``hang`` never answers."""

    def __init__(self, statuses: list[int] = (), hang: bool = False) -> None:
        self.statuses = list(statuses)
        self.hang = hang
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.release = threading.Event()
        self.got = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.got:
                    receiver.requests.append((dict(self.headers), body))
                    receiver.got.notify_all()
                if receiver.hang:
                    receiver.release.wait(30)
                    return
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, n: int, timeout: float = 5.0) -> None:
        with self.got:
            self.got.wait_for(lambda: len(self.requests) >= n, timeout)

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
