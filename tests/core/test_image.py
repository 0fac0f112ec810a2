"""core.image: the one preprocessing, and core.formats."""

from __future__ import annotations

import numpy as np
import pytest

from core.boxes import BoxTransform, xywh_to_xyxy, xyxy_to_xywh
from core.formats import IMAGE_SUFFIXES, VIDEO_SUFFIXES, mot_lines
from core.image import letterbox, preprocess, resize, stretch, to_tensor, to_tensors


def image(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_to_tensor_is_rgb_chw_scaled_then_normalised():
    img = image()
    x = to_tensor(img)
    assert x.shape == (3, 48, 64) and x.dtype == np.float32
    np.testing.assert_allclose(x, img[:, :, ::-1].transpose(2, 0, 1) / 255, atol=1e-6)
    y = to_tensor(img, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    expected = (x - np.array([0.5, 0.4, 0.3])[:, None, None]) / np.array(
        [0.2, 0.3, 0.4])[:, None, None]
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_to_tensor_names_a_frame_that_is_not_bgr():
    with pytest.raises(ValueError, match="H×W×3"):
        to_tensor(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="H×W×3"):
        to_tensors(np.zeros((2, 8, 8, 4), np.uint8))


def test_to_tensors_matches_to_tensor_per_image():
    imgs = [image(), image()[::-1].copy()]
    batch = to_tensors(imgs, mean=(0.1, 0.2, 0.3))
    assert batch.shape == (2, 3, 48, 64)
    for x, img in zip(batch, imgs, strict=True):
        np.testing.assert_allclose(x, to_tensor(img, mean=(0.1, 0.2, 0.3)), atol=1e-6)


def test_letterbox_pads_and_maps_boxes_back():
    out, tf = letterbox(image(48, 64), (64, 64))
    assert out.shape == (64, 64, 3)
    assert (tf.pad_x, tf.pad_y) == (0, 8)
    assert (out[:8] == 114).all()
    box = np.array([[10, 20, 30, 40]], np.float32)
    np.testing.assert_allclose(tf.to_original(tf.to_network(box)), box, atol=1e-4)


def test_stretch_and_identity():
    out, tf = stretch(image(48, 64), (24, 32))
    assert out.shape == (24, 32, 3) and tf.scale_x == 0.5
    _, tf = resize(image(), None)
    assert tf == BoxTransform.identity(64, 48)
    with pytest.raises(ValueError, match="unknown resize mode 'crop'"):
        resize(image(), (32, 32), "crop")


def test_preprocess_is_resize_then_to_tensor():
    img = image()
    x, tf = preprocess(img, (64, 64), "letterbox")
    boxed, tf2 = letterbox(img, (64, 64))
    assert tf == tf2
    np.testing.assert_array_equal(x, to_tensor(boxed))


def test_box_conversions_round_trip():
    xyxy = np.array([[1, 2, 11, 22], [5, 5, 6, 9]], np.float32)
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), [[1, 2, 10, 20], [5, 5, 1, 4]])
    np.testing.assert_array_equal(xywh_to_xyxy(xyxy_to_xywh(xyxy)), xyxy)


def test_formats():
    assert {".jpg", ".png"} <= IMAGE_SUFFIXES and {".mp4", ".mkv"} <= VIDEO_SUFFIXES
    assert not IMAGE_SUFFIXES & VIDEO_SUFFIXES
    rows = list(mot_lines(3, np.array([[1, 2, 11, 22]], np.float32),
                          np.array([7]), np.array([0.5], np.float32)))
    assert rows == ["3,7,1.00,2.00,10.00,20.00,0.5000,-1,-1,-1\n"]


def test_core_imports_nothing_else_of_ours():
    import ast
    from pathlib import Path

    ours = {"engines", "pipeline", "training", "run_stream", "benchmarks", "tests"}
    for path in Path(__file__).resolve().parents[2].joinpath("core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in ours, (path, node.module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] not in ours, (path, alias.name)


def test_imgsz_has_one_meaning_in_every_command() -> None:
    from core.image import parse_imgsz
    from training.faster_rcnn.train import TrainConfig as FrcnnConfig
    from training.faster_rcnn.train import input_size_for
    from training.yolo.train import TrainConfig as YoloConfig

    assert parse_imgsz("416") == parse_imgsz(416) == (416, 416)
    assert parse_imgsz("224,416") == parse_imgsz("224x416") == (224, 416)
    for bad in ("100", "0", "a,b", "1,2,3"):
        with pytest.raises(ValueError, match="imgsz"):
            parse_imgsz(bad, multiple=32)
    for value, want in (("416", (416, 416)), ("224,416", (224, 416))):
        assert FrcnnConfig(data="d.yaml", imgsz=value).imgsz == want
        assert YoloConfig(data="d.yaml", imgsz=value).imgsz == want
    # no --imgsz: Faster R-CNN keeps the data's aspect (long side 320)
    assert input_size_for(FrcnnConfig(data="d.yaml").imgsz, (360, 640)) == (192, 320)
