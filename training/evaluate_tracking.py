"""Tracking metrics (MOTA, IDF1, HOTA, ID switches, MT/ML) of trackers or of files.

Two ways in:

* ``--gt GT --pred PRED``: score existing MOTChallenge files. GT and PRED are either
  single files or folders laid out like TrackEval's MOT benchmarks:
  ``GT/<seq>/gt/gt.txt`` (or ``GT/<seq>.txt``) and ``PRED/<seq>.txt`` (or
  ``PRED/data/<seq>.txt``).
* ``--video VIDEO --detector noisy-gt|NAME [--tracker bytetrack|ocsort|sort|all]``:
  run trackers on detections (ground truth made noisy, or a detector run on the video
  frames) and score them against the video's ground truth (``--gt``, else
  ``<stem>_gt.txt`` beside the video as ``training.data.generate`` writes it).

Scoring uses TrackEval's own HOTA/CLEAR/Identity metric classes on sequences we
read here: class-agnostic, ground-truth rows whose MOT "consider" flag is 0
ignored; ``--pedestrians`` applies the MOT17/MOT20 benchmark rules instead.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.boxes import iou_matrix, xywh_to_xyxy
from core.formats import MOT_COLUMNS, mot_rows, read_mot, write_mot
from core.types import Detections
from pipeline.tracking import TRACKERS, make_tracker, parse_tracker_params_for

log = logging.getLogger(__name__)

SUMMARY = ("MOTA", "IDF1", "HOTA", "IDSW", "MT", "ML")


def find_sequences(gt: str | Path, pred: str | Path | None = None
                   ) -> dict[str, tuple[Path, Path | None]]:
    """Sequence name -> (ground-truth file, prediction file or None).

    ``gt`` is a file or a folder of ``<seq>/gt/gt.txt`` or ``<seq>.txt``;
    ``pred`` a file or a folder of ``<seq>.txt`` or ``data/<seq>.txt``.
    """
    gt, pred = Path(gt), None if pred is None else Path(pred)
    if gt.is_file():
        seqs = {gt.parent.parent.name if gt.name == "gt.txt" else gt.stem: gt}
    elif gt.is_dir():
        seqs = {p.parent.parent.name: p for p in sorted(gt.glob("*/gt/gt.txt"))}
        seqs = seqs or {p.stem: p for p in sorted(gt.glob("*.txt"))}
        if not seqs:
            raise ValueError(f"--gt {gt}: no <seq>/gt/gt.txt or <seq>.txt inside")
    else:
        raise FileNotFoundError(f"ground truth not found: {gt}")
    if pred is None:
        return {name: (path, None) for name, path in seqs.items()}
    if pred.is_file():
        if len(seqs) != 1:
            raise ValueError(f"--pred {pred} is one file but --gt has {len(seqs)} "
                             "sequences; pass a folder of <seq>.txt")
        return {name: (path, pred) for name, path in seqs.items()}
    if not pred.is_dir():
        raise FileNotFoundError(f"predictions not found: {pred}")
    out = {}
    for name, path in seqs.items():
        found = [p for p in (pred / f"{name}.txt", pred / "data" / f"{name}.txt")
                 if p.is_file()]
        if not found:
            raise ValueError(f"--pred {pred}: no {name}.txt or data/{name}.txt for "
                             f"sequence {name!r}")
        out[name] = (path, found[0])
    return out


def _relabel(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Ids -> contiguous 0..K-1 (TrackEval indexes arrays by id)."""
    unique, inverse = np.unique(ids.astype(np.int64), return_inverse=True)
    return inverse.astype(np.int64), len(unique)


# MOTChallenge classes whose boxes a tracker may report without penalty:
# person on vehicle, non-MOT vehicle, static person, distractor, reflection.
MOT_DISTRACTORS = (2, 6, 7, 8, 12)
MOT_PEDESTRIAN = 1


