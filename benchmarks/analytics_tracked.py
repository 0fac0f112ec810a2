"""Detections as a detector gives them, and the project's trackers over them, for
``benchmarks.analytics_bench`` (input (c)).

A scene's objects are given as duck-typed tracks (``track_id``, ``class_id``,
``start``, ``end``, ``at(t)``, ``visible(t)``) so this module needs nothing of
the scene generator.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.boxes import iou_matrix
from core.types import Detections
from pipeline.tracking import make_tracker

JITTER_PX = 3.0
"""σ of the box jitter per coordinate: a detector's frame-to-frame wobble."""
MISS_RATE = 0.10
"""Detections missed at random."""
GAP_EVERY_S = 10.0
"""Mean seconds between gaps (runs of missed frames) of one object."""
GAP_S = (0.1, 0.5)
"""Length of a gap: several frames at 30 fps, one or two at 5 fps."""
SCORE_RANGE = (0.3, 1.0)
"""Scores of true detections, uniform."""
FALSE_PER_FRAME = 0.5
"""Mean false boxes per frame, each in one frame only, anywhere in the frame."""
FALSE_SCORE_RANGE = (0.1, 0.4)
"""Scores of false boxes, uniform: low, as a detector's clutter is."""
MATCH_IOU = 0.3
"""Least IoU for a tracker's box to be taken as a true object's (scoring only)."""


@dataclass
class DetectorFrames:
    """One scene seen by a simulated detector, frame by frame.

    ``dets``: untracked ``Detections`` (``track_ids`` -1). ``truth``: per frame
    the visible objects' true anchors (K, 2) and classes (K,), for occupancy.
    ``true_boxes`` / ``true_ids``: per frame the visible objects' true xyxy boxes
    and scene ids, to tell which object a tracker's box is.
    """

    dets: list[Detections]
    truth: list[tuple[np.ndarray, np.ndarray]]
    true_boxes: list[np.ndarray]
    true_ids: list[np.ndarray]


def detector_frames(
    tracks: Sequence,
    times: np.ndarray,
    box_wh: dict[int, tuple[float, float]],
    size: tuple[int, int],
    rng: np.random.Generator,
) -> DetectorFrames:
    """What a detector reports for ``tracks`` at ``times``: jittered boxes, misses
    (random and in gaps of several frames), scores in ``SCORE_RANGE``, false
    boxes with low scores, no ids."""
    rows: list[tuple[np.ndarray, ...]] = []
    for tr in tracks:
        k = np.flatnonzero(tr.visible(times))
        if not len(k):
            continue
        p = tr.at(times[k])
        w, h = box_wh[tr.class_id]
        boxes = np.stack([p[:, 0] - w / 2, p[:, 1] - h, p[:, 0] + w / 2, p[:, 1]], 1)
        seen = rng.random(len(k)) >= MISS_RATE
        for _ in range(rng.poisson((tr.end - tr.start) / GAP_EVERY_S)):
            g0 = rng.uniform(tr.start, tr.end)
            seen &= ~((times[k] >= g0) & (times[k] < g0 + rng.uniform(*GAP_S)))
        jittered = boxes + rng.normal(0, JITTER_PX, boxes.shape)
        scores = rng.uniform(*SCORE_RANGE, len(k))
        rows.append((k, boxes, p, jittered, scores, seen,
                     np.full(len(k), tr.class_id), np.full(len(k), tr.track_id)))
    k, boxes, p, jittered, scores, seen, cls, tid = (
        np.concatenate(c) for c in zip(*rows, strict=True)
    )
    order = np.argsort(k, kind="stable")
    k, boxes, p, jittered = k[order], boxes[order], p[order], jittered[order]
    scores, seen, cls, tid = scores[order], seen[order], cls[order], tid[order]
    bounds = np.searchsorted(k, np.arange(len(times) + 1))
    classes = np.array(sorted(box_wh))
    out = DetectorFrames([], [], [], [])
    for i in range(len(times)):
        s = slice(bounds[i], bounds[i + 1])
        d = seen[s]
        n_false = rng.poisson(FALSE_PER_FRAME)
        f_cls = rng.choice(classes, n_false)
        f_wh = np.array([box_wh[int(c)] for c in f_cls]).reshape(n_false, 2)
        f_xy = rng.uniform([0, 0], size, (n_false, 2))
        f_box = np.concatenate([f_xy - f_wh / 2, f_xy + f_wh / 2], 1)
        xyxy = np.concatenate([jittered[s][d], f_box]).astype(np.float32)
        sc = np.concatenate([scores[s][d], rng.uniform(*FALSE_SCORE_RANGE, n_false)])
        out.dets.append(
            Detections(xyxy, sc.astype(np.float32),
                       np.concatenate([cls[s][d], f_cls]).astype(np.int32))
        )
        out.truth.append((p[s], cls[s]))
        out.true_boxes.append(boxes[s])
        out.true_ids.append(tid[s])
    return out


@dataclass
class TrackedRun:
    """A tracker's output over one scene: the tracked frames, the scene id each
    tracker id stands for most often, and the tracker's CPU seconds."""

    frames: list[Detections]
    true_id: dict[int, int]
    cpu_s: float


def run_tracker(name: str, fps: float, seen: DetectorFrames, times: np.ndarray
                ) -> TrackedRun:
    """``seen`` through ``make_tracker(name, frame_rate=fps)``, one ``update``
    per frame the detector ran on (frames with nothing detected included: the
    detector did run), as the track stage calls it."""
    tracker = make_tracker(name, frame_rate=fps)
    assert tracker is not None
    frames: list[Detections] = []
    votes: dict[int, Counter] = {}
    cpu = 0.0
    for i, t in enumerate(times):
        c0 = time.process_time()
        out = tracker.update(seen.dets[i], timestamp=float(t))
        cpu += time.process_time() - c0
        frames.append(out)
        for tracker_id, scene_id in _match(out, seen.true_boxes[i], seen.true_ids[i]):
            votes.setdefault(tracker_id, Counter())[scene_id] += 1
    true_id = {k: v.most_common(1)[0][0] for k, v in votes.items()}
    return TrackedRun(frames, true_id, cpu)


def _match(out: Detections, boxes: np.ndarray, ids: np.ndarray
           ) -> list[tuple[int, int]]:
    """(tracker id, scene id) pairs of one frame, by best IoU >= ``MATCH_IOU``."""
    if not len(out) or not len(boxes):
        return []
    iou = iou_matrix(out.xyxy.astype(np.float64), boxes)
    r, c = linear_sum_assignment(-iou)
    ok = iou[r, c] >= MATCH_IOU
    return [(int(out.track_ids[i]), int(ids[j])) for i, j in zip(r[ok], c[ok],
                                                                 strict=True)]

