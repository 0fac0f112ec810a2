"""Runs inside a peer's own virtual environment (NumPy and the peer only, none of
our packages): feeds precomputed tracks, frame by frame, to supervision's
``LineZone``/``PolygonZone`` or Ultralytics' ``ObjectCounter``/``RegionCounter``.

    PYTHON benchmarks/analytics_peer_worker.py supervision|ultralytics IN.npz OUT.npz

IN (written by ``benchmarks.analytics_peers.export``): ``lines`` (L, 2, 2) and
``zone_K`` (P, 2) pixels, ``runs`` (names), and per run ``R``: ``R_frame`` (row's
frame index), ``R_xyxy``, ``R_cls``, ``R_tid``, ``R_score``, ``R_n`` (frames),
and ``R_fps`` for a run of untracked detections, which then go through the
peer's own tracker first (supervision: Roboflow's ``trackers`` ByteTrack;
Ultralytics: its default BoT-SORT). OUT per run:
``R_counts`` rows (line, class, direction 0 = our ``in`` / 1 = ``out``, n),
``R_occ`` (frames, zones) objects in each zone, ``R_cpu`` seconds in the peer.

Directions are mapped to ours from each peer's documented rule, and each peer
counts at the bottom-centre of the box, as ours does: supervision through its
``triggering_anchors``; Ultralytics uses the box centre, so its boxes are moved
down by half their height (the centre then lies where our anchor is).
"""

from __future__ import annotations

import sys
import time

import numpy as np


def _normal(line: np.ndarray) -> np.ndarray:
    """Our ``in`` side: the arrow A→B turned 90° clockwise on screen (y down)."""
    ab = line[1] - line[0]
    return np.array([-ab[1], ab[0]])


def _frames(data, run: str):
    """Per frame: xyxy (N, 4), classes, track ids, scores."""
    n = int(data[f"{run}_n"])
    frame, xyxy = data[f"{run}_frame"], data[f"{run}_xyxy"]
    cls, tid = data[f"{run}_cls"], data[f"{run}_tid"]
    score = data[f"{run}_score"]
    bounds = np.searchsorted(frame, np.arange(n + 1))
    for i in range(n):
        s = slice(bounds[i], bounds[i + 1])
        yield xyxy[s], cls[s], tid[s], score[s]


def supervision_tracked(frames, fps: float):
    """Detections through Roboflow's ByteTrack (``trackers``, which supervision
    points to for tracking), as supervision's docs chain them."""
    import supervision as sv
    import trackers

    tracker = trackers.ByteTrackTracker(frame_rate=fps)
    for xyxy, cls, _, score in frames:
        out = tracker.update(sv.Detections(
            xyxy=xyxy.astype(np.float32).reshape(-1, 4),
            confidence=score.astype(np.float32), class_id=cls.astype(int),
        ))
        yield out.xyxy, out.class_id, out.tracker_id, out.confidence


def ultralytics_tracked(frames, fps: float):
    """Detections through Ultralytics' default tracker (``botsort.yaml``, what
    ``model.track()`` uses), called as its tracking callback calls it. Its
    settings count frames, not seconds; ``fps`` is not used."""
    import torch
    from ultralytics.engine.results import Boxes
    from ultralytics.trackers.track import TRACKER_MAP
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    cfg = IterableSimpleNamespace(**YAML.load(check_yaml("botsort.yaml")))
    tracker = TRACKER_MAP[cfg.tracker_type](args=cfg)
    image = np.zeros((720, 1280, 3), np.uint8)
    for xyxy, cls, _, score in frames:
        rows = np.concatenate([xyxy.reshape(-1, 4), score[:, None], cls[:, None]], 1)
        det = Boxes(torch.from_numpy(rows.astype(np.float32)), image.shape[:2])
        out = tracker.update(det.cpu().numpy(), image)
        out = np.asarray(out, np.float64).reshape(-1, 8)
        yield out[:, :4], out[:, 6].astype(int), out[:, 4].astype(int), out[:, 5]


