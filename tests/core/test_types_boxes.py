from __future__ import annotations

import numpy as np
import pytest

from core.boxes import BoxTransform, cxcywh_to_xyxy, iou_matrix, nms, xyxy_to_cxcywh
from core.image import letterbox, stretch
from core.types import Detections, Frame
from tests.conftest import make_detections


def test_detections_shapes_and_defaults() -> None:
    d = make_detections([[0, 0, 10, 10], [5, 5, 20, 20]])
    assert len(d) == 2
    assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (2, 4)
    assert d.class_ids.dtype == np.int32
    assert (d.track_ids == -1).all()


def test_detections_reject_mismatched_rows() -> None:
    with pytest.raises(ValueError, match="scores has 1 rows, xyxy has 2"):
        Detections(np.zeros((2, 4)), np.zeros(1), np.zeros(2))


def test_detections_empty_and_mask_returns_new() -> None:
    empty = Detections.empty()
    assert len(empty) == 0 and empty.xyxy.shape == (0, 4)
    d = make_detections([[0, 0, 1, 1], [0, 0, 2, 2]], scores=np.array([0.2, 0.9]))
    high = d[d.scores > 0.5]
    assert len(high) == 1 and high.xyxy[0, 2] == 2
    assert len(d) == 2  # original untouched
    tracked = d.with_track_ids(np.array([3, 4]))
    assert tracked.track_ids.tolist() == [3, 4] and d.track_ids.tolist() == [-1, -1]
    both = Detections.concatenate([d, high])
    assert len(both) == 3 and len(Detections.concatenate([])) == 0


def test_frame_validates_image() -> None:
    with pytest.raises(ValueError, match="H×W×3"):
        Frame("s", 0, 0.0, np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        Frame("s", 0, 0.0, np.zeros((4, 4, 3), np.float32))


def test_iou_hand_computed() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    np.testing.assert_allclose(
        iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0, 0.25], rtol=1e-6
    )
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)


def test_nms_class_aware_and_order() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    keep = nms(boxes, scores, classes, iou_threshold=0.5)
    assert keep.tolist() == [0, 2, 3]  # box 1 suppressed by 0; box 2 other class
    keep_agnostic = nms(boxes, scores, None, iou_threshold=0.5)
    assert keep_agnostic.tolist() == [0, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), None, 0.5).size == 0
    assert nms(boxes, scores, None, 0.5, max_detections=1).tolist() == [0]


def test_box_conversions_round_trip() -> None:
    xyxy = np.array([[10, 20, 30, 60]], np.float32)
    np.testing.assert_allclose(xyxy_to_cxcywh(xyxy), [[20, 40, 20, 40]])
    np.testing.assert_allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)), xyxy)


@pytest.mark.parametrize("shape", [(576, 768), (100, 400), (400, 100), (33, 47)])
def test_letterbox_round_trip(shape: tuple[int, int]) -> None:
    image = np.zeros((*shape, 3), np.uint8)
    out, t = letterbox(image, (320, 320))
    assert out.shape == (320, 320, 3)
    boxes = np.array([[1, 2, shape[1] - 3, shape[0] - 1]], np.float32)
    back = t.to_original(t.to_network(boxes))
    np.testing.assert_allclose(back, boxes, atol=1e-3)
    # the image content sits inside the padding exactly where the transform says
    net = t.to_network(np.array([[0, 0, shape[1], shape[0]]], np.float32))[0]
    assert net[0] >= 0 and net[2] <= 320 and net[1] >= 0 and net[3] <= 320
    assert abs((net[2] - net[0]) - (net[3] - net[1]) * shape[1] / shape[0]) < 1.5


def test_stretch_maps_back() -> None:
    out, t = stretch(np.zeros((200, 100, 3), np.uint8), (50, 50))
    assert out.shape == (50, 50, 3)
    np.testing.assert_allclose(
        t.to_original(np.array([[0, 0, 50, 50]])), [[0, 0, 100, 200]]
    )


def test_transform_clips_to_frame() -> None:
    t = BoxTransform(1.0, 1.0, 0, 0, 100, 50)
    np.testing.assert_allclose(
        t.to_original(np.array([[-5, -5, 120, 70]])), [[0, 0, 100, 50]]
    )
