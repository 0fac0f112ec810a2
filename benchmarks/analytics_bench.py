"""Line counts, zone occupancy and dwell on generated scenes with known tracks,
through the project's trackers, and against supervision and Ultralytics.

    python -m benchmarks.analytics_bench [--seeds 3] [--duration 60]
        [--trackers bytetrack,ocsort,sort] [--peer-tracker ocsort]
        [--supervision-python /tmp/venv-sv/bin/python]
        [--ultralytics-python /tmp/venv-ul/bin/python]

Each scene is a 1280×720 view with two lines (a vertical ``door`` and a
horizontal ``street``) and two zones (``desk``, ``bench``). Objects follow
piecewise-straight paths in continuous time:

- crossers (people and cars) walk from one side of the door to the other, some
  past the segment's ends (crossing only its extension);
- turn-backers walk up to the door, stand on or near it for a while and turn
  back, either just short of it or after going clearly across;
- standers walk into a zone, stand still for 3 to 25 s, and leave; some are
  occluded (not detected at all) for a few frames while standing;
- a third of the crossers are occluded for a few frames on their way.

The truth comes from the continuous paths (sampled at 1 kHz): every change of
side of the anchor whose crossing point lies on the segment, every stay in a
zone, and, per frame, the visible objects whose anchor is in a zone. Scenes are
sampled at 30, 10 and 5 fps and at 30 fps with a quarter of the frames dropped
at random (a live camera), then fed to the analytics as

(a) true: the true tracks (true boxes and ids, occlusions as gaps);
(a) jitter: the true tracks with box jitter (σ = 2 px per coordinate), 5 % of
    the detections missed at random and short bursts of misses (0.1-0.5 s),
    ids kept, and
(b) detections as a detector gives them (``benchmarks.analytics_tracked``:
    jitter, misses at random and in gaps of several frames, scores uniform in
    [0.3, 1], low-scoring false boxes, no ids) through each of the project's
    trackers, ``make_tracker(name, frame_rate=fps)``; dwell is scored by the
    scene id each tracker id stands for most often.

Printed per setting: count error Σ|counted − true| / Σ true over line ×
direction × class, occupancy MAE (objects per zone and class and frame), dwell
error (mean and max seconds over stays found, and how many of the true stays
were found), loiter events found / expected, and analytics CPU-ms per frame
(``time.process_time`` around the updates of both lines and both zones).

Then the peers, each in its own interpreter (``benchmarks.analytics_peers``):
the true tracks and the ``--peer-tracker``'s tracks go, frame by frame, to
supervision's ``LineZone`` + ``PolygonZone`` and to Ultralytics'
``ObjectCounter`` + ``RegionCounter``; their count error, occupancy MAE (per
zone, all classes: ``RegionCounter`` has no classes) and CPU-ms per frame are
printed beside ours on the same frames.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.analytics_peers import run_peer
from benchmarks.analytics_tracked import detector_frames, run_tracker
from core.types import Detections
from pipeline.analytics import LineCounter, Zone, points_in_polygon

log = logging.getLogger(__name__)

SIZE = (1280, 720)
LINES = {
    "door": np.array([[640.0, 100.0], [640.0, 620.0]]),
    "street": np.array([[700.0, 460.0], [1250.0, 460.0]]),
}
ZONES = {
    "desk": np.array([[80.0, 40.0], [400.0, 40.0], [420.0, 260.0], [60.0, 260.0]]),
    "bench": np.array([[880.0, 40.0], [1200.0, 40.0], [1220.0, 260.0], [860.0, 260.0]]),
}
BOX_WH = {0: (40.0, 100.0), 1: (120.0, 70.0)}  # person, car
HALF_BOX = np.array([20.0, 100.0])  # (w / 2, h) of a person, for the cost run
MARGIN = 0.01 * float(np.hypot(*SIZE))  # the counters' default hysteresis
INERTIA = 3
LOITER_S = 10.0
TRUTH_HZ = 1000.0
RATES = [
    ("30 fps", 30.0, 0.0),
    ("10 fps", 10.0, 0.0),
    ("5 fps", 5.0, 0.0),
    ("30 fps, 25% dropped", 30.0, 0.25),
]


@dataclass
class Track:
    """One object: waypoints (time s, x, y of the bottom-centre anchor)."""

    track_id: int
    class_id: int
    waypoints: np.ndarray  # (K, 3)
    occluded: list[tuple[float, float]] = field(default_factory=list)

    @property
    def start(self) -> float:
        return float(self.waypoints[0, 0])

    @property
    def end(self) -> float:
        return float(self.waypoints[-1, 0])

    def at(self, t: np.ndarray) -> np.ndarray:
        w = self.waypoints
        return np.stack(
            [np.interp(t, w[:, 0], w[:, 1]), np.interp(t, w[:, 0], w[:, 2])], 1
        )

    def visible(self, t: np.ndarray) -> np.ndarray:
        ok = (t >= self.start) & (t <= self.end)
        for a, b in self.occluded:
            ok &= ~((t >= a) & (t < b))
        return ok


def _path(
    t0: float,
    points: list[tuple[float, float]],
    speed: float,
    pauses: dict[int, float] | None = None,
) -> np.ndarray:
    """Waypoints walking through ``points`` at ``speed`` px/s, pausing
    ``pauses[i]`` seconds at point i."""
    rows = [(t0, *points[0])]
    t = t0
    pauses = pauses or {}
    for i in range(1, len(points)):
        if pauses.get(i - 1):
            t += pauses[i - 1]
            rows.append((t, *points[i - 1]))
        t += float(np.hypot(*np.subtract(points[i], points[i - 1]))) / speed
        rows.append((t, *points[i]))
    return np.array(rows)


def _far_from_lines(p: tuple[float, float]) -> bool:
    """Waypoints stay clear of the lines' hysteresis bands, so the truth has no
    path that pokes less than the margin over a line (not a crossing for us)."""
    for a, b in LINES.values():
        ab = b - a
        d = abs(ab[0] * (p[1] - a[1]) - ab[1] * (p[0] - a[0])) / np.hypot(*ab)
        if d < 3 * MARGIN:
            return False
    return True


def make_scene(seed: int, duration: float) -> list[Track]:
    rng = np.random.default_rng(seed)
    tracks: list[Track] = []

    def point(x_range, y_range):
        while True:
            p = (float(rng.uniform(*x_range)), float(rng.uniform(*y_range)))
            if _far_from_lines(p):
                return p

    for _ in range(int(duration * 0.7)):  # crossers
        left = point((80, 560), (300, 710))
        right = point((720, 1200), (300, 710))
        a, b = (left, right) if rng.random() < 0.5 else (right, left)
        cls = int(rng.random() < 0.3)
        speed = rng.uniform(60, 180) if cls == 0 else rng.uniform(150, 400)
        wp = _path(rng.uniform(0, duration - 15), [a, b], speed)
        tr = Track(len(tracks), cls, wp)
        if rng.random() < 1 / 3:
            t = rng.uniform(tr.start, tr.end)
            tr.occluded.append((t, t + rng.uniform(0.1, 0.4)))
        tracks.append(tr)
    for _ in range(int(duration * 0.25)):  # turn-backers at the door
        side = 1 if rng.random() < 0.5 else -1
        y = float(rng.uniform(300, 390))  # clear of the zones and the street
        start = (640 + side * rng.uniform(150, 400), y)
        if rng.random() < 0.5:  # turns back short of the line, may stand on it
            turn = (640 + side * rng.uniform(2, 40), y + rng.uniform(-20, 20))
        else:  # goes clearly across, then back
            turn = (640 - side * rng.uniform(3 * MARGIN, 90), y + rng.uniform(-20, 20))
        wp = _path(
            rng.uniform(0, duration - 20),
            [start, turn, start],
            rng.uniform(50, 140),
            {1: float(rng.uniform(0, 3))},
        )
        tracks.append(Track(len(tracks), 0, wp))
    for _ in range(int(duration * 0.2)):  # standers in a zone
        name = "desk" if rng.random() < 0.5 else "bench"
        edge_x = 0.0 if name == "desk" else float(SIZE[0])
        poly = ZONES[name]
        x_lo, x_hi = poly[:, 0].min() + 40, poly[:, 0].max() - 40
        spot = (float(rng.uniform(x_lo, x_hi)), float(rng.uniform(80, 230)))
        enter = (edge_x, float(rng.uniform(60, 300)))
        leave = (edge_x, float(rng.uniform(60, 300)))
        stay = float(rng.uniform(3, 25))
        wp = _path(
            rng.uniform(0, duration - 40),
            [enter, spot, leave],
            rng.uniform(50, 120),
            {1: stay},
        )
        tr = Track(len(tracks), 0, wp)
        if rng.random() < 0.5:  # someone walks past in front of it
            t = wp[1, 0] + rng.uniform(0.5, max(0.6, stay - 1.5))
            tr.occluded.append((t, t + rng.uniform(0.1, 0.5)))
        tracks.append(tr)
    return tracks


# ------------------------------------------------------------------ truth


def _side(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    a, b = line
    ab = b - a
    return np.sign(ab[0] * (points[:, 1] - a[1]) - ab[1] * (points[:, 0] - a[0]))


def true_crossings(tracks: list[Track]) -> dict[tuple[str, int, str], int]:
    """{(line, class, direction): n} from the continuous paths."""
    counts: dict[tuple[str, int, str], int] = {}
    for tr in tracks:
        t = np.arange(tr.start, tr.end, 1 / TRUTH_HZ)
        p = tr.at(t)
        for name, line in LINES.items():
            s = _side(p, line)
            k = np.flatnonzero((s[:-1] * s[1:]) < 0)
            a, b = line
            ab = b - a
            along = ((p[k] + p[k + 1]) / 2 - a) @ ab / (ab @ ab)
            for i, u in zip(k, along, strict=True):
                if 0 <= u <= 1:
                    key = (name, tr.class_id, "in" if s[i + 1] > 0 else "out")
                    counts[key] = counts.get(key, 0) + 1
    return counts


_CROSSINGS: dict[int, tuple[list[Track], dict]] = {}


def crossings_of(tracks: list[Track]) -> dict[tuple[str, int, str], int]:
    """``true_crossings`` computed once per scene (every input is scored on it)."""
    cached = _CROSSINGS.get(id(tracks))
    if cached is None or cached[0] is not tracks:
        cached = _CROSSINGS[id(tracks)] = (tracks, true_crossings(tracks))
    return cached[1]


def true_stays(tracks: list[Track]) -> dict[tuple[str, int], list[float]]:
    """{(zone, track): [seconds of each stay]} from the continuous paths."""
    stays: dict[tuple[str, int], list[float]] = {}
    for tr in tracks:
        t = np.arange(tr.start, tr.end, 1 / TRUTH_HZ)
        p = tr.at(t)
        for name, poly in ZONES.items():
            inside = points_in_polygon(p, poly).astype(np.int8)
            edges = np.diff(np.concatenate([[0], inside, [0]]))
            starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
            if len(starts):
                stays[(name, tr.track_id)] = [
                    (e - s) / TRUTH_HZ for s, e in zip(starts, ends, strict=True)
                ]
    return stays


# ------------------------------------------------------------------ frames


def frame_times(fps: float, drop: float, duration: float, rng) -> np.ndarray:
    t = np.arange(0, duration, 1 / fps)
    return t[rng.random(len(t)) >= drop] if drop else t


def render(tracks: list[Track], times: np.ndarray, noisy: bool, rng):
    """Per frame: the Detections given to the analytics and the true visible
    anchors with their classes (for the occupancy truth)."""
    idx, xyxy, cls, tid, true_xy = [], [], [], [], []
    for tr in tracks:
        vis = tr.visible(times)
        k = np.flatnonzero(vis)
        if not len(k):
            continue
        p = tr.at(times[k])
        w, h = BOX_WH[tr.class_id]
        boxes = np.stack([p[:, 0] - w / 2, p[:, 1] - h, p[:, 0] + w / 2, p[:, 1]], 1)
        keep = np.ones(len(k), bool)
        if noisy:
            boxes = boxes + rng.normal(0, 2.0, boxes.shape)
            keep &= rng.random(len(k)) >= 0.05
            life = tr.end - tr.start
            for _ in range(rng.poisson(life / 10)):
                g0 = rng.uniform(tr.start, tr.end)
                keep &= ~((times[k] >= g0) & (times[k] < g0 + rng.uniform(0.1, 0.5)))
        idx.append(k)
        true_xy.append(p)
        xyxy.append(np.where(keep[:, None], boxes, np.nan))
        cls.append(np.full(len(k), tr.class_id))
        tid.append(np.full(len(k), tr.track_id))
    idx = np.concatenate(idx)
    order = np.argsort(idx, kind="stable")
    idx, xyxy = idx[order], np.concatenate(xyxy)[order]
    cls, tid = np.concatenate(cls)[order], np.concatenate(tid)[order]
    true_xy = np.concatenate(true_xy)[order]
    bounds = np.searchsorted(idx, np.arange(len(times) + 1))
    frames, truth = [], []
    for i in range(len(times)):
        s = slice(bounds[i], bounds[i + 1])
        seen = ~np.isnan(xyxy[s, 0])
        n = int(seen.sum())
        frames.append(
            Detections(xyxy[s][seen], np.full(n, 0.9), cls[s][seen], tid[s][seen])
        )
        truth.append((true_xy[s], cls[s]))
    return frames, truth


# ------------------------------------------------------------------ run


@dataclass
class Score:
    count_err: float = 0.0
    count_true: float = 0.0
    occ_err: float = 0.0
    occ_n: int = 0
    dwell_err: list[float] = field(default_factory=list)
    dwell_period: list[float] = field(default_factory=list)
    stays_true: int = 0
    stays_found: int = 0
    loiter_true: int = 0
    loiter_found: int = 0
    cpu_s: float = 0.0
    frames: int = 0
    objects: int = 0
    # Per frame and zone, all classes together: ours and the truth (the peers'
    # zones count without classes).
    occ_ours: list[list[int]] = field(default_factory=list)
    occ_true: list[list[int]] = field(default_factory=list)


def run(tracks, times, noisy: bool, rng, score: Score) -> None:
    """(a) or (b): the true tracks, with jitter and misses when ``noisy``."""
    frames, truth = render(tracks, times, noisy, rng)
    analyse(frames, truth, tracks, times, score)


def analyse(
    frames: list[Detections],
    truth: list[tuple[np.ndarray, np.ndarray]],
    tracks: list[Track],
    times: np.ndarray,
    score: Score,
    true_id: dict[int, int] | None = None,
) -> None:
    """Feed tracked ``frames`` to both lines and both zones and add their errors
    against the scene's truth to ``score``. ``true_id`` maps the frames' track
    ids to the scene's (a tracker's own ids); without it they are the scene's."""
    lines = {n: LineCounter(p, n) for n, p in LINES.items()}
    zones = {
        n: Zone(p, n, inertia=INERTIA, loiter_s=LOITER_S) for n, p in ZONES.items()
    }
    events = []
    classes = sorted(BOX_WH)
    cpu = 0.0
    for i, (dets, t) in enumerate(zip(frames, times, strict=True)):
        c0 = time.process_time()
        for counter in lines.values():
            events += counter.update(dets, t, SIZE, frame=i)
        for zone in zones.values():
            events += zone.update(dets, t, SIZE, frame=i)
        cpu += time.process_time() - c0
        true_xy, true_cls = truth[i]
        ours, true = [], []
        for name, zone in zones.items():
            inside = points_in_polygon(true_xy, ZONES[name])
            occ = zone.occupancy
            for c in classes:
                score.occ_err += abs(
                    occ.get(c, 0) - int((inside & (true_cls == c)).sum())
                )
                score.occ_n += 1
            ours.append(sum(occ.values()))
            true.append(int(inside.sum()))
        score.occ_ours.append(ours)
        score.occ_true.append(true)
        score.objects += len(dets)
    end = float(times[-1]) + 10.0  # flush tracks that were still inside
    for zone in zones.values():
        events += zone.update(Detections.empty(), end, SIZE)
    score.cpu_s += cpu
    score.frames += len(frames)

    counted = {
        (name, c, d): n
        for name, counter in lines.items()
        for (c, d), n in counter.counts.items()
    }
    score_counts(counted, crossings_of(tracks), score)

    period = float(np.diff(times).max())
    found: dict[tuple[str, int], list[float]] = {}
    loiters = set()
    for e in events:
        tid = e.track_id if true_id is None else true_id.get(e.track_id, -1)
        if e.event == "zone_exit":
            found.setdefault((e.zone, tid), []).append(e.dwell_s)
        elif e.event == "loiter":
            loiters.add((e.zone, tid))
    stays = true_stays(tracks)
    for key, true_list in stays.items():
        score.stays_true += len(true_list)
        got = found.get(key, [])
        if len(got) == len(true_list):  # paired in order
            score.stays_found += len(got)
            for g, s in zip(got, true_list, strict=True):
                score.dwell_err.append(abs(g - s))
                score.dwell_period.append(abs(g - s) / period)
        if any(s >= LOITER_S for s in true_list):
            score.loiter_true += 1
    score.loiter_found += len(loiters)