def supervision_run(frames, lines, zones):
    import supervision as sv

    # supervision's `in` is the side where cross(A→B, P − A) < 0, ours where it
    # is > 0: the line goes in with its ends swapped so both say `in` alike.
    counters = [
        sv.LineZone(
            start=sv.Point(*line[1]), end=sv.Point(*line[0]),
            triggering_anchors=[sv.Position.BOTTOM_CENTER],
        )
        for line in lines
    ]
    polys = [
        sv.PolygonZone(np.round(z).astype(int),
                       triggering_anchors=(sv.Position.BOTTOM_CENTER,))
        for z in zones
    ]
    occ = []
    cpu = 0.0
    for xyxy, cls, tid, _ in frames:
        dets = sv.Detections(
            xyxy=xyxy.astype(np.float32).reshape(-1, 4),
            class_id=cls.astype(int), tracker_id=tid.astype(int),
        )
        c0 = time.process_time()
        for counter in counters:
            counter.trigger(dets)
        row = [int(zone.trigger(dets).sum()) for zone in polys]
        cpu += time.process_time() - c0
        occ.append(row)
    counts = []
    for li, counter in enumerate(counters):
        for c, n in counter.in_count_per_class.items():
            counts.append((li, int(c), 0, n))
        for c, n in counter.out_count_per_class.items():
            counts.append((li, int(c), 1, n))
    return counts, np.array(occ, np.int32).reshape(-1, len(zones)), cpu


def ultralytics_run(frames, lines, zones):
    import torch
    from ultralytics.solutions import ObjectCounter, RegionCounter

    feed: dict[str, list] = {}

    def extract_tracks(self, im0) -> None:
        # What BaseSolution.extract_tracks sets from its own model.track(): the
        # tracks given instead, no model run.
        self.boxes, self.clss = feed["boxes"], feed["clss"]
        self.track_ids, self.confs = feed["ids"], feed["confs"]

    class FedCounter(ObjectCounter):
        pass

    class FedRegions(RegionCounter):
        pass

    FedCounter.extract_tracks = extract_tracks
    FedRegions.extract_tracks = extract_tracks
    # An architecture file builds an untrained model locally, so nothing is
    # downloaded; it is never run.
    common = {"model": "yolo11n.yaml", "show": False, "verbose": False}
    counters = [
        FedCounter(region=[tuple(map(float, p)) for p in line], **common)
        for line in lines
    ]
    polygons = {f"z{k}": [tuple(map(float, p)) for p in z] for k, z in enumerate(zones)}
    regions = FedRegions(region=polygons, **common)
    names = counters[0].names
    class_of = {str(v): int(k) for k, v in names.items()}
    image = np.zeros((720, 1280, 3), np.uint8)
    occ = []
    cpu = 0.0
    for xyxy, cls, tid, _ in frames:
        shifted = xyxy.astype(np.float32).reshape(-1, 4).copy()
        half = (shifted[:, 3] - shifted[:, 1]) / 2
        shifted[:, 1] += half
        shifted[:, 3] += half
        feed.update(
            boxes=torch.from_numpy(shifted), clss=[int(c) for c in cls],
            ids=[int(t) for t in tid], confs=[1.0] * len(tid),
        )
        c0 = time.process_time()
        for counter in counters:
            counter.process(image)
        result = regions.process(image)
        cpu += time.process_time() - c0
        occ.append([int(result.region_counts.get(f"z{k}", 0))
                    for k in range(len(zones))])
    counts = []
    for li, (counter, line) in enumerate(zip(counters, lines, strict=True)):
        # Its rule: a line taller than wide counts motion to the right as IN,
        # otherwise motion down.
        tall = abs(line[0][0] - line[1][0]) < abs(line[0][1] - line[1][1])
        ul_in = np.array([1.0, 0.0]) if tall else np.array([0.0, 1.0])
        same = float(ul_in @ _normal(line)) > 0
        for name, io in counter.classwise_count.items():
            c = class_of[str(name)]
            counts.append((li, c, 0 if same else 1, io["IN"]))
            counts.append((li, c, 1 if same else 0, io["OUT"]))
    return counts, np.array(occ, np.int32).reshape(-1, len(zones)), cpu


def main(peer: str, src: str, dst: str) -> int:
    runner = {"supervision": supervision_run, "ultralytics": ultralytics_run}[peer]
    own = {"supervision": supervision_tracked, "ultralytics": ultralytics_tracked}[peer]
    with np.load(src) as f:
        data = dict(f)
    lines = data["lines"]
    zones = [data[k] for k in sorted(k for k in data if k.startswith("zone_"))]
    out: dict[str, np.ndarray] = {}
    for run in data["runs"]:
        frames = _frames(data, str(run))
        if f"{run}_fps" in data:  # untracked detections: the peer's own tracker
            frames = own(frames, float(data[f"{run}_fps"]))
        counts, occ, cpu = runner(frames, lines, zones)
        out[f"{run}_counts"] = np.array(counts, np.int64).reshape(-1, 4)
        out[f"{run}_occ"] = occ
        out[f"{run}_cpu"] = np.array(cpu)
    np.savez(dst, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
