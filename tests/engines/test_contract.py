"""One detector contract, checked on every family and every backend available:
``detect`` returns ``Detections`` in frame pixels, and every common option is
either used or refused in one line (never ignored, never a ``TypeError``)."""

from __future__ import annotations

import numpy as np
import pytest

from core.meta import ModelError, ModelMeta
from core.types import Detections
from engines.build import (
    FAMILIES,
    SHIPPED,
    DetectorOptions,
    load_detector,
    used_options,
)
from tests.conftest import SAMPLE_VIDEO

SHIPPED_BY_FAMILY = {family: name for name, (family, _) in reversed(SHIPPED.items())}
# A value for each common option that every family could take if it used it.
OPTION_VALUES = {"conf": 0.6, "iou": 0.5, "max_det": 2, "classes": (0,),
                 "threads": 1, "device": "cuda", "backend": "torch"}


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(SAMPLE_VIDEO))
    ok, image = cap.read()
    cap.release()
    assert ok
    return cv2.resize(image, (384, 288))


def test_every_family_has_a_shipped_model():
    assert set(SHIPPED_BY_FAMILY) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_detect_returns_detections_in_frame_pixels(family, frame):
    with load_detector(SHIPPED_BY_FAMILY[family]) as detector:
        [dets] = detector.detect([frame])
        names = detector.class_names
    assert isinstance(dets, Detections)
    h, w = frame.shape[:2]
    assert (dets.xyxy >= -0.5).all() and (dets.xyxy[:, [0, 2]] <= w + 0.5).all()
    assert (dets.xyxy[:, [1, 3]] <= h + 0.5).all()
    assert ((dets.class_ids >= 0) & (dets.class_ids < len(names))).all()
    assert (dets.track_ids == -1).all()


@pytest.mark.parametrize("option", sorted(OPTION_VALUES))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_option_is_used_or_refused_in_one_line(family, option):
    name = SHIPPED_BY_FAMILY[family]
    try:
        detector = load_detector(name, **{option: OPTION_VALUES[option]})
    except ModelError as exc:
        message = str(exc)
        shipped = SHIPPED[name][1] or name
        assert "\n" not in message and (name in message or shipped in message)
        if option not in used_options(type(_family_detector(name))):
            assert "is not used by" in message  # refused by the contract
        return
    with detector:
        assert option in used_options(type(detector))
        if option == "max_det":
            assert detector.max_det == 2
        if option == "classes":
            assert detector.classes == frozenset({0})


def _family_detector(name: str):
    return load_detector(name)


@pytest.mark.parametrize("family", ["yolo", "faster_rcnn", "lineage_rcnn"])
def test_conf_is_applied(family, frame):
    name = SHIPPED_BY_FAMILY[family]
    with load_detector(name, conf=0.05) as low, load_detector(name, conf=0.9) as high:
        [a], [b] = low.detect([frame]), high.detect([frame])
    assert len(b) <= len(a)
    assert (b.scores >= 0.9 - 1e-6).all()


def test_classes_by_name_and_unknown_name(frame):
    with load_detector("yolo", classes=("disc",), conf=0.05) as detector:
        [dets] = detector.detect([frame])
        disc = detector.class_names.index("disc")
    assert set(dets.class_ids.tolist()) <= {disc}
    with pytest.raises(ModelError, match="no class named 'zebra'"):
        load_detector("yolo", classes=("zebra",))


def test_bad_option_values_are_rejected():
    for bad in ({"conf": 1.5}, {"iou": 0.0}, {"max_det": 0}, {"threads": 0},
                {"device": "tensorrt"}, {"backend": "tflite"}):
        with pytest.raises(ValueError):
            DetectorOptions(**bad)


def _tiny_checkpoint(tmp_path, arch: str):
    import torch

    from training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    if arch == "yolo":
        from engines.nets.yolo import build_yolo

        config = {"num_classes": 2}
        meta = ModelMeta("yolo", ["a", "b"], (64, 96), layout="anchor_free")
        model = build_yolo(config)
    else:
        from engines.nets.faster_rcnn import build_faster_rcnn, make_config

        config = make_config(2, input_size=[64, 96], box_score_thresh=0.0)
        meta = ModelMeta("faster_rcnn", ["a", "b"], (64, 96), resize="stretch",
                         layout="torchvision", extra={"label_offset": 1})
        model = build_faster_rcnn(config)
    return save_checkpoint(tmp_path / f"{arch}.pt", arch, config, meta, model)


@pytest.mark.parametrize("arch", ["yolo", "faster_rcnn"])
def test_torch_backend_runs_every_family_checkpoint(tmp_path, arch, frame):
    path = _tiny_checkpoint(tmp_path, arch)
    with load_detector(path, max_det=5) as detector:
        assert type(detector.backend).__name__ == "TorchBackend"
        [dets] = detector.detect([frame])
    assert isinstance(dets, Detections) and len(dets) <= 5


@pytest.mark.parametrize("conf", [0.0, 1.0])
def test_a_family_with_a_narrower_conf_range_refuses_its_ends(conf):
    for name in ("lineage-dpm", "lineage-hog"):
        with pytest.raises(ValueError, match=r"conf must be in \(0, 1\)") as caught:
            load_detector(name, conf=conf)
        assert "\n" not in str(caught.value)
    with load_detector("yolo", conf=conf) as detector:  # the common range
        assert detector.conf == conf


def test_conf_zero_for_dpm_exits_2_in_one_line(caplog):
    from run_stream import main

    assert main(["--model", "lineage-dpm", "--conf", "0", "--max-frames", "1"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "conf must be in (0, 1)" in errors[0]
    assert "\n" not in errors[0]


def test_max_det_is_the_nms_cap_and_select_keeps_only_classes(frame):
    with load_detector("yolo", conf=0.01) as many, \
            load_detector("yolo", conf=0.01, max_det=2) as capped:
        [all_boxes], [two] = many.detect([frame]), capped.detect([frame])
        assert len(all_boxes) > 2 and len(two) == 2
        np.testing.assert_array_equal(two.xyxy, all_boxes.xyxy[:2])
        assert len(capped.select(all_boxes)) == len(all_boxes)  # not cut again
