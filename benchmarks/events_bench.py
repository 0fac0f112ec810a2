"""What the event fan-out costs the pipeline and how fast each target delivers.

    python -m benchmarks.events_bench [--events 2000]

Everything on 127.0.0.1: a JSON Lines file, a webhook to a standard-library
HTTP receiver (signed), and MQTT (QoS 1) to a Mosquitto started here (skipped
without the mosquitto program). Printed: the caller's cost per ``publish`` with
all targets attached, each target's delivery rate (events/s until its last
event was delivered), and the time ``close(2.0)`` takes with a receiver that
never answers and a broker that is down.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from core.events import Event
from pipeline.events import EventFanout, JsonlEventTarget, MqttTarget, WebhookTarget


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def receiver(hang: bool) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            if hang:
                time.sleep(30)
                return
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def events(n: int) -> list[Event]:
    return [Event(event="line_cross", source="cam1", frame=i, timestamp=i / 30,
                  track_id=i, class_id=0, line="door", direction="in")
            for i in range(n)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args(argv)
    n = args.events
    tmp = Path(tempfile.mkdtemp())
    broker = None
    mosquitto = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
    http = receiver(hang=False)
    targets = [JsonlEventTarget(tmp / "e.jsonl"),
               WebhookTarget(f"http://127.0.0.1:{http.server_address[1]}/h",
                             secret="k", queue_size=n)]
    if mosquitto:
        port = free_port()
        conf = tmp / "m.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        broker = subprocess.Popen([mosquitto, "-c", str(conf)],
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        mqtt = MqttTarget(f"mqtt://127.0.0.1:{port}/bench", queue_size=n)
        deadline = time.monotonic() + 5
        while not mqtt.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        targets.append(mqtt)
    try:
        fanout = EventFanout(targets)
        batch = events(n)
        start = time.perf_counter()
        for e in batch:
            fanout.publish(e)
        publish_us = (time.perf_counter() - start) / n * 1e6
        done: dict[str, float] = {}
        while len(done) < len(targets) and time.perf_counter() - start < 60:
            for name, count in fanout.delivered.items():
                if count >= n and name not in done:
                    done[name] = time.perf_counter() - start
            time.sleep(0.002)
        fanout.close(10.0)
        print(f"{n} events, {len(targets)} targets, on 127.0.0.1")
        print(f"publish: {publish_us:.1f} us per event (caller's thread)")
        for name in fanout.delivered:
            took = done.get(name)
            rate = f"{n / took:8.0f} events/s" if took else "not finished"
            print(f"  {name.split(':')[0]:8s} {rate}  dropped {fanout.dropped[name]}")
        if not mosquitto:
            print("  mqtt     skipped: mosquitto not installed")
    finally:
        http.shutdown()
        if broker is not None:
            broker.terminate()
            broker.wait(5)

    hung = receiver(hang=True)
    dead = MqttTarget(f"mqtt://127.0.0.1:{free_port()}/bench")
    fanout = EventFanout([
        JsonlEventTarget(tmp / "f.jsonl"),
        WebhookTarget(f"http://127.0.0.1:{hung.server_address[1]}/h"),
        dead,
    ])
    for e in events(200):
        fanout.publish(e)
    start = time.perf_counter()
    fanout.close(2.0)
    took = time.perf_counter() - start
    lines = len((tmp / "f.jsonl").read_text().splitlines())
    print(f"close(2.0), receiver never answers, broker down: {took:.2f} s; "
          f"file {lines}/200 events; dropped {fanout.dropped}")
    hung.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
