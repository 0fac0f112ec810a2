"""``python -m training compare --quick`` and ``lineage train`` end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from engines.build import load_detector
from engines.lineage.loc import LocDetector
from training.__main__ import main as training_main


def test_compare_quick_writes_table_and_plot(tmp_path: Path) -> None:
    models = ("lineage-loc,lineage-overfeat,lineage-rcnn,lineage-fast-rcnn,hog,"
              "no-such-model")
    rc = training_main(["compare", "--quick", "--models", models, "--out",
                        str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "compare.json").read_text())
    rows = {r["model"]: r for r in report["rows"]}
    assert list(rows) == models.split(",")
    for name in ("lineage-loc", "lineage-overfeat", "lineage-rcnn",
                 "lineage-fast-rcnn", "hog"):
        assert rows[name]["status"] == "ok"
        assert rows[name]["ms_per_image"] > 0
        assert 0.0 <= rows[name]["map50"] <= 1.0
    assert rows["no-such-model"]["status"].startswith("missing")
    assert rows["lineage-loc"]["detections_per_image"] == 1.0  # it cannot count
    assert 0 < rows["lineage-rcnn"]["proposals_per_image"] <= 50  # --quick cap
    assert rows["lineage-fast-rcnn"]["proposal_ms"] > 0
    assert rows["lineage-rcnn"]["train_seconds"] > 0  # from the model's metadata
    assert rows["hog"]["map50"] == 0.0  # people only, on a shape set
    assert 0.0 <= rows["lineage-loc"]["single_accuracy"] <= 1.0  # scored alone too
    assert 0.0 <= rows["lineage-loc"]["single_iou"] <= 1.0
    assert rows["lineage-rcnn"]["single_accuracy"] is None
    for r in (rows["lineage-rcnn"], rows["lineage-overfeat"]):
        assert r["map50_lo"] <= r["map50_hi"]
    fast = rows["lineage-fast-rcnn"]
    assert 0 < fast["ms_without_proposals"] < fast["ms_per_image"]
    assert rows["hog"]["ms_without_proposals"] == rows["hog"]["ms_per_image"]
    with open(tmp_path / "compare.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    png = (tmp_path / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_lineage_train_loc_writes_a_loadable_model(tmp_path: Path) -> None:
    rc = training_main(["lineage", "train", "--model", "loc", "--epochs", "1",
                        "--images", "32", "--out", str(tmp_path)])
    assert rc == 0
    detector = load_detector(tmp_path / "lineage_loc.onnx")
    assert isinstance(detector, LocDetector)
    assert detector.backend.meta.train_seconds > 0
    assert "val_iou" in detector.backend.meta.extra


def test_lineage_train_rejects_missing_data(tmp_path: Path) -> None:
    assert training_main(["lineage", "train", "--model", "rcnn", "--out",
                          str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        training_main(["lineage", "train", "--model", "nope"])


def test_fast_rcnn_learns_a_handful_of_scenes(tmp_path: Path) -> None:
    """Trunk, RoI pooling and both heads learn together (mirrored images and
    boxes, two images per step): trained on 8 scenes, the exported two-file
    model finds their objects again."""
    import torch

    from training.data.datasets import load_dataset
    from training.data.generate import generate_dataset
    from training.evaluate import evaluate_detector
    from training.lineage.train import train_fast_rcnn

    torch.manual_seed(0)
    generate_dataset(tmp_path / "data", 8, 1, seed=5)
    dataset = load_dataset(tmp_path / "data" / "data.yaml", "train")
    out = train_fast_rcnn(dataset, tmp_path / "m" / "lineage_fast_rcnn.onnx",
                          epochs=40, rois_per_image=32)
    detector = load_detector(out, conf=0.05)
    result = evaluate_detector(detector, dataset)
    assert result["map50"] >= 0.35, result  # untrained: ~0.0


def test_rcnn_learns_a_handful_of_scenes(tmp_path: Path) -> None:
    """The per-crop network learns classes and box deltas from warped
    proposals: trained on 8 scenes, the exported model finds their objects."""
    import torch

    from training.data.datasets import load_dataset
    from training.data.generate import generate_dataset
    from training.evaluate import evaluate_detector
    from training.lineage.train import train_rcnn

    torch.manual_seed(0)
    generate_dataset(tmp_path / "data", 8, 1, seed=5)
    dataset = load_dataset(tmp_path / "data" / "data.yaml", "train")
    out = train_rcnn(dataset, tmp_path / "m" / "lineage_rcnn.onnx", epochs=30)
    detector = load_detector(out, conf=0.05)
    assert detector.crop == 40
    result = evaluate_detector(detector, dataset)
    assert result["map50"] >= 0.6, result  # 30 epochs: 0.91; 1 epoch: 0.07
