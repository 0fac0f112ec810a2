"""``run_stream.py batch --ray`` on a real two-node Ray cluster that loses a node.

Both nodes run on 127.0.0.1, each started with ``ray start`` from its own
temporary folder outside the repository; the code reaches the workers through
the job's ``runtime_env`` ``working_dir``. The worker node is killed (SIGKILL to
every process of its tree: raylet, agents, task workers) while it processes a file; the
batch must still finish every file, with complete outputs and the retry shown.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from pipeline.batch import PARTIAL_DIR
from tests.conftest import ROOT, decoded_frames, write_video

pytestmark = pytest.mark.slow

FILES, FRAMES, SIZE = 4, 150, (320, 240)  # HOG: a few seconds per file on one core
START_TIMEOUT_S = 40.0  # per node
JOB_TIMEOUT_S = 80.0


class NodeStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayNode:
    """One ``ray start --block`` in its own session, so a signal to its process
    group reaches every process of that node (and nothing else)."""

    def __init__(self, ray_cli: Path, folder: Path, args: list[str],
                 env: dict[str, str]) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        ports = {  # distinct ports: two nodes (and other clusters) share the host
            "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
            "--metrics-export-port", "--runtime-env-agent-port",
        }
        command = [str(ray_cli), "start", *args, "--block", "--num-cpus=1",
                   "--object-store-memory=200000000", "--node-ip-address=127.0.0.1",
                   f"--temp-dir={folder}", *(f"{p}={free_port()}" for p in ports)]
        self.proc = subprocess.Popen(command, cwd=folder, env=env,
                                     start_new_session=True, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.killed: set[int] = set()  # every process kill() ended
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.output.append(line)
            if "Ray runtime started" in line:
                return
        tail = "".join(self.output[-5:]).strip()
        raise NodeStartError(f"ray start in {self.folder} did not come up: {tail}")

    def kill(self) -> None:
        """SIGKILL every process of the node: its process group and the whole
        process tree under ``ray start``. Ray's task workers rename themselves
        (``ray::process_file``) and may leave the group; one that outlived its
        raylet would finish its file and hand the result back, so nothing dies
        mid-file."""
        tree = descendants(self.proc.pid)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.killed.update(tree)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def descendants(root: int) -> set[int]:
    """``root`` and every process below it, by parent links in /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return tree


def alive(pid: int) -> bool:
    try:
        return ") Z " not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


def processes_of(folder: Path) -> list[int]:
    """Live (not zombie) processes whose command line names ``folder``: every
    process of a node started with ``--temp-dir`` inside it does."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(folder) in (proc / "cmdline").read_bytes().decode(errors="replace") \
                    and ") Z " not in (proc / "stat").read_text():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def attempts_running(out: Path) -> list[Path]:
    """Attempt folders whose file is part-way through (some, not all, frames
    logged), so a node killed now certainly dies with work in hand."""
    running = []
    for folder in (out / PARTIAL_DIR).glob("*/*/*"):
        try:
            logged = sum(len(p.read_bytes().splitlines())
                         for p in folder.glob("*.jsonl"))
        except OSError:  # published (moved) just now
            continue
        if 3 <= logged < FRAMES - 10:
            running.append(folder)
    return running


def test_batch_survives_losing_a_ray_node(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.is_file():
        pytest.skip(f"no ray command beside {sys.executable}")
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(FILES):
        write_video(videos / f"clip{i}.mp4", frames=FRAMES, size=SIZE)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=uuid.uuid4().hex,
               RAY_USAGE_STATS_ENABLED="0")
    # Short folder: Ray's Unix socket paths must stay under ~107 characters.
    base = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    port = free_port()
    nodes: list[RayNode] = []
    driver: subprocess.Popen[str] | None = None
    started = time.monotonic()
    try:
        try:
            nodes.append(RayNode(ray_cli, base / "head",
                                 ["--head", f"--port={port}",
                                  "--include-dashboard=false",
                                  f"--dashboard-port={free_port()}"], env))
            nodes[0].wait_started(START_TIMEOUT_S)
            nodes.append(RayNode(ray_cli, base / "worker",
                                 [f"--address=127.0.0.1:{port}"], env))
            nodes[1].wait_started(START_TIMEOUT_S)
        except NodeStartError as exc:
            pytest.skip(f"Ray cannot start a two-node cluster here: {exc}")
        worker = nodes[1]
        driver = subprocess.Popen(
            [sys.executable, "run_stream.py", "batch", str(videos), "--out", str(out),
             "--ray", f"127.0.0.1:{port}", "--no-progress", "--threads", "1",
             "--retries", "2"],
            cwd=ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Both nodes busy (one CPU each, one CPU per task): one file is running
        # on the worker node right now. Kill that node.
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while len(attempts_running(out)) < 2:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "the two nodes never ran files at once"
            time.sleep(0.05)
        worker.kill()
        stdout, stderr = driver.communicate(timeout=max(1, deadline - time.monotonic()))
        assert driver.returncode == 0, stdout + stderr[-3000:]
        # The code reached the worker node through working_dir, without the
        # training code, tests or models the job does not use.
        shipped = list((base / "worker").glob("session_*/runtime_resources/"
                                              "working_dir_files/*/pipeline/batch.py"))
        assert shipped, "the worker node never received the job's code"
        package = shipped[0].parent.parent
        assert (package / "engines" / "base.py").is_file()
        assert not (package / "tests").exists() and not (package / ".git").exists()
        assert not list(package.glob("models/*.onnx"))
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        for node in reversed(nodes):
            node.kill()
        deadline = time.monotonic() + 10
        killed = set().union(*(node.killed for node in nodes))
        while (left := sorted({*processes_of(base), *filter(alive, killed)})) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:  # a process that escaped its node's group: ours to end
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)
    print(f"{stdout}two-node Ray batch with a lost node: "
          f"{time.monotonic() - started:.1f} s")
    assert not left, f"Ray processes still running after the cluster stopped: {left}"

    with open(out / "summary.csv", newline="") as f:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(f)}
    assert sorted(rows) == [f"clip{i}.mp4" for i in range(FILES)]
    for name, row in rows.items():
        assert row["status"] == "ok", row
        counts = {int(row[k]) for k in ("read", "processed", "written")}
        assert counts == {FRAMES}, row
        stem = Path(name).stem
        assert decoded_frames(out / f"{stem}.mp4") == FRAMES, name
        records = [json.loads(line) for line in
                   (out / f"{stem}.jsonl").read_text().splitlines()]
        assert [r["frame"] for r in records] == list(range(FRAMES)), name
        assert (out / f"{stem}.done.json").is_file()
    retried = [name for name, row in rows.items() if int(row["attempts"]) > 1]
    assert retried, "no file was retried: the worker node died with nothing running"
    assert f"retried after a lost worker or node: {', '.join(sorted(retried))}" \
        in stdout
    assert not (out / PARTIAL_DIR).exists()
