"""Tracker cost per frame at 10, 100 and 1000 objects (moving, noisy boxes).

    python -m benchmarks.tracker_speed [--objects 10 100 1000] [--frames 100]

Objects move at constant speed and bounce off the edges of a canvas that grows
with their number (so density stays about the same); detections are the true
boxes with 1 px jitter and scores in [0.3, 1], so ByteTrack's low-score stage runs
too. Prints ms/frame of ``tracker.update`` for each tracker.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from core.types import Detections
from pipeline.tracking import TRACKERS, make_tracker


def moving_boxes(n_objects: int, n_frames: int, seed: int = 0) -> list[Detections]:
    """Per-frame detections of ``n_objects`` boxes (xyxy px) bouncing in a canvas."""
    rng = np.random.default_rng(seed)
    side = 100.0 * np.sqrt(n_objects) + 200
    wh = rng.uniform(30, 60, (n_objects, 2))
    pos = rng.uniform(0, side - 60, (n_objects, 2))
    vel = rng.uniform(-3, 3, (n_objects, 2))
    frames = []
    for _ in range(n_frames):
        pos += vel
        out = (pos < 0) | (pos + wh > side)
        vel[out] *= -1
        pos = np.clip(pos, 0, side - wh)
        xy = pos + rng.normal(0, 1, pos.shape)
        frames.append(Detections(np.concatenate([xy, xy + wh], axis=1),
                                 rng.uniform(0.3, 1.0, n_objects),
                                 np.zeros(n_objects, np.int32)))
    return frames


def time_tracker(name: str, frames: list[Detections], warmup: int = 10) -> float:
    """Mean ms per ``update`` over ``frames`` after ``warmup`` untimed frames."""
    tracker = make_tracker(name)
    assert tracker is not None
    for t, dets in enumerate(frames[:warmup]):
        tracker.update(dets, timestamp=t / 30)
    start = time.perf_counter()
    for t, dets in enumerate(frames[warmup:], start=warmup):
        tracker.update(dets, timestamp=t / 30)
    return 1000 * (time.perf_counter() - start) / max(len(frames) - warmup, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False,
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--frames", type=int, default=100,
                        help="timed frames per run (after 10 warm-up frames)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = list(TRACKERS)
    print(f"{'objects':>8}" + "".join(f"{n + ' ms/frame':>20}" for n in names))
    for n in args.objects:
        frames = moving_boxes(n, args.frames + 10, args.seed)
        times = [time_tracker(name, frames) for name in names]
        print(f"{n:>8}" + "".join(f"{t:>20.3f}" for t in times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
