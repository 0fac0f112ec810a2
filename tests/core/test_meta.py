"""Typed family metadata: what exporters write and detectors read, with the older
files (values in ``extra``, as the shipped models carry them) still loading."""

from __future__ import annotations

import pytest

from core.meta import (
    FasterRCNNParams,
    FastRCNNParams,
    ModelError,
    ModelMeta,
    OverFeatParams,
    RCNNParams,
    YoloParams,
)


def test_older_extra_values_become_typed_fields():
    meta = ModelMeta.from_dict({
        "family": "lineage_overfeat", "class_names": ["a"], "input_size": [32, 32],
        "extra": {"window": 32, "stride": 4, "scales": [1.25, 0.5], "epochs": 3,
                  "train_seconds": 7.5, "precision": "int8"}})
    assert meta.params == OverFeatParams(window=32, stride=4, scales=(1.25, 0.5))
    assert (meta.train_seconds, meta.precision) == (7.5, "int8")
    assert meta.extra == {"epochs": 3}  # only what nothing reads back


def test_typed_params_round_trip_through_json():
    meta = ModelMeta("lineage_fast_rcnn", ["a", "b"], (64, 96),
                     params=FastRCNNParams(proposal_side=320, max_proposals=50,
                                           head="h.onnx", pooling="align",
                                           pooled_layout="channels_last"))
    assert ModelMeta.from_json(meta.to_json()) == meta
    assert meta.to_dict()["params"]["head"] == "h.onnx"


def test_updated_sets_typed_fields_and_keeps_the_rest_in_extra():
    meta = ModelMeta("yolo", ["a"], (64, 64), extra={"boxes_per_cell": 2})
    assert meta.params == YoloParams(boxes_per_cell=2)
    quantized = meta.updated({"precision": "int8", "calibration": "MinMax"})
    assert quantized.precision == "int8" and quantized.extra == {"calibration":
                                                                  "MinMax"}
    assert quantized.params == meta.params and meta.precision == ""


@pytest.mark.parametrize("name, params", [
    ("faster_rcnn_demo.onnx", FasterRCNNParams(label_offset=1)),
    ("lineage_rcnn.onnx", RCNNParams(proposal_side=320, max_proposals=1000)),
])
def test_shipped_models_carry_typed_params(name, params):
    from engines.build import MODELS_DIR, open_backend

    with open_backend(MODELS_DIR / name) as backend:
        assert backend.meta.params == params


def test_shipped_fast_rcnn_reads_its_pooling_from_typed_params():
    from engines.build import load_detector

    with load_detector("lineage-fast-rcnn") as detector:
        assert (detector.pooling, detector.channels_last) == ("align", True)
        assert detector.proposer.side == 320


def test_incomplete_family_params_are_named(tmp_path):
    import numpy as np

    from engines.build import load_detector
    from tests.engines.test_yolo_decode import _constant_onnx
    from training.export import embed_metadata

    path = _constant_onnx(tmp_path / "r.onnx", np.zeros((1, 5), np.float32))
    embed_metadata(path, ModelMeta("lineage_rcnn", ["a"], (40, 40),
                                   extra={"proposal_side": 128}))
    with pytest.raises(ModelError, match="metadata lacks some of proposal_side, "
                                         "max_proposals"):
        load_detector(path)
