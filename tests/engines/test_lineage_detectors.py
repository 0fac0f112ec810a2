"""Each shipped lineage detector on a trivial image: one large, clear object
(shapes) or pedestrians from the sample clip (DPM)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.boxes import iou_matrix
from engines.build import load_detector
from engines.lineage.dpm import DPMDetector
from engines.lineage.fast_rcnn import FastRCNNDetector
from engines.lineage.loc import LocDetector
from engines.lineage.overfeat import OverFeatDetector
from engines.lineage.rcnn import RCNNDetector
from tests.conftest import SAMPLE_VIDEO
from training.data.generate import mask_boxes, paste, random_shape

KINDS = {"lineage-loc": LocDetector, "lineage-overfeat": OverFeatDetector,
         "lineage-rcnn": RCNNDetector, "lineage-fast-rcnn": FastRCNNDetector}


def clear_object(class_id: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 360x640 grey frame holding one solid ~100 px object; returns (image, box)."""
    rng = np.random.default_rng(seed)
    image = np.full((360, 640, 3), 110, np.uint8)
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    shape = random_shape(rng, (360, 640), class_id=class_id, center=(300.0, 170.0))
    shape.radius, shape.texture = 50.0, "solid"
    shape.colors = np.array([[40, 200, 250], [40, 200, 250]], np.uint8)
    painted, _ = paste(image, shape)
    return image, mask_boxes([painted])[0]


@pytest.fixture(scope="module")
def detectors() -> dict:
    return {name: load_detector(name) for name in KINDS}


def test_shipped_names_load_their_families(detectors: dict) -> None:
    for name, kind in KINDS.items():
        assert isinstance(detectors[name], kind)
        assert detectors[name].class_names == ["disc", "square", "triangle", "star"]
    assert isinstance(load_detector("lineage-dpm"), DPMDetector)
    with pytest.raises(ValueError, match="conf must be in"):
        load_detector("lineage-rcnn", conf=2.0)


@pytest.mark.parametrize("class_id", [0, 1, 2, 3])
def test_loc_reports_exactly_one_box(detectors: dict, class_id: int) -> None:
    image, box = clear_object(class_id)
    (dets,) = detectors["lineage-loc"].detect([image])
    assert len(dets) == 1  # one box per frame, whatever the frame holds
    assert iou_matrix(dets.xyxy, box[None])[0, 0] > 0.5
    (two,) = detectors["lineage-loc"].detect([np.concatenate([image, image], 1)])
    assert len(two) == 1  # two objects, still one box: it cannot count


# Not every (detector, class) pair: the shipped OverFeat takes a square's corners
# for triangles and the shipped R-CNN calls this triangle a star; docs/lineage.md
# reports both. These pairs pin what they do get right.
@pytest.mark.parametrize(("name", "class_id"), [
    ("lineage-overfeat", 0), ("lineage-overfeat", 3), ("lineage-rcnn", 0),
    ("lineage-rcnn", 1), ("lineage-rcnn", 3), *(("lineage-fast-rcnn", c)
                                             for c in range(4))])
def test_detector_finds_the_clear_object(detectors: dict, name: str,
                                         class_id: int) -> None:
    image, box = clear_object(class_id)
    (dets,) = detectors[name].detect([image])
    assert len(dets) >= 1
    best = int(np.argmax(dets.scores))
    assert dets.class_ids[best] == class_id
    assert iou_matrix(dets.xyxy[best:best + 1], box[None])[0, 0] > 0.5
    (blank,) = detectors[name].detect([np.full((360, 640, 3), 110, np.uint8)])
    assert blank.scores.max(initial=0) < dets.scores[best]  # a blank frame: lower


def test_dpm_finds_a_pedestrian_in_the_sample_clip() -> None:
    cap = cv2.VideoCapture(str(SAMPLE_VIDEO))
    for _ in range(3):
        ok, frame = cap.read()
    cap.release()
    assert ok
    crop = frame[80:320, 400:620]  # around a walking person in an early frame
    dpm = load_detector("lineage-dpm", upscale=1.5)
    (dets,) = dpm.detect([crop])
    assert len(dets) >= 1 and (dets.class_ids == 0).all()
    w, h = (dets.xyxy[:, 2:] - dets.xyxy[:, :2]).T
    assert ((h > 1.5 * w) & (h > 50)).any()  # upright, person-sized
    assert len(dpm.detect([np.full((240, 220, 3), 128, np.uint8)])[0]) == 0
    with pytest.raises(ValueError, match="upscale"):
        load_detector("lineage-dpm", upscale=0)


@pytest.mark.parametrize("name", ["lineage-rcnn", "lineage-fast-rcnn"])
def test_stored_proposals_replay_the_same_detections(detectors: dict,
                                                     name: str) -> None:
    """The compare table's "without proposals" pass: given the first pass's
    proposals, the detector skips Selective Search and finds the same boxes."""
    detector = detectors[name]
    image, _ = clear_object(2)
    (first,) = detector.detect([image])
    stored = detector.proposer.last_boxes
    assert len(stored) > 0 and detector.proposer.last_seconds > 0
    with detector.proposer.replay([stored, stored[:1]]):
        (again,) = detector.detect([image])
        np.testing.assert_allclose(again.xyxy, first.xyxy, rtol=1e-5)
        np.testing.assert_array_equal(again.class_ids, first.class_ids)
        detector.detect([image])
        assert len(detector.proposer.last_boxes) == 1  # the second stored set
        with pytest.raises(RuntimeError, match="more frames than stored"):
            detector.detect([image])
    detector.detect([image])  # Selective Search again
    assert len(detector.proposer.last_boxes) == len(stored)
