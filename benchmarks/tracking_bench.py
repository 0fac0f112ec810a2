"""Tracking quality on generated sequences that are hard in known ways.

    python -m benchmarks.tracking_bench [--families all] [--seeds 8] [--first-seed 0]
        [--tracker bytetrack --tracker ocsort ...] [--param ocsort.max_age=40 ...]
        [--reference-python /work/venv-tracking/bin/python]

Each *family* is a generator of ground truth plus a noise model that turns it into
per-frame detections (see ``FAMILIES``); every seed gives a new sequence. Our
trackers run on those detections in process; with ``--reference-python`` the same
detections are written to a file, Roboflow's ``trackers`` (ByteTrack, SORT,
OC-SORT with their defaults) run on them in that interpreter (its own virtual
environment: ``trackers`` pulls OpenCV's main wheel, which must stay out of ours),
and their tracks come back as a file. Everything is scored by the same TrackEval
code (``training.evaluate_tracking.evaluate``): HOTA, IDF1 and MOTA combined over
the family's sequences, ID switches as the mean per sequence.

Prints one table per family and, with ``--json``, writes every figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

REFERENCE_TRACKERS = ("rf-bytetrack", "rf-sort", "rf-ocsort")
# Our ByteTrack as the paper configures it for MOT17 (``--with-paper``), to show
# what the changes in pipeline/tracking/ are worth.
PAPER_BYTETRACK = {
    "track_high_thresh": 0.5, "track_low_thresh": 0.1, "new_track_thresh": 0.6,
    "match_thresh": 0.8, "second_match_thresh": 0.5, "unconfirmed_match_thresh": 0.7,
    "track_buffer": 30, "fuse_score": True, "min_hits": 2, "lost_low_match": False,
    "lost_buffer": 0.0, "lost_velocity_decay": 1.0, "report_lost": 0,
    "smooth_boxes": False, "kalman_position_noise": 1 / 20,
    "kalman_velocity_noise": 1 / 160,
}


@dataclass(frozen=True)
class Family:
    """How one family of sequences is generated (sizes in pixels, per frame).

    Motion: ``n_objects`` boxes (widths ``box_w``, height/width ``aspect``) move at
    ``speed`` px/frame and bounce off the edges of the world. ``crossing`` puts
    them in shared horizontal lanes, pairs moving against each other.
    ``scale_rate``: the largest per-frame change of log box size (sizes stay
    within 0.5x..2x). ``pan``: camera pan amplitude (px); the world is then larger
    than the view, boxes leave and re-enter it, and frames carry an image.
    Detector noise: ``jitter`` (std of each box coordinate), ``miss`` (random
    misses), ``gaps`` stretches of ``gap_len`` frames per object with no detection
    (``turn_in_gap``: the object turns around in the middle of each), true
    ``score`` uniform, ``fp_per_frame`` false boxes with ``fp_score`` and a
    random class; ``occlusion``: a box hidden behind a nearer one (larger bottom)
    is missed when less than 40% shows, and scored lower the more it is hidden.
    """

    name: str
    description: str
    n_objects: int = 14
    n_frames: int = 300
    fps: float = 30.0
    view: tuple[int, int] = (960, 540)  # width, height
    speed: tuple[float, float] = (1.0, 4.0)
    box_w: tuple[float, float] = (25.0, 70.0)
    aspect: tuple[float, float] = (1.0, 2.5)
    crossing: bool = False
    scale_rate: float = 0.0
    pan: float = 0.0
    jitter: float = 3.0
    miss: float = 0.1
    gaps: int = 2
    gap_len: tuple[int, int] = (4, 12)
    turn_in_gap: bool = False
    score: tuple[float, float] = (0.3, 1.0)
    fp_per_frame: float = 1.0
    fp_score: tuple[float, float] = (0.1, 0.5)
    occlusion: bool = False
    n_classes: int = 3


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("original", "14 bouncing objects, 3 px jitter, 10% misses, two "
               "4-12 frame gaps each, scores U[0.3, 1], one false box a frame"),
        Family("long_gaps", "as original, gaps of 20-40 frames",
               gap_len=(20, 40)),
        Family("turn_in_gap", "objects turn around in the middle of 8-20 frame gaps",
               gap_len=(8, 20), turn_in_gap=True),
        Family("crossing", "pairs in shared lanes cross each other; one class; "
               "occluded boxes missed or scored low",
               crossing=True, box_w=(30.0, 45.0), aspect=(1.8, 2.4),
               speed=(1.5, 4.0), n_classes=1, occlusion=True),
        Family("pan", "camera pans (up to ~10 px/frame, changing direction); "
               "objects leave and re-enter the view", pan=150.0),
        Family("size_change", "boxes grow and shrink (up to 3% a frame, 0.5-2x)",
               scale_rate=0.03),
        Family("low_score", "true scores U[0.15, 0.65], false boxes U[0.1, 0.5]",
               score=(0.15, 0.65)),
        Family("dense", "40 objects, occlusions, 3 false boxes a frame",
               n_objects=40, box_w=(25.0, 55.0), fp_per_frame=3.0, occlusion=True),
        Family("low_fps", "10 FPS: 3x the motion per frame, gaps of 2-5 frames",
               fps=10.0, n_frames=150, speed=(3.0, 12.0), gap_len=(2, 5)),
    )
}


@dataclass
class Sequence:
    """One generated sequence: MOT ground truth and per-frame detections.

    ``gt`` (N, 10) MOT rows (1-based frames and ids, xywh). ``dets``: per frame
    (xyxy (K, 4) float32, scores (K,) float32, class_ids (K,) int32). ``offsets``
    (n_frames, 2): the camera's top-left in the world (pan family), used to render
    ``image(frame)``; ``None`` when the camera is still.
    """

    name: str
    fps: float
    view: tuple[int, int]
    gt: np.ndarray
    dets: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    offsets: np.ndarray | None = None
    texture: np.ndarray | None = field(default=None, repr=False)

    def image(self, frame: int) -> np.ndarray | None:
        """The BGR view at 0-based ``frame`` (a crop of a blocky texture), or None."""
        if self.offsets is None or self.texture is None:
            return None
        x, y = np.round(self.offsets[frame]).astype(int)
        w, h = self.view
        return self.texture[y:y + h, x:x + w]


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A background with corners everywhere (blocks of random grey at 1/12 size,
    upscaled without smoothing), so sparse optical flow finds features."""
    import cv2

    small = rng.integers(0, 256, ((height + 11) // 12, (width + 11) // 12), np.uint8)
    big = cv2.resize(small, (small.shape[1] * 12, small.shape[0] * 12),
                     interpolation=cv2.INTER_NEAREST)[:height, :width]
    return np.ascontiguousarray(np.repeat(big[:, :, None], 3, axis=2))


def _gap_mask(rng: np.random.Generator, fam: Family, n: int) -> np.ndarray:
    """(n_frames, n) True where an object is inside one of its detection gaps."""
    gap = np.zeros((fam.n_frames, n), dtype=bool)
    lo, hi = fam.gap_len
    for i in range(n):
        for _ in range(fam.gaps):
            length = int(rng.integers(lo, hi + 1))
            start = int(rng.integers(5, max(fam.n_frames - length - 5, 6)))
            gap[start:start + length, i] = True
    return gap


def generate(fam: Family, seed: int) -> Sequence:
    """A sequence of family ``fam``; the same (family, seed) gives the same one."""
    rng = np.random.default_rng([seed, sum(map(ord, fam.name))])
    n, n_frames = fam.n_objects, fam.n_frames
    vw, vh = fam.view
    world = np.array([vw + 2 * fam.pan, vh + 2 * 0.3 * fam.pan])
    base_w = rng.uniform(*fam.box_w, n)
    base_wh = np.stack([base_w, base_w * rng.uniform(*fam.aspect, n)], axis=1)
    speed = rng.uniform(*fam.speed, n)
    if fam.crossing:
        lanes = np.arange(n) // 2
        n_lanes = lanes.max() + 1
        lane_y = (lanes + 0.5) * world[1] / n_lanes
        left = np.arange(n) % 2 == 0
        centre = np.stack([np.where(left, base_wh[:, 0], world[0] - base_wh[:, 0]),
                           lane_y], axis=1)
        heading = np.where(left, 0.0, np.pi) + rng.uniform(-0.08, 0.08, n)
    else:
        centre = rng.uniform(base_wh, world - base_wh, (n, 2))
        heading = rng.uniform(0, 2 * np.pi, n)
    vel = speed[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    log_scale = np.zeros(n)
    scale_vel = rng.uniform(-fam.scale_rate, fam.scale_rate, n)
    gap = _gap_mask(rng, fam, n)
    turn_frames = np.zeros((n_frames, n), dtype=bool)
    if fam.turn_in_gap:  # the middle frame of each gap
        starts = gap & ~np.vstack([np.zeros((1, n), bool), gap[:-1]])
        ends = gap & ~np.vstack([gap[1:], np.zeros((1, n), bool)])
        for i in range(n):
            for a, b in zip(np.flatnonzero(starts[:, i]), np.flatnonzero(ends[:, i]),
                            strict=True):
                turn_frames[(a + b) // 2, i] = True

    boxes = np.zeros((n_frames, n, 4))
    for t in range(n_frames):
        if fam.turn_in_gap:
            turn = turn_frames[t]
            angle = rng.uniform(0.75 * np.pi, 1.25 * np.pi, turn.sum())
            c, s = np.cos(angle), np.sin(angle)
            v = vel[turn]
            vel[turn] = np.stack([c * v[:, 0] - s * v[:, 1],
                                  s * v[:, 0] + c * v[:, 1]], axis=1)
        log_scale += scale_vel
        flip = np.abs(log_scale) > np.log(2.0)
        scale_vel[flip] *= -1
        log_scale = np.clip(log_scale, -np.log(2.0), np.log(2.0))
        wh = base_wh * np.exp(log_scale)[:, None]
        centre += vel
        low, high = centre - wh / 2 < 0, centre + wh / 2 > world
        vel[low | high] *= -1
        centre = np.clip(centre, wh / 2, world - wh / 2)
        boxes[t] = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)

    offsets = None
    if fam.pan:
        phase = rng.uniform(0, 2 * np.pi, 2)
        period = rng.uniform(80, 120)
        t = np.arange(n_frames)
        offsets = np.stack([
            fam.pan * (1 + np.sin(2 * np.pi * t / period + phase[0])),
            0.3 * fam.pan * (1 + np.sin(2 * np.pi * t / (1.7 * period) + phase[1])),
        ], axis=1)
        boxes = boxes - np.tile(offsets, 2)[:, None, :]

    # Ground truth: boxes clipped to the view; hidden when less than half shows.
    area = np.prod(boxes[..., 2:] - boxes[..., :2], axis=-1)
    clipped = np.clip(boxes, 0, [vw, vh, vw, vh])
    in_view = np.prod(np.clip(clipped[..., 2:] - clipped[..., :2], 0, None), -1)
    shown = in_view / area >= 0.5
    visible = np.ones((n_frames, n))
    if fam.occlusion:
        visible = 1 - _covered(clipped)
    classes = rng.integers(0, fam.n_classes, n)

    gt_rows, dets = [], []
    for t in range(n_frames):
        ids = np.flatnonzero(shown[t])
        b = clipped[t, ids]
        gt_rows.append(np.column_stack([
            np.full(len(ids), t + 1), ids + 1, b[:, :2], b[:, 2:] - b[:, :2],
            np.ones(len(ids)), classes[ids] + 1, visible[t, ids], -np.ones(len(ids)),
        ]))
        seen = ((rng.random(len(ids)) >= fam.miss) & ~gap[t, ids]
                & (visible[t, ids] >= 0.4))
        ids, b = ids[seen], b[seen]
        scores = rng.uniform(*fam.score, len(ids)) * (0.5 + 0.5 * visible[t, ids])
        xyxy = b + rng.normal(0, fam.jitter, b.shape)
        n_fp = int(fam.fp_per_frame) + int(rng.random() < fam.fp_per_frame % 1)
        fw = rng.uniform(*fam.box_w, n_fp)
        fwh = np.stack([fw, fw * rng.uniform(*fam.aspect, n_fp)], axis=1)
        ftl = rng.uniform(0, 1, (n_fp, 2)) * ([vw, vh] - fwh)
        xyxy = np.concatenate([xyxy, np.concatenate([ftl, ftl + fwh], axis=1)])
        scores = np.concatenate([scores, rng.uniform(*fam.fp_score, n_fp)])
        cls = np.concatenate([classes[ids], rng.integers(0, fam.n_classes, n_fp)])
        order = rng.permutation(len(xyxy))
        dets.append((xyxy[order].astype(np.float32), scores[order].astype(np.float32),
                     cls[order].astype(np.int32)))
    seq = Sequence(f"{fam.name}-{seed}", fam.fps, fam.view, np.concatenate(gt_rows),
                   dets, offsets)
    if offsets is not None:
        seq.texture = _texture(rng, int(world[0]) + 2, int(world[1]) + 2)
    return seq


def _covered(boxes: np.ndarray) -> np.ndarray:
    """(T, N, 4) xyxy -> (T, N): the largest fraction of each box covered by one
    nearer box (nearer = lower bottom edge on screen)."""
    tl = np.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    br = np.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=-1)
    area = np.prod(boxes[..., 2:] - boxes[..., :2], axis=-1)
    nearer = boxes[:, None, :, 3] > boxes[:, :, None, 3]
    return np.clip((inter * nearer).max(axis=2) / np.maximum(area, 1e-9), 0, 1)


# --- running trackers ----------------------------------------------------------

def run_ours(seq: Sequence, name: str, params: dict[str, Any]) -> np.ndarray:
    """MOT rows (N, 10) of one of our trackers on ``seq``."""
    from core.formats import mot_rows
    from core.types import Detections
    from pipeline.tracking import make_tracker

    tracker = make_tracker(name, frame_rate=seq.fps, **params)
    assert tracker is not None
    # Only camera-motion compensation looks at the pixels, and rendering them is
    # what costs: without it the tracker gets no image.
    wants_image = params.get("cmc", "none") != "none"
    rows = []
    for t, (xyxy, scores, classes) in enumerate(seq.dets):
        out = tracker.update(Detections(xyxy, scores, classes), timestamp=t / seq.fps,
                             image=seq.image(t) if wants_image else None)
        rows.append(mot_rows(t + 1, out.xyxy, out.track_ids, out.scores))
    return np.concatenate(rows)


def run_reference(python: str, seqs: list[Sequence]
                  ) -> dict[str, dict[str, np.ndarray]]:
    """Roboflow's trackers on ``seqs`` in interpreter ``python``:
    {tracker: {sequence: MOT rows}}."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "dets.npz", Path(tmp) / "tracks.npz"
        arrays: dict[str, np.ndarray] = {}
        for i, s in enumerate(seqs):
            frames = np.concatenate([np.full(len(d[0]), t + 1)
                                     for t, d in enumerate(s.dets)])
            arrays[f"{i}_frame"] = frames
            arrays[f"{i}_xyxy"] = np.concatenate([d[0] for d in s.dets])
            arrays[f"{i}_score"] = np.concatenate([d[1] for d in s.dets])
            arrays[f"{i}_class"] = np.concatenate([d[2] for d in s.dets])
            arrays[f"{i}_meta"] = np.array([len(s.dets), s.fps])
        np.savez(src, **arrays)
        cmd = [python, str(Path(__file__).resolve()), "--reference-worker",
               str(src), str(dst)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"reference trackers ({python}) failed:\n"
                               f"{done.stderr[-2000:]}")
        with np.load(dst) as out:
            return {name: {s.name: out[f"{name}_{i}"] for i, s in enumerate(seqs)}
                    for name in REFERENCE_TRACKERS}


def reference_worker(src: str, dst: str) -> None:
    """Runs inside the reference interpreter: numpy, supervision and trackers only."""
    import supervision as sv
    import trackers

    sys.path.insert(0, str(ROOT))  # core needs only NumPy, which that venv has
    from core.formats import mot_rows

    makers = {
        "rf-bytetrack": trackers.ByteTrackTracker,
        "rf-sort": trackers.SORTTracker,
        "rf-ocsort": trackers.OCSORTTracker,
    }
    out: dict[str, np.ndarray] = {}
    with np.load(src) as data:
        n_seqs = sum(1 for k in data.files if k.endswith("_meta"))
        for i in range(n_seqs):
            n_frames, fps = data[f"{i}_meta"]
            frame = data[f"{i}_frame"]
            cuts = np.searchsorted(frame, np.arange(1, int(n_frames) + 2))
            for name, make in makers.items():
                tracker = make(frame_rate=float(fps))
                rows = []
                for t in range(int(n_frames)):
                    a, b = cuts[t], cuts[t + 1]
                    dets = sv.Detections(
                        xyxy=data[f"{i}_xyxy"][a:b].astype(np.float32),
                        confidence=data[f"{i}_score"][a:b].astype(np.float32),
                        class_id=data[f"{i}_class"][a:b].astype(int))
                    res = tracker.update(dets)
                    keep = res.tracker_id >= 0
                    rows.append(mot_rows(t + 1, res.xyxy[keep],
                                         res.tracker_id[keep] + 1,
                                         res.confidence[keep]))
                out[f"{name}_{i}"] = np.concatenate(rows)
    np.savez(dst, **out)


# --- scoring and the table -----------------------------------------------------

def score(seqs: list[Sequence], pred: dict[str, np.ndarray]) -> dict[str, float]:
    """HOTA, IDF1, MOTA combined over ``seqs``; IDSW the mean per sequence."""
    from training.evaluate_tracking import evaluate

    res = evaluate({s.name: s.gt for s in seqs}, pred)
    combined = res["COMBINED"]
    return {"HOTA": combined["HOTA"], "IDF1": combined["IDF1"],
            "MOTA": combined["MOTA"], "AssA": combined["AssA"],
            "DetA": combined["DetA"],
            "IDSW": float(np.mean([res[s.name]["IDSW"] for s in seqs]))}


def print_table(family: Family, n_seqs: int, results: dict[str, dict[str, float]],
                ms: dict[str, float]) -> None:
    print(f"\n{family.name} ({n_seqs} sequences x {family.n_frames} frames at "
          f"{family.fps:g} FPS): {family.description}")
    header = f"{'tracker':<16}{'HOTA':>7}{'IDF1':>7}{'MOTA':>7}{'AssA':>7}" \
             f"{'IDSW':>7}{'ms/frame':>10}"
    print(header)
    print("-" * len(header))
    for name, m in results.items():
        timing = f"{ms[name]:>10.2f}" if name in ms else f"{'-':>10}"
        print(f"{name:<16}{100 * m['HOTA']:>7.1f}{100 * m['IDF1']:>7.1f}"
              f"{100 * m['MOTA']:>7.1f}{100 * m['AssA']:>7.1f}{m['IDSW']:>7.1f}"
              f"{timing}")


def markdown(results: dict[str, dict[str, dict[str, float]]], n_seqs: int) -> str:
    """The per-family tables as one Markdown table (HOTA / IDF1 / MOTA in %, IDSW
    per sequence), the best HOTA of each family in bold."""
    trackers = list(next(iter(results.values())))
    lines = ["| family | " + " | ".join(trackers) + " |",
             "|---|" + "---|" * len(trackers)]
    for fam, table in results.items():
        best = max(m["HOTA"] for m in table.values())
        cells = []
        for name in trackers:
            m = table[name]
            text = (f"{100 * m['HOTA']:.1f} / {100 * m['IDF1']:.1f} / "
                    f"{100 * m['MOTA']:.1f} / {m['IDSW']:.1f}")
            cells.append(f"**{text}**" if m["HOTA"] == best else text)
        lines.append(f"| {fam} ({n_seqs}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def benchmark(families: list[str], seeds: list[int], trackers: list[str],
              params: dict[str, dict[str, Any]], reference_python: str | None,
              quiet: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """{family: {tracker: metrics}} over ``seeds`` of each family."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for fam_name in families:
        fam = FAMILIES[fam_name]
        seqs = [generate(fam, seed) for seed in seeds]
        table: dict[str, dict[str, float]] = {}
        ms: dict[str, float] = {}
        for name in trackers:
            start = time.perf_counter()
            kind, tracker_params = name, params.get(name, {})
            if name == "bytetrack-mot17":
                kind, tracker_params = "bytetrack", PAPER_BYTETRACK
            pred = {s.name: run_ours(s, kind, tracker_params) for s in seqs}
            ms[name] = 1000 * (time.perf_counter() - start) / sum(
                len(s.dets) for s in seqs)
            table[name] = score(seqs, pred)
        if reference_python:
            for name, pred in run_reference(reference_python, seqs).items():
                table[name] = score(seqs, pred)
        results[fam_name] = table
        if not quiet:
            print_table(fam, len(seqs), table, ms)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False,
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["all"],
                        help=f"families to run: {', '.join(FAMILIES)} or all")
    parser.add_argument("--seeds", type=int, default=8, help="sequences per family")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--tracker", action="append", default=None,
                        help="our tracker(s) to run (default: all of ours)")
    parser.add_argument("--param", action="append", default=[],
                        metavar="TRACKER.NAME=VALUE", help="tracker parameter")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per sequence (default: the family's)")
    parser.add_argument("--with-paper", action="store_true",
                        help="also run our ByteTrack with the paper's MOT17 settings")
    parser.add_argument("--reference-python", default=None, metavar="PATH",
                        help="interpreter with Roboflow's `trackers` installed")
    parser.add_argument("--json", type=Path, default=None,
                        help="write all figures to this JSON file")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the tables as Markdown (HOTA/IDF1/MOTA/IDSW)")
    parser.add_argument("--reference-worker", nargs=2, metavar=("IN", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference_worker:
        reference_worker(*args.reference_worker)
        return 0

    sys.path.insert(0, str(ROOT))
    from pipeline.tracking import TRACKERS, parse_tracker_params_for

    families = list(FAMILIES) if "all" in args.families else args.families
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    if args.frames:
        for name in families:
            FAMILIES[name] = replace(FAMILIES[name], n_frames=args.frames)
    trackers = args.tracker or list(TRACKERS)
    bad = sorted(set(trackers) - set(TRACKERS))
    if bad:
        parser.error(f"unknown trackers {bad}; choose from {list(TRACKERS)}")
    try:
        params = parse_tracker_params_for(trackers, args.param)
    except ValueError as exc:
        parser.error(str(exc))
    if args.with_paper:
        trackers.append("bytetrack-mot17")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    results = benchmark(families, seeds, trackers, params, args.reference_python)
    if args.json:
        args.json.write_text(json.dumps({"seeds": seeds, "params": params,
                                         "results": results}, indent=1))
    if args.markdown:
        args.markdown.write_text(markdown(results, len(seeds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
