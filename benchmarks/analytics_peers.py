"""Peers fed the same tracks as ours, each in its own interpreter (supervision and
Ultralytics pull OpenCV's main wheel, which would replace ours): the tracks go
to a file, ``analytics_peer_worker.py`` runs them through the peer's line and
zone objects there, and the counts and occupancy come back here to be scored
against the same truth."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.types import Detections

WORKER = Path(__file__).resolve().parent / "analytics_peer_worker.py"
DIRECTIONS = ("in", "out")


@dataclass
class PeerResult:
    """One peer on one run: ``counts`` {(line, class, direction): n} with our
    line names and direction words, ``occupancy`` (frames, zones) objects inside,
    ``cpu_s`` seconds spent in the peer's objects."""

    counts: dict[tuple[str, int, str], int]
    occupancy: np.ndarray
    cpu_s: float


def export(path: Path, runs: dict[str, list[Detections]],
           lines: dict[str, np.ndarray], zones: dict[str, np.ndarray],
           untracked: dict[str, float] | None = None) -> None:
    """Write ``runs`` {name: tracked frames} and the geometry for the worker;
    ``untracked`` {name: fps} marks runs of detections for the peer's tracker."""
    arrays: dict[str, np.ndarray] = {
        "lines": np.stack(list(lines.values())),
        "runs": np.array(list(runs)),
    }
    for k, poly in enumerate(zones.values()):
        arrays[f"zone_{k}"] = poly
    for name, frames in runs.items():
        arrays[f"{name}_frame"] = np.concatenate(
            [np.full(len(d), i) for i, d in enumerate(frames)]
        )
        arrays[f"{name}_xyxy"] = np.concatenate([d.xyxy for d in frames])
        arrays[f"{name}_cls"] = np.concatenate([d.class_ids for d in frames])
        arrays[f"{name}_tid"] = np.concatenate([d.track_ids for d in frames])
        arrays[f"{name}_score"] = np.concatenate([d.scores for d in frames])
        arrays[f"{name}_n"] = np.array(len(frames))
        if untracked and name in untracked:
            arrays[f"{name}_fps"] = np.array(untracked[name])
    np.savez(path, **arrays)


def run_peer(peer: str, python: str, runs: dict[str, list[Detections]],
             lines: dict[str, np.ndarray], zones: dict[str, np.ndarray],
             untracked: dict[str, float] | None = None) -> dict[str, PeerResult]:
    """``runs`` through ``peer`` ("supervision" or "ultralytics") in the
    interpreter ``python`` (``untracked`` ones through its own tracker first);
    raises RuntimeError with its stderr if it fails."""
    line_names = list(lines)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "tracks.npz", Path(tmp) / "out.npz"
        export(src, runs, lines, zones, untracked)
        done = subprocess.run([python, str(WORKER), peer, str(src), str(dst)],
                              capture_output=True, text=True, cwd=tmp)
        if done.returncode != 0:
            raise RuntimeError(f"{peer} ({python}) failed:\n{done.stderr[-3000:]}")
        with np.load(dst) as out:
            results = {}
            for name in runs:
                counts: dict[tuple[str, int, str], int] = {}
                for li, c, d, n in out[f"{name}_counts"]:
                    key = (line_names[li], int(c), DIRECTIONS[d])
                    counts[key] = counts.get(key, 0) + int(n)
                results[name] = PeerResult(counts, out[f"{name}_occ"],
                                           float(out[f"{name}_cpu"]))
    return results
