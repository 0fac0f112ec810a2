"""``streamdet serve``: the live view over a pipeline with no source, running
until stopped, and stopping cleanly on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

from tests.conftest import ROOT, free_port


def test_serve_runs_with_no_source_until_ctrl_c(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_stream.py"), "serve", "--model", "hog",
         "--serve", f"127.0.0.1:{port}", "--out", str(tmp_path),
         "--metrics", str(tmp_path / "m.json")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stats = None
        deadline = time.monotonic() + 30
        while stats is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/stats.json", timeout=1) as r:
                    stats = json.load(r)
            except OSError:
                time.sleep(0.2)
        assert stats is not None and stats["sources"] == {}
        time.sleep(1.0)
        assert proc.poll() is None  # no source, and still running
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 5
    assert (tmp_path / "m.json").is_file()
