"""Predict-only steps, OC-SORT's recovery after a gap, camera-motion compensation
and tracker parameters from the command line."""

from __future__ import annotations

import numpy as np
import pytest

from core.types import Detections
from pipeline.tracking import make_tracker, parse_tracker_params
from pipeline.tracking.cmc import CameraMotion
from tests.conftest import make_detections

NAMES = ("bytetrack", "ocsort", "sort")


def box(cx: float, cy: float, w: float = 40, h: float = 80) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


@pytest.mark.parametrize("name", NAMES)
def test_predict_moves_tracks_on_and_update_continues(name):
    tracker = make_tracker(name, max_age=10) if name == "sort" else make_tracker(name)
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
    assert tracker.frame_id == 19


@pytest.mark.parametrize("name", NAMES)
def test_predict_without_tracks_and_on_a_fresh_tracker(name):
    tracker = make_tracker(name)
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

    assert ids(make_tracker("ocsort")) == {1}
    assert ids(make_tracker("sort", max_age=30, min_hits=1)) == {1, 2}


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

    assert run(make_tracker("bytetrack", cmc="sparse")) == ({1, 2}, 2 * len(offsets))
    # Without compensation the objects are lost at the jumps: new ids, or frames
    # where they are not reported (coasting turned off to make that visible).
    ids, reported = run(make_tracker("bytetrack", report_lost=0))
    assert len(ids) > 2 or reported < 2 * len(offsets)
    assert make_tracker("ocsort", cmc="ecc").uses_image
    assert not make_tracker("bytetrack").uses_image


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
    with pytest.raises(ValueError, match="max_agee"):
        parse_tracker_params("sort", ["max_agee=3"])
    with pytest.raises(ValueError, match="'x' is not a int"):
        parse_tracker_params("ocsort", ["max_age=x"])
    with pytest.raises(ValueError, match="none"):
        parse_tracker_params("none", ["max_age=3"])
    with pytest.raises(ValueError, match="cmc"):
        make_tracker("ocsort", **parse_tracker_params("ocsort", ["cmc=orb"]))


def test_track_stage_gives_the_frame_only_to_trackers_that_use_it():
    from core.types import Frame, Result
    from pipeline.metrics import Metrics
    from pipeline.stages import Track

    image = np.zeros((48, 64, 3), np.uint8)
    result = Result(Frame("s", 0, 0.0, image), make_detections([box(20, 20, 10, 10)]),
                    {})
    seen = []

    class Plain:  # the tracker interface before CMC: update(detections)
        def update(self, detections):
            return detections

    class WithCMC:
        uses_image = True

        def update(self, detections, image=None):
            seen.append(image)
            return detections

    Track(Plain(), Metrics())(result)
    Track(WithCMC(), Metrics())(result)
    assert len(seen) == 1 and seen[0] is image
