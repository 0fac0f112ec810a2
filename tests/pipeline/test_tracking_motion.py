"""Predict-only steps, OC-SORT's recovery after a gap, camera-motion compensation
and tracker parameters from the command line."""

from __future__ import annotations

import numpy as np
import pytest

from core.types import Detections
from pipeline.tracking import make_tracker, parse_tracker_params
from pipeline.tracking.cmc import CameraMotion
from tests.conftest import make_detections
from tests.pipeline.tracking_helpers import regular

NAMES = ("bytetrack", "ocsort", "sort")


def box(cx: float, cy: float, w: float = 40, h: float = 80) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


@pytest.mark.parametrize("name", NAMES)
def test_predict_moves_tracks_on_and_update_continues(name):
    tracker = regular(make_tracker(name, max_age=10) if name == "sort"
                      else make_tracker(name))
    for t in range(15):
        out = tracker.update(make_detections([box(100 + 5 * t, 200)]))
    assert out.track_ids.tolist() == [1]
    for k in range(1, 4):  # three frames the detector skipped
        pred = tracker.predict()
        assert pred.track_ids.tolist() == [1]
        centre = (pred.xyxy[0, 0] + pred.xyxy[0, 2]) / 2
        assert centre == pytest.approx(100 + 5 * (14 + k), abs=1.5)
        assert pred.scores.tolist() == pytest.approx([0.9])
    out = tracker.update(make_detections([box(100 + 5 * 18, 200)]))
    assert out.track_ids.tolist() == [1]
    assert tracker.now == 19


@pytest.mark.parametrize("name", NAMES)
def test_predict_without_tracks_and_on_a_fresh_tracker(name):
    tracker = regular(make_tracker(name))
    pred = tracker.predict()
    assert isinstance(pred, Detections) and len(pred) == 0
    assert pred.xyxy.shape == (0, 4) and pred.track_ids.dtype == np.int32
    assert len(tracker.update(make_detections([box(100, 100)]))) == 1


def test_ocsort_recovers_id_across_a_gap_where_sort_loses_it():
    # The object moves right, vanishes for ten frames, and is seen again where it
    # was last seen (it stopped): the prediction has run 80 px ahead.
    frames = [box(100 + 8 * t, 200) for t in range(12)]
    frames += [None] * 10 + [box(100 + 8 * 11, 200)] * 8

    def ids(tracker) -> set[int]:
        seen: set[int] = set()
        for b in frames:
            dets = make_detections([] if b is None else [b])
            seen |= set(tracker.update(dets).track_ids.tolist())
        return seen

    assert ids(regular(make_tracker("ocsort"))) == {1}
    assert ids(regular(make_tracker("sort", max_age=30, min_hits=1))) == {1, 2}


def _texture(seed: int = 0, size: tuple[int, int] = (400, 700)) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[0] // 20, size[1] // 20), np.uint8)
    big = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    big = cv2.GaussianBlur(big, (0, 0), 3)
    return np.repeat(big[:, :, None], 3, axis=2)


@pytest.mark.parametrize("method", ["sparse", "ecc"])
def test_camera_motion_measures_a_synthetic_pan(method):
    world = _texture()
    cmc = CameraMotion(method)
    assert np.allclose(cmc.estimate(world[50:290, 100:420]), np.eye(2, 3))
    # The camera moves 12 px right and 6 px down: content moves left and up.
    affine = cmc.estimate(world[56:296, 112:432])
    np.testing.assert_allclose(affine[:, :2], np.eye(2), atol=0.02)
    np.testing.assert_allclose(affine[:, 2], [-12, -6], atol=1.0)


