"""Trackers take time from the frames' timestamps: on a regular stream they track
exactly as they did when they counted frames; dropped frames and outages move
and age the tracks by the time that really passed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from core.types import Detections
from pipeline.tracking import make_tracker
from tests.conftest import make_detections

NAMES = ("bytetrack", "ocsort", "sort")
EXPECTED = Path(__file__).with_name("tracking_regular_expected.json")

# name, frame rate, detect every N frames (the others predicted), parameters.
# The expected ids and rows were recorded with the trackers as they were when
# they counted frames instead of reading timestamps.
CASES = {
    "bytetrack@30": ("bytetrack", 30.0, 1, {}),
    "ocsort@30": ("ocsort", 30.0, 1, {}),
    "sort@30": ("sort", 30.0, 1, {}),
    "bytetrack@10": ("bytetrack", 10.0, 1, {}),
    "ocsort@10": ("ocsort", 10.0, 1, {}),
    "sort@10": ("sort", 10.0, 1, {"max_age": 3}),
    "bytetrack@30/3": ("bytetrack", 30.0, 3, {"lost_velocity_decay": 0.9}),
    "ocsort@30/3": ("ocsort", 30.0, 3, {"lost_buffer": 0.05}),
    "sort@30/3": ("sort", 30.0, 3, {"max_age": 5}),
}


def generated_frames(n_frames: int = 120, n_objects: int = 10, seed: int = 29
                     ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per-frame (xyxy float32, scores float32, class_ids int32) of objects moving
    at constant velocity, bouncing off the frame edges, with jitter, misses, low
    scores, false positives and one long occlusion."""
    rng = np.random.default_rng(seed)
    size = np.array([1280.0, 720.0])
    pos = rng.uniform([100, 100], size - 100, (n_objects, 2))
    vel = rng.uniform(-6, 6, (n_objects, 2))
    w = rng.uniform(30, 80, n_objects)
    wh = np.stack([w, w * rng.uniform(2, 3, n_objects)], 1)
    classes = rng.integers(0, 3, n_objects).astype(np.int32)
    frames = []
    for f in range(n_frames):
        pos += vel
        out = (pos < 50) | (pos > size - 50)
        vel[out] *= -1
        seen = rng.random(n_objects) < 0.9
        if 40 <= f < 55:
            seen[0] = False
        centre = pos + rng.normal(0, 2, pos.shape)
        boxes = np.concatenate([centre - wh / 2, centre + wh / 2], 1)[seen]
        scores = rng.uniform(0.2, 0.95, n_objects)[seen]
        ids = classes[seen]
        if rng.random() < 0.3:
            c = rng.uniform([100, 100], size - 100)
            boxes = np.concatenate([boxes, [[*(c - 20), *(c + 20)]]])
            scores = np.append(scores, rng.uniform(0.15, 0.5))
            ids = np.append(ids, 0)
        frames.append((boxes.astype(np.float32), scores.astype(np.float32),
                       ids.astype(np.int32)))
    return frames


@pytest.mark.parametrize("case", list(CASES))
def test_regular_timestamps_track_as_the_frame_counter_did(case):
    name, fps, every, params = CASES[case]
    tracker = make_tracker(name, frame_rate=fps, **params)
    expected = json.loads(EXPECTED.read_text())[case]
    ids: list[list[int]] = []
    rows: list[str] = []
    for f, (xyxy, scores, classes) in enumerate(generated_frames()):
        stamp = 5.0 + f / fps  # a source clock that does not start at 0
        out = (tracker.update(Detections(xyxy, scores, classes), timestamp=stamp)
               if f % every == 0 else tracker.predict(timestamp=stamp))
        ids.append(out.track_ids.tolist())
        for b, s, t in zip(out.xyxy.tolist(), out.scores.tolist(),
                           out.track_ids.tolist(), strict=True):
            x1, y1, x2, y2 = (round(v, 3) for v in b)
            rows.append(f"{f},{t},{x1:.2f},{y1:.2f},{x2:.2f},{y2:.2f},"
                        f"{round(s, 4):.3f}")
    assert ids == expected["ids"]
    digest = hashlib.sha256(";".join(rows).encode()).hexdigest()
    assert digest == expected["rows_sha256"], "same ids, different boxes or scores"


def box(cx: float, cy: float, w: float = 40, h: float = 80) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def run(tracker, stamps: list[float], boxes: list[list[float] | None]
        ) -> list[list[int]]:
    """Track ids reported per frame (None: nothing detected)."""
    out = []
    for stamp, b in zip(stamps, boxes, strict=True):
        dets = make_detections([] if b is None else [b])
        out.append(tracker.update(dets, timestamp=stamp).track_ids.tolist())
    return out


def matched_ids(tracker, stamps: list[float], boxes: list[list[float]]
                ) -> list[list[int]]:
    """Per frame, the ids reported at the object's detection (centre within
    10 px), not coasting predictions elsewhere."""
    out = []
    for stamp, b in zip(stamps, boxes, strict=True):
        res = tracker.update(make_detections([b]), timestamp=stamp)
        centre = (res.xyxy[:, 0] + res.xyxy[:, 2]) / 2
        out.append(res.track_ids[np.abs(centre - (b[0] + b[2]) / 2) < 10].tolist())
    return out