def mot_pedestrians(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The MOTChallenge benchmark's own filtering (as TrackEval's MOT dataset does):
    per frame, predictions matched (Hungarian, IoU >= 0.5) to a distractor-class
    ground-truth box are dropped; only pedestrian ground truth is scored."""
    from scipy.optimize import linear_sum_assignment

    drop = np.zeros(len(pred), dtype=bool)
    for frame in np.intersect1d(gt[:, 0], pred[:, 0]):
        g = np.flatnonzero(gt[:, 0] == frame)
        p = np.flatnonzero(pred[:, 0] == frame)
        iou = iou_matrix(xywh_to_xyxy(gt[g, 2:6]), xywh_to_xyxy(pred[p, 2:6]))
        iou[iou < 0.5 - 1e-6] = 0
        rows, cols = linear_sum_assignment(-iou)
        hit = iou[rows, cols] > 1e-6
        rows, cols = rows[hit], cols[hit]
        drop[p[cols[np.isin(gt[g[rows], 7], MOT_DISTRACTORS)]]] = True
    return gt[gt[:, 7] == MOT_PEDESTRIAN], pred[~drop]


def sequence_data(gt: np.ndarray, pred: np.ndarray, name: str = "seq"
                  ) -> dict[str, Any]:
    """Two MOT row arrays -> the per-sequence dict TrackEval's metrics consume
    (ids relabelled per frame list, IoU similarity per frame)."""
    gt = gt[gt[:, 6] != 0]  # MOT convention: flag 0 rows are not scored
    n_frames = int(max(gt[:, 0].max(initial=0), pred[:, 0].max(initial=0)))
    for label, rows in (("ground truth", gt), ("prediction", pred)):
        key = rows[:, 0].astype(np.int64) * (1 << 32) + rows[:, 1].astype(np.int64)
        if len(np.unique(key)) != len(key):
            raise ValueError(f"{name}: {label} has an id twice in one frame")
        if len(rows) and rows[:, 0].min() < 1:
            raise ValueError(f"{name}: {label} frames must be 1-based, found "
                             f"{int(rows[:, 0].min())}")
    gt = gt[np.argsort(gt[:, 0], kind="stable")]
    pred = pred[np.argsort(pred[:, 0], kind="stable")]
    gt_ids, n_gt_ids = _relabel(gt[:, 1])
    pred_ids, n_pred_ids = _relabel(pred[:, 1])
    frames = np.arange(1, n_frames + 2)
    gt_cut = np.searchsorted(gt[:, 0], frames)
    pred_cut = np.searchsorted(pred[:, 0], frames)
    data: dict[str, Any] = {
        "seq": name, "num_timesteps": n_frames, "num_gt_ids": n_gt_ids,
        "num_tracker_ids": n_pred_ids, "num_gt_dets": len(gt),
        "num_tracker_dets": len(pred), "gt_ids": [], "tracker_ids": [],
        "similarity_scores": [],
    }
    gt_boxes, pred_boxes = xywh_to_xyxy(gt[:, 2:6]), xywh_to_xyxy(pred[:, 2:6])
    for t in range(n_frames):
        g = slice(gt_cut[t], gt_cut[t + 1])
        p = slice(pred_cut[t], pred_cut[t + 1])
        data["gt_ids"].append(gt_ids[g])
        data["tracker_ids"].append(pred_ids[p])
        data["similarity_scores"].append(
            iou_matrix(gt_boxes[g], pred_boxes[p]).astype(np.float64))
    return data


def _metrics(iou_threshold: float) -> list[Any]:
    """TrackEval's metric objects. trackeval >= 1.3 runs on NumPy 2 as is (older
    releases used the removed ``np.float``/``np.int`` aliases and are not supported);
    imported here so the rest of streamdet never pays for it."""
    try:
        from trackeval.metrics import CLEAR, HOTA, Identity
    except ImportError as exc:
        raise ImportError("tracking metrics need TrackEval: pip install --no-deps "
                          "'trackeval>=1.3' tabulate (see requirements.txt)") from exc
    config = {"THRESHOLD": iou_threshold, "PRINT_CONFIG": False}
    return [HOTA(), CLEAR(config), Identity(config)]


def evaluate(gt: dict[str, np.ndarray], pred: dict[str, np.ndarray],
             iou_threshold: float = 0.5, pedestrians: bool = False
             ) -> dict[str, dict[str, float]]:
    """MOT metrics per sequence and ``"COMBINED"`` over all of them.

    ``gt``/``pred`` map sequence name -> MOT rows as ``read_mot`` returns them.
    Class-agnostic unless ``pedestrians`` (MOT17/MOT20 rules, ``mot_pedestrians``).
    Each result holds MOTA, IDF1, HOTA (mean over TrackEval's IoU thresholds),
    DetA, AssA as fractions in [0, 1] (MOTA can be negative) and IDSW, MT, ML,
    FP, FN as counts.
    """
    if set(gt) != set(pred):
        raise ValueError(f"sequences differ: gt {sorted(gt)}, pred {sorted(pred)}")
    metrics = _metrics(iou_threshold)
    per_metric: list[dict[str, Any]] = [{} for _ in metrics]
    for name in gt:
        seq_gt, seq_pred = gt[name], pred[name]
        if pedestrians:
            seq_gt, seq_pred = mot_pedestrians(seq_gt, seq_pred)
        data = sequence_data(seq_gt, seq_pred, name)
        for metric, store in zip(metrics, per_metric, strict=True):
            store[name] = metric.eval_sequence(data)
    results = {name: _summary([store[name] for store in per_metric]) for name in gt}
    combined = [metric.combine_sequences(store)
                for metric, store in zip(metrics, per_metric, strict=True)]
    results["COMBINED"] = _summary(combined)
    return results


def _summary(parts: list[dict[str, Any]]) -> dict[str, float]:
    hota, clear, identity = parts
    return {
        "MOTA": float(clear["MOTA"]), "IDF1": float(identity["IDF1"]),
        "HOTA": float(np.mean(hota["HOTA"])), "DetA": float(np.mean(hota["DetA"])),
        "AssA": float(np.mean(hota["AssA"])), "IDSW": int(clear["IDSW"]),
        "MT": int(clear["MT"]), "ML": int(clear["ML"]), "FP": int(clear["CLR_FP"]),
        "FN": int(clear["CLR_FN"]),
    }


def noisy_detections(gt: np.ndarray, n_frames: int, noise: float = 0.05,
                     drop: float = 0.1, fp: float = 0.05, seed: int = 0,
                     frame_size: tuple[int, int] | None = None) -> list[Detections]:
    """Detections made from ground truth, as a middling detector would give them.

    Each box is jittered by ``noise`` x its size, missed with probability ``drop``
    (and always when less than 10% visible), and scored lower the more it is
    occluded (so ByteTrack's low-score stage has work to do). False positives are
    added, ``fp`` per ground-truth box on average, with scores in [0.1, 0.7].
    ``frame_size`` = (height, width) bounds them (default: the ground truth's
    extent). Returns one ``Detections`` per frame 1..n_frames (xyxy pixels;
    class_ids = MOT class - 1).
    """
    for name, value in (("noise", noise), ("drop", drop), ("fp", fp)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    rng = np.random.default_rng(seed)
    gt = gt[(gt[:, 6] != 0) & (gt[:, 0] >= 1) & (gt[:, 0] <= n_frames)]
    vis = np.where(gt[:, 8] >= 0, gt[:, 8], 1.0)
    keep = (rng.random(len(gt)) >= drop) & (vis >= 0.1)
    gt, vis = gt[keep], vis[keep]
    wh = gt[:, 4:6]
    centre = gt[:, 2:4] + wh / 2 + rng.normal(0, noise, (len(gt), 2)) * wh
    wh = wh * np.clip(1 + rng.normal(0, noise, (len(gt), 2)), 0.5, 1.5)
    xyxy = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)
    scores = np.clip(0.3 + 0.65 * vis + rng.normal(0, 0.08, len(gt)), 0.05, 1.0)
    classes = np.maximum(gt[:, 7] - 1, 0)
    frames = gt[:, 0].astype(np.int64)

    # False positives: box sizes drawn from the ground truth, anywhere in the frame.
    n_fp = rng.poisson(fp * max(len(gt), 1))
    if n_fp and len(gt):
        if frame_size is None:
            height, width = float(xyxy[:, 3].max()), float(xyxy[:, 2].max())
        else:
            height, width = frame_size
        fp_wh = wh[rng.integers(0, len(gt), n_fp)]
        fp_tl = rng.random((n_fp, 2)) * np.maximum([width, height] - fp_wh, 1)
        xyxy = np.concatenate([xyxy, np.concatenate([fp_tl, fp_tl + fp_wh], 1)])
        scores = np.concatenate([scores, rng.uniform(0.1, 0.7, n_fp)])
        classes = np.concatenate([classes, rng.integers(0, int(classes.max()) + 1,
                                                        n_fp)])
        frames = np.concatenate([frames, rng.integers(1, n_frames + 1, n_fp)])
    order = np.argsort(frames, kind="stable")
    cuts = np.searchsorted(frames[order], np.arange(1, n_frames + 2))
    xyxy, scores, classes = xyxy[order], scores[order], classes[order]
    return [Detections(xyxy[a:b], scores[a:b], classes[a:b])
            for a, b in itertools.pairwise(cuts)]


def detector_detections(video: str | Path, detector: str, device: str = "cpu",
                        conf_threshold: float | None = None) -> list[Detections]:
    """Run a detector (shipped name or model file) over every frame of a video.

    ``conf_threshold`` overrides the detector's own score cut-off; ByteTrack wants
    boxes down to its ``track_low_thresh`` (0.1)."""
    from engines.build import load_detector
    from pipeline.sources import media_info, read_frames

    out: list[Detections] = []
    total = media_info(video)[0] or None
    options = {} if conf_threshold is None else {"conf": conf_threshold}
    with load_detector(detector, device=device, **options) as model, \
            tqdm(total=total, desc=f"detect {detector}") as bar:
        batch: list[np.ndarray] = []
        for frame in read_frames(video):
            batch.append(frame.image)
            if len(batch) >= model.max_batch:
                out.extend(model.detect(batch))
                bar.update(len(batch))
                batch = []
        if batch:
            out.extend(model.detect(batch))
            bar.update(len(batch))
    return out


def run_tracker(name: str, detections: list[Detections], frame_rate: float = 30.0,
                **params: Any) -> tuple[np.ndarray, float]:
    """Track a sequence of per-frame detections (frame 1 first, one frame period
    of ``frame_rate`` apart).

    Returns MOT rows (N, 7) ``frame, id, x, y, w, h, score`` and the mean
    milliseconds per frame spent in ``tracker.update``.
    """
    tracker = make_tracker(name, frame_rate=frame_rate, **params)
    if tracker is None:
        raise ValueError("evaluating tracks needs a tracker, not 'none'")
    rows: list[np.ndarray] = []
    spent = 0.0
    for frame, dets in enumerate(detections, start=1):
        start = time.perf_counter()
        tracked = tracker.update(dets, timestamp=(frame - 1) / frame_rate)
        spent += time.perf_counter() - start
        rows.append(mot_rows(frame, tracked.xyxy, tracked.track_ids,
                             tracked.scores)[:, :7])
    rows_arr = np.concatenate(rows) if rows else np.zeros((0, 7))
    return rows_arr, 1000.0 * spent / max(len(detections), 1)


def _video_info(video: Path) -> tuple[int, float, tuple[int, int]]:
    """(frames, FPS, (height, width)) through the pipeline's own source."""
    from pipeline.sources import media_info

    count, fps, (width, height) = media_info(video)
    return count, fps or 30.0, (height, width)


def _gt_beside(video: Path) -> Path:
    for candidate in (video.with_name(f"{video.stem}_gt.txt"),
                      video.parent / "gt" / "gt.txt", video.with_suffix(".txt")):
        if candidate.is_file():
            return candidate
    raise ValueError(f"no ground truth for {video}: pass --gt "
                     f"(looked for {video.stem}_gt.txt and gt/gt.txt beside it)")


def print_table(rows: list[tuple[str, dict[str, float], float | None]]) -> None:
    """One line per tracker: MOTA, IDF1, HOTA in %, counts, ms/frame."""
    header = f"{'tracker':<12}{'MOTA':>8}{'IDF1':>8}{'HOTA':>8}{'IDsw':>7}" \
             f"{'MT':>5}{'ML':>5}{'ms/frame':>10}"
    print(header)
    print("-" * len(header))
    for name, m, ms in rows:
        timing = f"{ms:>10.3f}" if ms is not None else f"{'-':>10}"
        print(f"{name:<12}{100 * m['MOTA']:>8.1f}{100 * m['IDF1']:>8.1f}"
              f"{100 * m['HOTA']:>8.1f}{m['IDSW']:>7d}{m['MT']:>5d}{m['ML']:>5d}"
              f"{timing}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", type=Path,
                        help="MOT ground truth file or folder (<seq>/gt/gt.txt)")
    parser.add_argument("--pred", type=Path,
                        help="tracker output file or folder (<seq>.txt) to score")
    parser.add_argument("--video", type=Path, help="video to run trackers on")
    parser.add_argument("--detector", default="noisy-gt",
                        help="'noisy-gt' or a detector name/model file (yolo, ...)")
    parser.add_argument("--tracker", default="all",
                        choices=[*TRACKERS, "all"], help="tracker(s) to run")
    parser.add_argument("--noise", type=float, default=0.05,
                        help="noisy-gt: box jitter as a fraction of its size")
    parser.add_argument("--drop", type=float, default=0.1,
                        help="noisy-gt: probability a box is missed")
    parser.add_argument("--fp", type=float, default=0.05,
                        help="noisy-gt: false positives per ground-truth box")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frame-rate", type=float, default=None,
                        help="frame rate for the trackers (default: the video's, "
                             "else 30)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="tracker parameter, e.g. track_high_thresh=0.3 or "
                             "sort.max_age=5 (repeatable)")
    parser.add_argument("--iou", type=float, default=0.5,
                        help="IoU for a match in MOTA/IDF1 (HOTA averages 0.05..0.95)")
    parser.add_argument("--pedestrians", action="store_true",
                        help="MOT17/MOT20 rules: score class 1 only; boxes on "
                             "distractor classes are not false positives")
    parser.add_argument("--device", default="cpu", help="detector device")
    parser.add_argument("--conf", type=float, default=None,
                        help="detector score threshold (default: the detector's; "
                             "ByteTrack uses boxes down to 0.1)")
    parser.add_argument("--save", type=Path,
                        help="folder to write each tracker's <tracker>/<seq>.txt")


def run(args: argparse.Namespace) -> int:
    if args.pred is not None:
        if args.gt is None:
            raise ValueError("--pred needs --gt")
        seqs = find_sequences(args.gt, args.pred)
        gt = {name: read_mot(g) for name, (g, _) in seqs.items()}
        pred = {name: read_mot(p) for name, (_, p) in seqs.items()}
        results = evaluate(gt, pred, args.iou, args.pedestrians)
        rows = [(name, m, None) for name, m in results.items()
                if name != "COMBINED" or len(results) > 2]
        print_table(rows)
        return 0
    if args.video is None and args.gt is None:
        raise ValueError("pass --gt with --pred, or --video (and/or --gt) with "
                         "--detector")
    frame_size = None
    frame_rate = args.frame_rate
    if args.video is not None:
        if not args.video.is_file():
            raise FileNotFoundError(f"video not found: {args.video}")
        n_frames, fps, frame_size = _video_info(args.video)
        frame_rate = frame_rate or fps
        gt_path = args.gt or _gt_beside(args.video)
    elif args.detector != "noisy-gt":
        raise ValueError(f"--detector {args.detector} needs --video")
    else:
        gt_path, n_frames = args.gt, 0
    gt = read_mot(gt_path)
    n_frames = max(n_frames, int(gt[:, 0].max(initial=0)))
    frame_rate = frame_rate or 30.0
    name = args.video.stem if args.video is not None else Path(gt_path).stem
    if args.detector == "noisy-gt":
        detections = noisy_detections(gt, n_frames, args.noise, args.drop, args.fp,
                                      args.seed, frame_size)
    else:
        detections = detector_detections(args.video, args.detector, args.device,
                                         args.conf)
    trackers = list(TRACKERS) if args.tracker == "all" else [args.tracker]
    params = parse_tracker_params_for(trackers, args.param)
    table = []
    for tracker in trackers:
        rows, ms = run_tracker(tracker, detections, frame_rate, **params[tracker])
        if args.save is not None:
            write_mot(args.save / tracker / f"{name}.txt", rows)
        metrics = evaluate({name: gt}, {name: _pad(rows)}, args.iou,
                           args.pedestrians)[name]
        log.info("%s on %s (%d frames, %s): %s", tracker, name, len(detections),
                 args.detector, metrics)
        table.append((tracker, metrics, ms))
    print_table(table)
    return 0


def _pad(rows: np.ndarray) -> np.ndarray:
    """Tracker rows (N, 7) -> (N, 10) MOT rows."""
    out = np.full((len(rows), MOT_COLUMNS), -1.0)
    out[:, : rows.shape[1]] = rows
    return out