def test_camera_motion_compensation_keeps_ids_through_a_jerky_pan():
    # Objects at rest in the world; the camera stops and jumps 40 px on alternate
    # frames, so in the image every box stands, then jumps more than its width.
    world = _texture(1, (400, 1100))
    offsets = [100 + 40 * (t // 2) for t in range(16)]
    objects = [(500, 150), (650, 250)]

    def run(tracker) -> tuple[set[int], int]:
        seen: set[int] = set()
        reported = 0
        for x0 in offsets:
            image = world[40:360, x0:x0 + 640]
            boxes = [box(cx - x0, cy, 30, 60) for cx, cy in objects]
            out = tracker.update(make_detections(boxes), image=image)
            seen |= set(out.track_ids.tolist())
            reported += len(out)
        return seen, reported

    assert run(regular(make_tracker("bytetrack", cmc="sparse"))) == (
        {1, 2}, 2 * len(offsets))
    # Without compensation the objects are lost at the jumps: new ids, or frames
    # where they are not reported (coasting turned off to make that visible).
    ids, reported = run(regular(make_tracker("bytetrack", report_lost=0)))
    assert len(ids) > 2 or reported < 2 * len(offsets)


def test_camera_motion_rejects_bad_input():
    with pytest.raises(ValueError, match="'orb'"):
        CameraMotion("orb")
    with pytest.raises(ValueError, match="downscale"):
        CameraMotion("sparse", downscale=0.5)
    with pytest.raises(ValueError, match=r"\(5, 5, 2\)"):
        CameraMotion("sparse").estimate(np.zeros((5, 5, 2), np.uint8))
    # No image (e.g. a tracker fed detections only): no compensation.
    assert np.allclose(CameraMotion("ecc").estimate(None), np.eye(2, 3))


def test_parse_tracker_params():
    assert parse_tracker_params("bytetrack", ["min_hits=3", "cmc=sparse",
                                              "fuse_score=false", "lost_buffer=0.1"]
                                ) == {"min_hits": 3, "cmc": "sparse",
                                      "fuse_score": False, "lost_buffer": 0.1}
    assert parse_tracker_params("OC-SORT", ["use_byte=Yes", "oru=0"]) == {
        "use_byte": True, "oru": False}


@pytest.mark.parametrize(("name", "pairs", "message"), [
    ("sort", ["max_agee=3"], r"'max_agee=3'.*sort's parameters \['cmc', 'iou_thr"),
    ("sort", ["max_age"], "expected NAME=VALUE"),
    ("ocsort", ["max_age=x"], "'x' is not a valid int"),
    ("ocsort", ["max_age=2.5"], "'2.5' is not a valid int"),
    ("bytetrack", ["fuse_score=maybe"], "'maybe' is not a bool"),
    ("bytetrack", ["match_thresh=high"], "'high' is not a valid float"),
    ("ocsort", ["cmc=orb"], "cmc must be one of .*'orb'"),
    ("bytetrack", ["track_high_thresh=1.5"], "track_high_thresh must be in"),
    ("none", ["max_age=3"], "'none', which takes none"),
    ("deepsort", [], "'deepsort'"),
])
def test_parse_tracker_params_rejects_with_the_value(name, pairs, message):
    with pytest.raises(ValueError, match=message):
        parse_tracker_params(name, pairs)


def test_track_stage_gives_the_frame_and_its_timestamp_to_the_tracker():
    from core.types import Frame, Result
    from pipeline.metrics import Metrics
    from pipeline.stages import Track
    from pipeline.tracking import Tracker

    image = np.zeros((48, 64, 3), np.uint8)
    frame = Frame("s", 0, 12.5, image)
    found = Result(frame, make_detections([box(20, 20, 10, 10)]), {})
    skipped = Result(frame, make_detections([]), {}, predicted=True)
    calls = []

    class Recording(Tracker):
        def update(self, detections, *, timestamp, image=None):
            calls.append(("update", timestamp, image))
            return detections

        def predict(self, *, timestamp, image=None):
            calls.append(("predict", timestamp, image))
            return Detections.empty()

        def reset(self):
            calls.clear()

    Track(Recording(), Metrics())(found)
    Track(Recording(), Metrics())(skipped)
    assert calls == [("update", 12.5, image), ("predict", 12.5, image)]
