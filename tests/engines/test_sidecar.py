"""Metadata is recognised, never guessed: our sidecar is ``{"streamdet": {...}}``
(or an older flat object), embedded metadata wins over it, and any other
``NAME.json`` beside a model changes nothing about how the model loads."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from core.meta import (
    META_KEY,
    ModelError,
    ModelMeta,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from engines.build import load_detector
from tests.engines.test_yolo_decode import _anchor_free_output, _constant_onnx

ULTRALYTICS_PROPS = {"names": "{0: 'a', 1: 'b'}", "task": "detect",
                     "imgsz": "[64, 64]", "stride": "32"}
UNRELATED = {
    "empty object": "{}",
    "coco annotations": json.dumps({"images": [{"id": 1, "file_name": "x.jpg"}],
                                    "annotations": [], "categories": []}),
    "evaluation results": json.dumps({"data": "d.yaml", "results": {}}),
    "a list": "[1, 2]",
    "not json": "class,score\n",
}
META = ModelMeta("yolo", ["cat", "dog"], (64, 64), layout="anchor_free")


def _ultralytics_export(path: Path) -> Path:
    out = _anchor_free_output([[20, 20, 10, 10], [40, 40, 12, 12]],
                              [[0.9, 0.1], [0.2, 0.6]])[None]
    return _constant_onnx(path, out, props=ULTRALYTICS_PROPS)


def _summary(path: Path) -> tuple:
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    with load_detector(path) as det:
        [dets] = det.detect([image])
        return (det.class_names, det.conf, det.iou, det.layout,
                dets.xyxy.tolist(), dets.scores.tolist(), dets.class_ids.tolist())


@pytest.mark.parametrize("text", list(UNRELATED.values()), ids=list(UNRELATED))
def test_an_unrelated_json_beside_an_ultralytics_export_changes_nothing(
        tmp_path, caplog, text):
    model = _ultralytics_export(tmp_path / "m.onnx")
    alone = _summary(model)
    sidecar_path(model).write_text(text)
    with caplog.at_level(logging.WARNING, logger="core.meta"):
        beside = _summary(model)
    assert beside == alone
    assert alone[0] == ["a", "b"] and alone[2] == 0.7  # Ultralytics' names, iou
    warnings = [r for r in caplog.records if "not a streamdet metadata sidecar"
                in r.getMessage()]
    assert len(warnings) == 1 and str(sidecar_path(model)) in warnings[0].getMessage()


def test_evaluate_json_beside_the_model_does_not_break_it(tmp_path):
    from training.__main__ import main
    from training.data.generate import generate_dataset

    data = generate_dataset(tmp_path / "d", 1, 2, size=(64, 64), seed=1)
    model = _ultralytics_export(tmp_path / "m.onnx")
    report = tmp_path / "m.json"  # the same name as a sidecar would have
    args = ["evaluate", "--model", str(model), "--data", str(data), "--json",
            str(report)]
    def scores() -> dict:
        [result] = json.loads(report.read_text())["results"].values()
        return {k: result[k] for k in ("map", "map50", "images")}

    assert main(args) == 0
    first = scores()
    assert main(args) == 0  # now m.json, the first report, sits beside m.onnx
    assert scores() == first


def test_sidecar_round_trip_is_wrapped_and_flat_files_still_read(tmp_path):
    model = tmp_path / "m.onnx"
    written = write_sidecar(model, META)
    assert written == tmp_path / "m.json"
    assert set(json.loads(written.read_text())) == {META_KEY}
    assert read_sidecar(model) == META
    written.write_text(META.to_json())  # an older, unwrapped sidecar
    assert read_sidecar(model) == META
    assert read_sidecar(tmp_path / "none.onnx") is None


def test_a_broken_sidecar_of_ours_is_an_error_naming_it(tmp_path):
    model = tmp_path / "m.onnx"
    sidecar_path(model).write_text(json.dumps({META_KEY: {"family": "yolo"}}))
    with pytest.raises(ModelError, match=r"m\.json: unreadable streamdet metadata"):
        read_sidecar(model)


def test_embedded_metadata_wins_over_a_sidecar(tmp_path):
    out = _anchor_free_output([[20, 20, 10, 10]], [[0.9, 0.1]])[None]
    model = _constant_onnx(tmp_path / "m.onnx", out,
                           props={META_KEY: META.to_json()})
    write_sidecar(model, ModelMeta("yolo", ["x", "y"], (64, 64)))
    with load_detector(model) as det:
        assert det.class_names == ["cat", "dog"]
    plain = _constant_onnx(tmp_path / "p.onnx", out)
    write_sidecar(plain, ModelMeta("yolo", ["x", "y"], (64, 64)))
    with load_detector(plain) as det:  # no embedded metadata: the sidecar's
        assert det.class_names == ["x", "y"]


def test_quantize_copies_only_a_recognised_sidecar(tmp_path):
    from training.quantize import copy_metadata

    out = _anchor_free_output([[20, 20, 10, 10]], [[0.9, 0.1]])[None]
    src = _constant_onnx(tmp_path / "src.onnx", out)
    dst = _constant_onnx(tmp_path / "dst.onnx", out)
    sidecar_path(src).write_text("{}")
    copy_metadata(src, dst, {"precision": "int8"})
    assert not sidecar_path(dst).exists()
    write_sidecar(src, META)
    copy_metadata(src, dst, {"precision": "int8"})
    copied = read_sidecar(dst)
    assert copied is not None and copied.class_names == META.class_names
    assert copied.precision == "int8"


def test_openvino_ir_ignores_an_unrelated_json(tmp_path):
    pytest.importorskip("openvino")
    from engines.backends.openvino import save_ir

    out = _anchor_free_output([[20, 20, 10, 10]], [[0.9, 0.1]])[None]
    src = _constant_onnx(tmp_path / "m.onnx", out, props={META_KEY: META.to_json()})
    xml = save_ir(src, tmp_path / "ir")
    assert read_sidecar(xml) == META  # save_ir writes our sidecar
    sidecar_path(xml).write_text(json.dumps({"images": [], "annotations": []}))
    with load_detector(xml) as det:  # the IR's own rt_info metadata
        assert det.class_names == ["cat", "dog"]