@pytest.mark.parametrize("name", NAMES)
def test_dropped_frames_predict_the_motion_of_the_time_that_passed(name):
    # 10 FPS, an object 60 px wide moving 20 px per frame. After a regular second
    # two of every three frames are dropped: the object moves 60 px between the
    # frames the tracker sees, and counting frames would predict 20 px.
    fps = 10.0
    kept = list(range(10)) + list(range(10, 40, 3))
    boxes = [box(100 + 20 * k, 200, 60, 120) for k in kept]
    params = {"max_age": 3} if name == "sort" else {}
    by_time = matched_ids(make_tracker(name, frame_rate=fps, **params),
                          [k / fps for k in kept], boxes)
    assert by_time == [[1]] * len(kept)
    # The same boxes one frame period apart, as a frame counter sees them: the
    # object is lost after the first drop.
    by_count = matched_ids(make_tracker(name, frame_rate=fps, **params),
                           [k / fps for k in range(len(kept))], boxes)
    assert by_count[10:] != [[1]] * (len(kept) - 10)


@pytest.mark.parametrize("name", NAMES)
def test_a_track_lost_longer_than_its_lost_time_is_removed(name):
    # A still object seen for 10 frames at 30 FPS, then missing: its track may be
    # lost for 1 s (ByteTrack's track_buffer, OC-SORT's max_age: 30 frames at
    # 30 FPS; SORT's max_age given as 30). The object comes back where it was.
    params = {"max_age": 30} if name == "sort" else {}
    last = 9 / 30

    def ids_after(gap_stamps: list[float]) -> set[int]:
        """Ids reported on the four frames after the object is back."""
        tracker = make_tracker(name, frame_rate=30.0, **params)
        run(tracker, [k / 30 for k in range(10)], [box(200, 200)] * 10)
        run(tracker, gap_stamps, [None] * len(gap_stamps))
        back = [gap_stamps[-1] + k / 30 for k in range(1, 5)]
        return {i for ids in run(tracker, back, [box(200, 200)] * 4) for i in ids}

    # Two frames in 2 s (an outage): the track is gone, the object gets a new id.
    assert ids_after([last + 1.0, last + 2.0]) == {2}
    # Forty frames in 0.5 s (a camera faster than the nominal rate): the track is
    # kept, though more frames came than its 30-frame buffer...
    assert ids_after([last + 0.5 * k / 40 for k in range(1, 41)]) == {1}
    # ...which forty frames at the nominal rate (1.33 s) exceed.
    assert ids_after([last + k / 30 for k in range(1, 41)]) == {2}


def test_outage_then_return_gives_a_new_identity_only_after_the_lost_time():
    for gap_s, expected in ((0.5, {1}), (1.5, {2})):
        tracker = make_tracker("bytetrack", frame_rate=30.0, min_hits=1)
        run(tracker, [k / 30 for k in range(10)], [box(200, 200)] * 10)
        out = tracker.update(make_detections([box(200, 200)]),
                             timestamp=9 / 30 + gap_s)
        assert set(out.track_ids.tolist()) == expected, gap_s


def test_timestamp_must_be_finite_and_backward_clock_still_advances(caplog):
    tracker = make_tracker("bytetrack")
    with pytest.raises(ValueError, match="nan"):
        tracker.update(make_detections([box(100, 100)]), timestamp=float("nan"))
    tracker.reset()
    run(tracker, [10.0, 10.0 + 1 / 30], [box(100, 100)] * 2)
    before = tracker.now
    with caplog.at_level("WARNING"):
        tracker.update(make_detections([box(100, 100)]), timestamp=3.0)
    assert tracker.now == before + 1
    assert "not after the previous" in caplog.text


def test_kalman_prediction_spans_fractional_periods():
    from pipeline.tracking.kalman import KalmanFilterXYAH

    kf = KalmanFilterXYAH()
    mean, cov = kf.initiate(np.array([[100.0, 50.0, 0.5, 80.0]]))
    mean[0, 4] = 6.0  # 6 px per period to the right
    half, half_cov = kf.multi_predict(mean, cov, 0.5)
    whole, whole_cov = kf.multi_predict(mean, cov)
    assert half[0, 0] == pytest.approx(103.0) and whole[0, 0] == pytest.approx(106.0)
    assert half_cov[0, 0, 0] < whole_cov[0, 0, 0]


@pytest.mark.parametrize("name", NAMES)
def test_irregular_intervals_predict_where_the_object_is(name):
    # Frames at irregular intervals of 0.5 to 2.5 periods (a live source under
    # load); the object moves 180 px/s. A prediction a quarter second after the
    # last frame lands where the object is then.
    rng = np.random.default_rng(0)
    fps, speed = 30.0, 180.0
    stamps = np.cumsum(np.r_[0.0, rng.uniform(0.5, 2.5, 40)]) / fps
    tracker = make_tracker(name, frame_rate=fps, **({"max_age": 5}
                                                    if name == "sort" else {}))
    ids = matched_ids(tracker, list(stamps),
                      [box(100 + speed * t, 200, 60, 120) for t in stamps])
    assert ids == [[1]] * len(stamps)
    later = stamps[-1] + 0.25
    predicted = tracker.predict(timestamp=later)
    assert predicted.track_ids.tolist() == [1]
    centre = (predicted.xyxy[0, 0] + predicted.xyxy[0, 2]) / 2
    assert centre == pytest.approx(100 + speed * later, abs=3)
