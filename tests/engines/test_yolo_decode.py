"""YOLO decoding for each output layout, NMS, letterbox round trip, and external
ONNX files (Ultralytics-style metadata, no streamdet metadata)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.image import letterbox
from core.meta import ModelError, ModelMeta
from engines.build import load_detector
from engines.yolo import (
    decode_anchor_based,
    decode_anchor_free,
    decode_grid,
    guess_layout,
)


def _anchor_free_output(boxes_cxcywh, class_scores) -> np.ndarray:
    """[4 + C, N] from per-box rows."""
    return np.concatenate([np.asarray(boxes_cxcywh, np.float32).T,
                           np.asarray(class_scores, np.float32).T], 0)


def test_decode_anchor_free_hand_case():
    out = _anchor_free_output([[50, 40, 20, 10], [10, 10, 4, 8]],
                              [[0.1, 0.9], [0.7, 0.2]])
    xyxy, scores, cls = decode_anchor_free(out)
    np.testing.assert_allclose(xyxy, [[40, 35, 60, 45], [8, 6, 12, 14]])
    np.testing.assert_allclose(scores, [0.9, 0.7])
    np.testing.assert_array_equal(cls, [1, 0])


def test_decode_anchor_based_multiplies_objectness():
    out = np.array([[50, 40, 20, 10, 0.5, 0.2, 0.8],
                    [10, 10, 4, 8, 1.0, 0.6, 0.4]], np.float32)
    xyxy, scores, cls = decode_anchor_based(out)
    np.testing.assert_allclose(xyxy, [[40, 35, 60, 45], [8, 6, 12, 14]])
    np.testing.assert_allclose(scores, [0.4, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(cls, [1, 0])


def test_decode_grid_places_box_in_its_cell():
    s, k, c = 2, 2, 3
    out = np.zeros((s, s, 5 * k + c), np.float32)
    # row 1, col 0, second box: centre at (0.5, 0.25) of the cell, 0.5 x 0.25 size
    out[1, 0, 5:10] = [0.5, 0.25, 0.5, 0.25, 0.8]
    out[1, 0, 10:] = [0.1, 0.0, 0.9]
    xyxy, scores, cls = decode_grid(out, k, (100, 200))  # input H=100, W=200
    i = int(np.argmax(scores))
    # cx = (0 + 0.5) / 2 * 200 = 50, cy = (1 + 0.25) / 2 * 100 = 62.5, w=100, h=25
    np.testing.assert_allclose(xyxy[i], [0, 50, 100, 75])
    assert scores[i] == pytest.approx(0.72)
    assert cls[i] == 2
    assert len(scores) == s * s * k


@pytest.mark.parametrize(("shape", "nc", "expected"), [
    ((1, 84, 8400), None, "anchor_free"),
    ((1, 25200, 85), None, "anchor_based"),
    ((1, 7, 7, 30), None, "grid"),
    ((1, 6, 3), 2, "anchor_free"),  # fewer anchors than rows: names decide
    ((1, 3, 7), 2, "anchor_based"),
    ((1, 300, 6), None, "end2end"),  # YOLOv10 / YOLO26 / nms=True exports
    ((1, 300, 6), 80, "end2end"),
    ((1, 25200, 6), 1, "anchor_based"),  # YOLOv5 with one class
])
def test_guess_layout(shape, nc, expected):
    assert guess_layout(shape, nc) == expected


def test_letterbox_round_trip_keeps_boxes():
    image = np.zeros((360, 640, 3), np.uint8)
    boxes = np.array([[10, 20, 200, 300], [0, 0, 640, 360], [600, 100, 639, 359.5]],
                     np.float32)
    for size in ((320, 320), (192, 320), (640, 640)):
        _, tf = letterbox(image, size)
        net = tf.to_network(boxes)
        assert (net[:, [0, 2]] <= size[1]).all() and (net[:, [1, 3]] <= size[0]).all()
        np.testing.assert_allclose(tf.to_original(net), boxes, atol=1e-3)


# --- external ONNX files -------------------------------------------------------

def _constant_onnx(path: Path, value: np.ndarray, hw: int = 64,
                   props: dict[str, str] | None = None) -> Path:
    """An ONNX graph whose output is ``value`` (plus 0 x the input's mean)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], axes=[0, 1, 2, 3],
                         keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["const", "z"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "const",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                       [1, 3, hw, hw] if hw else [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT,
                                       list(value.shape))],
        initializer=[numpy_helper.from_array(value.astype(np.float32), "const"),
                     numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, val in (props or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, val
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _image(hw: int = 64) -> np.ndarray:
    return np.zeros((hw, hw, 3), np.uint8)


def test_external_anchor_free_with_ultralytics_names(tmp_path):
    # two overlapping boxes of class 1 (NMS keeps the better), one of class 0
    out = _anchor_free_output(
        [[20, 20, 10, 10], [21, 20, 10, 10], [50, 40, 8, 6], [30, 30, 4, 4]],
        [[0.1, 0.9], [0.05, 0.8], [0.7, 0.3], [0.1, 0.1]])[None]
    path = _constant_onnx(tmp_path / "v8.onnx", out,
                          props={"names": "{0: 'person', 1: 'car'}"})
    det = load_detector(path)
    assert det.layout == "anchor_free"
    assert det.class_names == ["person", "car"]
    assert det.imgsz == (64, 64)
    d = det.detect([_image()])[0]
    order = np.argsort(-d.scores)
    np.testing.assert_allclose(d.xyxy[order], [[15, 15, 25, 25], [46, 37, 54, 43]],
                               atol=1e-4)
    np.testing.assert_array_equal(d.class_ids[order], [1, 0])
    np.testing.assert_allclose(d.scores[order], [0.9, 0.7], rtol=1e-6)


def test_external_anchor_based_maps_back_to_frame(tmp_path):
    out = np.zeros((1, 20, 7), np.float32)  # N=20 rows of 5 + 2 (zeros: no object)
    out[0, :2] = [[32, 32, 16, 16, 0.9, 0.1, 0.9],
                  [32, 32, 16, 16, 0.1, 0.9, 0.1]]  # second scores 0.09: dropped
    path = _constant_onnx(tmp_path / "v5.onnx", out)
    det = load_detector(path)
    assert det.layout == "anchor_based"
    assert det.class_names == ["class0", "class1"]
    frame = np.zeros((64, 128, 3), np.uint8)  # letterboxed: scale 0.5, pad_y 16
    d = det.detect([frame])[0]
    assert len(d) == 1
    # net box 24..40 on both axes; x / 0.5, (y - 16) / 0.5
    np.testing.assert_allclose(d.xyxy[0], [48, 16, 80, 48], atol=1e-4)
    assert d.class_ids[0] == 1 and d.scores[0] == pytest.approx(0.81)


def test_external_end2end_post_nms_output(tmp_path):
    out = np.zeros((1, 300, 6), np.float32)  # padded rows score 0
    out[0, 0] = [10, 12, 30, 40, 0.88, 2]
    out[0, 1] = [11, 12, 31, 40, 0.80, 2]  # overlapping, kept: no NMS re-run
    out[0, 2] = [40, 40, 60, 60, 0.10, 0]  # below the threshold
    names = "{0: 'person', 1: 'bicycle', 2: 'car'}"
    path = _constant_onnx(tmp_path / "v10.onnx", out, props={"names": names})
    det = load_detector(path, conf=0.25)
    assert det.layout == "end2end" and det.class_names[2] == "car"
    d = det.detect([np.zeros((64, 64, 3), np.uint8)])[0]
    assert len(d) == 2 and d.class_ids.tolist() == [2, 2]
    np.testing.assert_allclose(d.xyxy[0], [10, 12, 30, 40])


def test_class_count_mismatch_names_the_path(tmp_path):
    out = np.zeros((1, 4 + 3, 10), np.float32)
    meta = ModelMeta(family="yolo", class_names=["a", "b"], input_size=(64, 64),
                     layout="anchor_free")
    path = _constant_onnx(tmp_path / "bad.onnx", out,
                          props={"streamdet": meta.to_json()})
    with pytest.raises(ModelError, match="bad\\.onnx"):
        load_detector(path)


def test_input_size_mismatch_names_the_path(tmp_path):
    out = np.zeros((1, 4 + 2, 10), np.float32)
    meta = ModelMeta(family="yolo", class_names=["a", "b"], input_size=(32, 32),
                     layout="anchor_free")
    path = _constant_onnx(tmp_path / "size.onnx", out,
                          props={"streamdet": meta.to_json()})
    with pytest.raises(ModelError, match="size\\.onnx"):
        load_detector(path)


def test_empty_output_gives_empty_detections(tmp_path):
    out = _anchor_free_output([[20, 20, 10, 10]] * 8, [[0.01]] * 8)[None]
    det = load_detector(_constant_onnx(tmp_path / "low.onnx", out))
    d = det.detect([_image(), _image()])
    assert [len(x) for x in d] == [0, 0]
    assert det.infer([]) == []


def test_rejects_bad_options(tmp_path):
    out = _anchor_free_output([[20, 20, 10, 10]], [[0.5]])[None]
    path = _constant_onnx(tmp_path / "m.onnx", out)
    with pytest.raises(ValueError, match="conf must be in"):
        load_detector(path, conf=1.5)
    with pytest.raises(ValueError, match="layout"):
        load_detector(path, layout="yolo9000")


@pytest.mark.parametrize("task", ["segment", "pose", "obb", "classify"])
def test_ultralytics_exports_of_another_task_are_refused_in_one_line(tmp_path, task):
    out = _anchor_free_output([[20, 20, 10, 10]], [[0.9, 0.1]])[None]
    path = _constant_onnx(tmp_path / f"{task}.onnx", out,
                          props={"names": "{0: 'a', 1: 'b'}", "task": task})
    with pytest.raises(ModelError, match=f"Ultralytics '{task}' export; only "
                                         "detection exports"):
        load_detector(path)


def test_ultralytics_export_gets_predict_defaults(tmp_path):
    out = _anchor_free_output([[20, 20, 10, 10]], [[0.9, 0.1]])[None]
    path = _constant_onnx(tmp_path / "det.onnx", out,
                          props={"names": "{0: 'a', 1: 'b'}", "task": "detect"})
    with load_detector(path) as det:
        assert (det.conf, det.iou) == (0.25, 0.7)
    with load_detector(path, iou=0.5) as det:
        assert det.iou == 0.5
    with load_detector("yolo") as det:  # ours keeps its own
        assert det.iou == 0.45


def test_imgsz_sets_a_dynamic_export_input_and_a_fixed_one_refuses(tmp_path):
    out = _anchor_free_output([[20, 20, 10, 10]], [[0.9, 0.1]])[None]
    dynamic = _constant_onnx(tmp_path / "dyn.onnx", out, hw=0,
                             props={"names": "{0: 'a', 1: 'b'}"})
    with load_detector(dynamic, imgsz=(96, 160)) as det:
        assert det.imgsz == (96, 160)
        assert det.prepare(np.zeros((120, 200, 3), np.uint8)).input.shape == (
            3, 96, 160)
    fixed = _constant_onnx(tmp_path / "fixed.onnx", out,
                           props={"names": "{0: 'a', 1: 'b'}"})
    with pytest.raises(ValueError, match="differs from the model's static input"):
        load_detector(fixed, imgsz=(96, 160))
