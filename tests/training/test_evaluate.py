"""COCO mAP, detector evaluation and teacher pseudo-labelling."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.types import Detections
from engines.base import Detector, Prepared
from training.__main__ import main as training_main
from training.data import generate
from training.data.datasets import DetectionDataset, load_dataset
from training.evaluate import coco_map, evaluate_detector
from training.pseudo_label import pseudo_label

ROOT = Path(__file__).resolve().parents[2]
HAS_HOG = (ROOT / "engines" / "hog.py").is_file()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DetectionDataset:
    out = tmp_path_factory.mktemp("evalds")
    yaml_path = generate.generate_dataset(out, n_train=0, n_val=6, size=(96, 160),
                                          seed=3)
    return load_dataset(yaml_path, "val")


def _truth(dataset: DetectionDataset) -> list[Detections]:
    return [Detections(s.boxes, np.ones(len(s.boxes)), s.class_ids) for s in dataset]


def test_perfect_predictions_score_one(dataset: DetectionDataset) -> None:
    result = coco_map(dataset, _truth(dataset))
    assert result["map"] == pytest.approx(1.0) and result["map50"] == pytest.approx(1.0)
    present = {dataset.class_names[c] for s in dataset for c in s.class_ids}
    for name, ap in result["per_class"].items():
        assert ap == pytest.approx(1.0) if name in present else np.isnan(ap)


def test_shifted_boxes_score_lower(dataset: DetectionDataset) -> None:
    shifted = [Detections(d.xyxy + 3, d.scores, d.class_ids) for d in _truth(dataset)]
    result = coco_map(dataset, shifted)
    assert 0.0 < result["map"] < 0.9 and result["map50"] >= result["map"]
    wrong_class = [Detections(d.xyxy, d.scores, (d.class_ids + 1) % 4)
                   for d in _truth(dataset)]
    assert coco_map(dataset, wrong_class)["map"] < 0.5


def test_no_predictions_score_zero(dataset: DetectionDataset) -> None:
    result = coco_map(dataset, [Detections.empty() for _ in range(len(dataset))])
    assert result["map"] == 0.0 and result["map50"] == 0.0


def test_works_on_wrapped_datasets(dataset: DetectionDataset) -> None:
    torch = pytest.importorskip("torch")
    subset = torch.utils.data.Subset(dataset, range(3))  # no class_names of its own
    truth = _truth(dataset)[:3]
    assert coco_map(subset, truth)["map"] == pytest.approx(1.0)
    shifted = [Detections(d.xyxy + 3, d.scores, d.class_ids) for d in truth]
    assert coco_map(subset, shifted)["map"] < 0.9


def test_bad_predictions_rejected(dataset: DetectionDataset) -> None:
    with pytest.raises(ValueError, match="predictions for"):
        coco_map(dataset, [])
    bad = _truth(dataset)
    bad[0] = Detections([[0, 0, 5, 5]], [0.9], [7])
    with pytest.raises(ValueError, match="class ids"):
        coco_map(dataset, bad)


class OracleDetector(Detector):
    """Answers with the ground truth of an image it has seen (keyed by pixels)."""

    def __init__(self, dataset: DetectionDataset, batch: int = 4) -> None:
        self.class_names = dataset.class_names
        self.answers = {s.image.tobytes(): (s.boxes, s.class_ids) for s in dataset}
        self.batch_sizes: list[int] = []
        self._max_batch = batch

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def prepare(self, image: np.ndarray) -> Prepared:
        return Prepared.whole(image)

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        self.batch_sizes.append(len(batch))
        out = []
        for p in batch:
            boxes, ids = self.answers[p.input.tobytes()]
            out.append(Detections(boxes, np.full(len(boxes), 0.9), ids))
        return out


def test_evaluate_detector_runs_a_detector(dataset: DetectionDataset) -> None:
    detector = OracleDetector(dataset, batch=4)
    result = evaluate_detector(detector, dataset, batch=8, warmup=1)
    assert result["map"] == pytest.approx(1.0)
    assert result["images"] == len(dataset) and result["ms_per_image"] > 0
    assert max(detector.batch_sizes) == 4  # capped at max_batch
    assert sum(detector.batch_sizes) == len(dataset) + 4  # + one warm-up batch


class StubTeacher(Detector):
    """Two fixed boxes per frame: one confident, one below any sensible conf."""

    def __init__(self) -> None:
        self.class_names = ["thing"]

    def prepare(self, image: np.ndarray) -> Prepared:
        return Prepared.whole(image)

    def infer(self, batch: list[Prepared]) -> list[Detections]:
        return [Detections([[10, 20, 50, 60], [0, 0, 30, 30]], [0.9, 0.1], [0, 0])
                for _ in batch]


def test_pseudo_label_writes_dataset_with_contiguous_val(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    generate.generate_video(video, n_frames=40, size=(96, 160), seed=0, n_objects=2)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((50, 80, 3), 40 * i, np.uint8))
    yaml_path = pseudo_label(StubTeacher(), [video, folder], tmp_path / "out", every=2,
                             val_fraction=0.2, conf=0.5, seed=0)
    train, val = load_dataset(yaml_path, "train"), load_dataset(yaml_path, "val")
    assert train.class_names == ["thing"]
    assert len(train) + len(val) == 20 + 2 and len(val) >= 1  # every 2nd
    sample = train[0]
    np.testing.assert_allclose(sample.boxes, [[10, 20, 50, 60]], atol=1e-3)  # 0.1 gone
    video_val = sorted(int(p.stem.split("_")[-1]) for p in val.image_paths
                       if "_v_" in p.name)
    assert video_val and np.all(np.diff(video_val) == 2)  # one contiguous chunk
    with pytest.raises(ValueError, match="not empty"):
        pseudo_label(StubTeacher(), [folder], tmp_path / "out")


@pytest.mark.skipif(not HAS_HOG, reason="engines/hog.py (HOG teacher) not written yet")
def test_pseudo_label_with_hog_and_evaluate_cli(tmp_path: Path) -> None:
    from engines.build import load_detector

    cap = cv2.VideoCapture(str(ROOT / "samples" / "vtest.mp4"))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        ok, frame = cap.read()
        assert ok
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), frame[::2, ::2])
    cap.release()
    with load_detector("hog", conf=0.5) as hog:
        yaml_path = pseudo_label(hog, [folder], tmp_path / "ds", val_fraction=0.25)
    train = load_dataset(yaml_path, "train")
    assert train.class_names == ["person"] and len(train) == 3
    report = tmp_path / "eval.json"
    code = training_main(["evaluate", "--model", "hog", "--data", str(yaml_path),
                          "--split", "train", "--conf", "0.5", "--json", str(report)])
    assert code == 0
    result = json.loads(report.read_text())["results"]["hog"]
    assert result["images"] == 3 and 0.0 <= result["map"] <= 1.0