def score_counts(
    counted: dict[tuple[str, int, str], int],
    truth: dict[tuple[str, int, str], int],
    score: Score,
) -> None:
    """Add Σ|counted − true| over line × class × direction, and Σ true."""
    for key in set(truth) | set(counted):
        score.count_err += abs(counted.get(key, 0) - truth.get(key, 0))
    score.count_true += sum(truth.values())


def cost_at(n_objects: int, n_frames: int = 200, seed: int = 0) -> float:
    """CPU-ms per frame of both lines and both zones with ``n_objects`` tracked
    boxes wandering over the frame (how the cost grows with a crowd)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform([0, 0], SIZE, (n_objects, 2))
    vel = rng.uniform(-8, 8, (n_objects, 2))
    ids = np.arange(n_objects)
    lines = [LineCounter(p, n) for n, p in LINES.items()]
    zones = [Zone(p, n, loiter_s=LOITER_S) for n, p in ZONES.items()]
    cpu = 0.0
    for i in range(n_frames):
        pos = np.clip(pos + vel, 0, SIZE)
        xyxy = np.concatenate([pos - HALF_BOX, pos + HALF_BOX * [1, 0]], axis=1)
        dets = Detections(xyxy, np.full(n_objects, 0.9), ids % 2, ids)
        c0 = time.process_time()
        for obj in (*lines, *zones):
            obj.update(dets, i / 30, SIZE, frame=i)
        cpu += time.process_time() - c0
    return 1000 * cpu / n_frames


PEERS = ("supervision", "ultralytics")
HEADER = (
    f"{'input':<14} {'frames':<20} {'count err':>9} {'occ MAE':>8} "
    f"{'dwell MAE s':>11} {'max s':>6} {'max/period':>10} {'stays':>9} "
    f"{'loiter':>7} {'ms/frame':>8} {'obj/frame':>9}"
)


def row(label: str, rate: str, score: Score, extra: str = "") -> str:
    dwell = np.array(score.dwell_err) if score.dwell_err else np.zeros(1)
    per = np.array(score.dwell_period) if score.dwell_period else np.zeros(1)
    return (
        f"{label:<14} {rate:<20} "
        f"{score.count_err / max(score.count_true, 1):>9.2%} "
        f"{score.occ_err / max(score.occ_n, 1):>8.4f} "
        f"{dwell.mean():>11.3f} {dwell.max():>6.2f} {per.max():>10.2f} "
        f"{score.stays_found:>4}/{score.stays_true:<4} "
        f"{score.loiter_found:>3}/{score.loiter_true:<3} "
        f"{1000 * score.cpu_s / max(score.frames, 1):>8.3f} "
        f"{score.objects / max(score.frames, 1):>9.1f}{extra}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds of scene (at least 40)")
    parser.add_argument("--trackers", default="bytetrack,ocsort,sort",
                        help="comma-separated; '' for none")
    parser.add_argument("--peer-tracker", default="ocsort",
                        help="whose tracks the peers get besides the true ones")
    parser.add_argument("--supervision-python", default="/tmp/venv-sv/bin/python",
                        help="interpreter with supervision; '' to leave it out")
    parser.add_argument("--ultralytics-python", default="/tmp/venv-ul/bin/python",
                        help="interpreter with ultralytics; '' to leave it out")
    args = parser.parse_args(argv)
    if args.duration < 40:
        raise ValueError(f"--duration must be at least 40 s, got {args.duration:g}")
    trackers = [t for t in args.trackers.split(",") if t]
    if args.peer_tracker not in trackers:
        raise ValueError(f"--peer-tracker {args.peer_tracker!r} is not one of "
                         f"--trackers {trackers}")
    scenes = [make_scene(seed, args.duration) for seed in range(args.seeds)]
    n_tracks = sum(len(s) for s in scenes)
    print(
        f"{args.seeds} scenes × {args.duration:g} s, {n_tracks} tracks, "
        f"{SIZE[0]}x{SIZE[1]}, 2 lines, 2 zones (inertia {INERTIA}, "
        f"loiter {LOITER_S:g} s), margin {MARGIN:.1f} px"
    )
    print(HEADER)
    print("-" * len(HEADER))
    # (run name -> tracked frames) for the peers, and our score per
    # (input, rate) to put beside theirs.
    peer_runs: dict[str, list[Detections]] = {}
    untracked: dict[str, float] = {}  # runs of detections without ids -> fps
    ours: dict[tuple[str, str], Score] = {}
    for noisy in (False, True):
        for label, fps, drop in RATES:
            score = ours[("jitter" if noisy else "true", label)] = Score()
            for seed, tracks in enumerate(scenes):
                rng = np.random.default_rng(1000 + seed)
                times = frame_times(fps, drop, args.duration + 30, rng)
                frames, truth = render(tracks, times, noisy, rng)
                analyse(frames, truth, tracks, times, score)
                if not noisy:
                    peer_runs[f"s{seed}_{fps:g}_{drop:g}_true"] = frames
            print(row("(a) true" if not noisy else "(a) jitter", label, score))
        print(f"{'':14} true crossings per setting: {int(score.count_true)}")
    for name in trackers:
        for label, fps, drop in RATES:
            score = ours[(name, label)] = Score()
            track_cpu = 0.0
            for seed, tracks in enumerate(scenes):
                rng = np.random.default_rng(1000 + seed)
                times = frame_times(fps, drop, args.duration + 30, rng)
                seen = detector_frames(tracks, times, BOX_WH, SIZE, rng)
                tracked = run_tracker(name, fps, seen, times)
                track_cpu += tracked.cpu_s
                analyse(tracked.frames, seen.truth, tracks, times, score,
                        tracked.true_id)
                if name == args.peer_tracker:
                    peer_runs[f"s{seed}_{fps:g}_{drop:g}_{name}"] = tracked.frames
                    # The same detections, for each peer's own tracker.
                    peer_runs[f"s{seed}_{fps:g}_{drop:g}_dets"] = seen.dets
                    untracked[f"s{seed}_{fps:g}_{drop:g}_dets"] = fps
            extra = f"   tracker {1000 * track_cpu / score.frames:.2f} ms/frame"
            print(row(f"(b) {name}", label, score, extra))
    print()
    print("CPU-ms per frame, 2 lines + 2 zones, by tracked objects in the frame:")
    print("  " + "  ".join(f"{n} objects: {cost_at(n):.3f}" for n in (10, 100, 1000)))

    pythons = {"supervision": args.supervision_python,
               "ultralytics": args.ultralytics_python}
    results = {}
    for peer in PEERS:
        if not pythons[peer]:
            continue
        c0 = time.perf_counter()
        results[peer] = run_peer(peer, pythons[peer], peer_runs, LINES, ZONES,
                                 untracked)
        log.info("%s: %.0f s", peer, time.perf_counter() - c0)
    if results:
        print_peers(scenes, ours, results, args.peer_tracker)
    return 0


def print_peers(scenes: list[list[Track]], ours: dict[tuple[str, str], Score],
                results: dict, tracker: str) -> None:
    """Count error, occupancy MAE (per zone and frame, all classes) and CPU-ms
    per frame of ours and each peer: on the same tracks (the true ones and
    ``tracker``'s), then each with its own tracker on the same detections."""
    names = ["ours", *results]
    head = f"{'tracks':<14} {'frames':<20} " + " ".join(
        f"{n + ' err':>16} {'occ':>6} {'ms':>6}" for n in names
    )
    tables = [
        ("Peers fed the same tracks (occupancy: per zone and frame, all classes):",
         [("true", "true", "true"), (tracker, tracker, tracker)]),
        (f"Each with its own tracker on the same detections (ours: {tracker}; "
         "supervision: trackers' ByteTrack; Ultralytics: BoT-SORT):",
         [("own tracker", tracker, "dets")]),
    ]
    for title, kinds in tables:
        print()
        print(title)
        print(head)
        print("-" * len(head))
        for label_kind, our_kind, run_kind in kinds:
            for label, fps, drop in RATES:
                mine = ours[(our_kind, label)]
                occ_true = np.array(mine.occ_true)
                cells = [(mine.count_err / max(mine.count_true, 1),
                          np.abs(np.array(mine.occ_ours) - occ_true).mean(),
                          1000 * mine.cpu_s / mine.frames)]
                for peer in results.values():
                    score, occ, cpu = Score(), [], 0.0
                    for seed, tracks in enumerate(scenes):
                        got = peer[f"s{seed}_{fps:g}_{drop:g}_{run_kind}"]
                        score_counts(got.counts, crossings_of(tracks), score)
                        occ.append(got.occupancy)
                        cpu += got.cpu_s
                    cells.append((score.count_err / max(score.count_true, 1),
                                  np.abs(np.concatenate(occ) - occ_true).mean(),
                                  1000 * cpu / mine.frames))
                print(f"{label_kind:<14} {label:<20} " + " ".join(
                    f"{e:>16.2%} {o:>6.3f} {ms:>6.2f}" for e, o, ms in cells))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
