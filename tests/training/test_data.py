"""Generator, dataset loaders and augmentations: labels must match the pixels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.boxes import iou_matrix
from core.image import letterbox
from training.__main__ import main as training_main
from training.data import augment, generate
from training.data.augment import AugmentConfig, Augmenter
from training.data.datasets import Sample, load_dataset

SIZE = (96, 160)


@pytest.fixture(scope="module")
def dataset_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    return generate.generate_dataset(out, n_train=3, n_val=4, size=SIZE, seed=7,
                                     coco=True)


def test_render_scene_is_deterministic_and_valid() -> None:
    a = generate.render_scene(np.random.default_rng(3), SIZE)
    b = generate.render_scene(np.random.default_rng(3), SIZE)
    c = generate.render_scene(np.random.default_rng(4), SIZE)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    image, boxes, class_ids = a
    assert image.shape == (*SIZE, 3) and image.dtype == np.uint8
    assert boxes.dtype == np.float32 and class_ids.dtype == np.int64
    assert len(boxes) == len(class_ids) >= 1
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= SIZE[1]).all()
    assert (boxes[:, [1, 3]] <= SIZE[0]).all()
    assert set(class_ids.tolist()) <= set(range(len(generate.CLASS_NAMES)))


@pytest.mark.parametrize("class_id", range(len(generate.CLASS_NAMES)))
def test_box_is_exactly_where_the_pixels_are(class_id: int) -> None:
    rng = np.random.default_rng(class_id)
    background = np.full((120, 200, 3), 128, np.uint8)
    # one object crossing the left edge, so clipping is exercised too
    shape = generate.random_shape(rng, (120, 200), class_id=class_id, center=(8, 60))
    shape.colors[:] = (0, 0, 255)
    shape.texture, shape.radius = "solid", 20.0
    image = background.copy()
    painted, full = generate.paste(image, shape)
    box = generate.mask_boxes([painted])[0]
    ys, xs = np.nonzero((image != background).any(axis=2))
    assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert box[0] == 0 and painted.sum() < full  # clipped at the image edge


def test_occluded_box_is_the_visible_extent() -> None:
    size = (100, 100)
    rng = np.random.default_rng(0)
    below = generate.random_shape(rng, size, class_id=1, center=(50, 50))
    below.radius, below.angle, below.aspect, below.texture = 30, 0.0, 1.0, "solid"
    above = generate.random_shape(rng, size, class_id=1, center=(70, 50))
    above.radius, above.angle, above.aspect, above.texture = 30, 0.0, 1.0, "solid"
    image = np.zeros((*size, 3), np.uint8)
    m1, _ = generate.paste(image, below)
    m2, _ = generate.paste(image, above)
    full1, visible1 = generate.mask_boxes([m1, m1 & ~m2])
    assert visible1[0] == full1[0] and visible1[2] < full1[2]  # right part covered


def test_yolo_round_trip_matches_renderer(dataset_yaml: Path) -> None:
    ds = load_dataset(dataset_yaml, "val")
    assert len(ds) == 4 and ds.class_names == list(generate.CLASS_NAMES)
    rng = np.random.default_rng([7, 1])  # the val split's generator
    for i in range(len(ds)):
        _, boxes, class_ids = generate.render_scene(rng, SIZE)
        sample = ds[i]
        assert sample.image.shape == (*SIZE, 3)
        assert np.array_equal(sample.class_ids, class_ids)
        np.testing.assert_allclose(sample.boxes, boxes, atol=1e-3)
    assert len(load_dataset(dataset_yaml, "train")) == 3


def test_coco_round_trip_matches_yolo(dataset_yaml: Path) -> None:
    yolo = load_dataset(dataset_yaml, "val")
    coco = load_dataset(dataset_yaml.parent / "annotations" / "val.json", "val")
    assert coco.class_names == yolo.class_names and len(coco) == len(yolo)
    for a, b in zip(yolo, coco, strict=True):
        assert a.path.name == b.path.name
        assert np.array_equal(a.class_ids, b.class_ids)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    data = json.loads((dataset_yaml.parent / "annotations" / "val.json").read_text())
    assert [c["id"] for c in data["categories"]] == [1, 2, 3, 4]


def test_yaml_with_name_list_and_missing_label_file(tmp_path: Path) -> None:
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / "images" / "val" / name), np.zeros((10, 20, 3),
                                                                       np.uint8))
    (tmp_path / "labels" / "val" / "a.txt").write_text("1 0.5 0.5 0.5 1.0\n")
    (tmp_path / "d.yaml").write_text("val: images/val\nnames: [cat, dog]\n")
    ds = load_dataset(tmp_path / "d.yaml")
    assert ds.class_names == ["cat", "dog"]
    assert ds[0].boxes.tolist() == [[5.0, 0.0, 15.0, 10.0]] and ds[0].class_ids[0] == 1
    assert len(ds[1].boxes) == 0  # no label file: no objects


@pytest.mark.parametrize(("line", "message"), [
    ("0 0.5 0.5 0.2", "expected 5 columns"),
    ("4 0.5 0.5 0.2 0.2", "class id 4"),
    ("a 0.5 0.5 0.2 0.2", "non-numeric"),
    ("0 0.5 0.5 nan 0.2", "non-numeric"),
    ("0 1.2 0.5 0.2 0.2", "outside [0, 1]"),
    ("0 0.95 0.5 0.3 0.2", "outside [0, 1]"),
])
def test_bad_label_names_file_and_line(tmp_path: Path, line: str, message: str
                                       ) -> None:
    root = tmp_path / "bad"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "val" / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
    label = root / "labels" / "val" / "x.txt"
    label.write_text(f"0 0.5 0.5 0.2 0.2\n{line}\n")
    (root / "data.yaml").write_text("path: .\nval: images/val\nnames: {0: a, 1: b, "
                                    "2: c, 3: d}\n")
    with pytest.raises(ValueError, match=rf"x\.txt:2: .*{re.escape(message)}"):
        load_dataset(root / "data.yaml")


def test_unreadable_image_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "images" / "val" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "data.yaml").write_text("val: images/val\nnames: [a]\n")
    ds = load_dataset(tmp_path / "data.yaml")
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        ds[0]


def _rect_image(box: list[int], size: tuple[int, int] = (80, 120)) -> np.ndarray:
    image = np.zeros((*size, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


def _bright_extent(image: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(image[..., 0] > 127)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_hflip_moves_box_with_pixels_and_twice_is_identity() -> None:
    box = [10, 20, 40, 35]
    image = _rect_image(box)
    boxes = np.array([box], np.float32)
    flipped, fb = augment.hflip(image, boxes)
    assert fb[0].tolist() == _bright_extent(flipped) == [80, 20, 110, 35]
    back, bb = augment.hflip(flipped, fb)
    assert np.array_equal(back, image) and np.array_equal(bb, boxes)


def test_affine_on_known_box() -> None:
    box = [20, 30, 60, 50]
    image = _rect_image(box)
    out, boxes, ids = augment.affine(image, np.array([box], np.float32),
                                     np.array([2]), s=1.5, tx=5, ty=-3)
    # x' = 1.5 (x - 60) + 60 + 5, y' = 1.5 (y - 40) + 40 - 3
    assert boxes[0].tolist() == [5.0, 22.0, 65.0, 52.0] and ids.tolist() == [2]
    np.testing.assert_allclose(_bright_extent(out), boxes[0], atol=1)


def test_affine_drops_boxes_pushed_out() -> None:
    image = _rect_image([0, 0, 10, 10])
    rng = np.random.default_rng(0)
    _, boxes, ids = augment.random_affine(rng, image, np.array([[0, 0, 10, 10]],
                                          np.float32), np.array([0]), scale=(2, 2),
                                          translate=0)
    assert len(boxes) == len(ids) == 0  # zoomed about the centre: corner leaves


def test_mosaic_boxes_lie_on_objects() -> None:
    rng = np.random.default_rng(1)
    samples = []
    for k in range(4):
        box = [10 + 5 * k, 15, 50 + 5 * k, 45]
        samples.append(Sample(_rect_image(box), np.array([box], np.float32),
                              np.array([k]), k, Path(f"{k}.png")))
    for _ in range(5):
        image, boxes, ids = augment.mosaic(rng, samples, (128, 128))
        assert image.shape == (128, 128, 3) and len(boxes) == len(ids) >= 1
        for x1, y1, x2, y2 in np.round(boxes).astype(int):
            inner = image[y1 + 1:y2 - 1, x1 + 1:x2 - 1, 0]
            assert inner.size and inner.min() > 200  # every labelled pixel is object


def test_augmenter_none_is_just_letterbox(dataset_yaml: Path) -> None:
    ds = load_dataset(dataset_yaml, "val")
    image, boxes, ids = Augmenter(AugmentConfig.none(), (64, 64))(
        np.random.default_rng(0), ds, 0)
    expected, tf = letterbox(ds[0].image, (64, 64))
    assert np.array_equal(image, expected)
    np.testing.assert_allclose(boxes, tf.to_network(ds[0].boxes), atol=1e-5)
    assert np.array_equal(ids, ds[0].class_ids)


def test_augmenter_full_keeps_shapes(dataset_yaml: Path) -> None:
    ds = load_dataset(dataset_yaml, "train")
    aug = Augmenter(AugmentConfig(mosaic=1.0, affine=1.0, hflip=1.0, hsv=1.0), (64, 96))
    rng = np.random.default_rng(0)
    for i in range(len(ds)):
        image, boxes, ids = aug(rng, ds, i)
        assert image.shape == (64, 96, 3) and boxes.shape == (len(ids), 4)
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert (boxes[:, [0, 2]] <= 96).all() and (boxes[:, [1, 3]] <= 64).all()
    with pytest.raises(ValueError, match="hflip"):
        AugmentConfig(hflip=1.5)


def test_video_ground_truth_has_crossings_entries_and_exits(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    gt_path = generate.generate_video(video, n_frames=90, seed=1, n_objects=6)
    assert gt_path == tmp_path / "clip_gt.txt"
    cap = cv2.VideoCapture(str(video))
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (360, 640, 3)
        frames += 1
    cap.release()
    assert frames == 90
    gt = np.loadtxt(gt_path, delimiter=",")
    assert gt.shape[1] == 9 and gt[:, 0].min() == 1 and gt[:, 0].max() == 90
    firsts, lasts = {}, {}
    for tid in np.unique(gt[:, 1]):
        rows = gt[gt[:, 1] == tid]
        assert len(np.unique(rows[:, 7])) == 1  # one class per id
        assert np.array_equal(rows[:, 0], np.arange(rows[0, 0], rows[-1, 0] + 1))
        firsts[tid], lasts[tid] = rows[0, 0], rows[-1, 0]
    assert any(f > 1 for f in firsts.values())  # something enters
    assert any(last < 90 for last in lasts.values())  # something leaves
    assert ((gt[:, 8] >= 0) & (gt[:, 8] <= 1)).all()
    crossings = 0
    for f in range(1, 91):
        rows = gt[gt[:, 0] == f]
        xyxy = np.concatenate([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]], axis=1)
        iou = iou_matrix(xyxy, xyxy)
        np.fill_diagonal(iou, 0)
        crossings += int((iou > 0.05).any())
    assert crossings > 0
    assert (gt[:, 8] < 0.9).any()  # someone is occluded or half out


def test_generate_cli(tmp_path: Path) -> None:
    code = training_main(["generate", "dataset", "--out", str(tmp_path / "d"),
                          "--train", "1", "--val", "1", "--size", "64", "96", "--coco"])
    assert code == 0
    assert (tmp_path / "d" / "annotations" / "train.json").is_file()
    assert len(load_dataset(tmp_path / "d" / "data.yaml", "train")) == 1


@pytest.fixture()
def photo_dir(tmp_path: Path) -> Path:
    """Two tiny 'photographs': a blue-to-red ramp and a green checkerboard."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    ramp = np.zeros((120, 200, 3), np.uint8)
    ramp[..., 0] = np.linspace(255, 0, 200, dtype=np.uint8)
    ramp[..., 2] = np.linspace(0, 255, 200, dtype=np.uint8)
    cv2.imwrite(str(folder / "ramp.png"), ramp)
    board = (np.indices((100, 150)).sum(0) // 10 % 2 * 200).astype(np.uint8)
    cv2.imwrite(str(folder / "sub" / "board.png"),
                np.stack([np.zeros_like(board), board, np.zeros_like(board)], -1))
    cv2.imwrite(str(folder / "icon.png"), np.zeros((16, 16, 3), np.uint8))  # skipped
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_backgrounds_are_crops_of_the_photographs(photo_dir: Path) -> None:
    photos = generate.load_backgrounds(photo_dir)
    assert len(photos) == 2  # the 16 px icon and the text file are skipped
    rng = np.random.default_rng(0)
    for _ in range(6):
        image, boxes, _ = generate.render_scene(rng, SIZE, photos, max_objects=1)
        assert len(boxes) == 1
        outside = np.ones(SIZE, bool)
        x1, y1, x2, y2 = boxes[0].astype(int)
        outside[max(y1 - 2, 0):y2 + 2, max(x1 - 2, 0):x2 + 2] = False
        bg = image[outside].astype(int)
        # ramp: no green; board: only green (+ grain of at most a few levels)
        is_ramp = np.median(bg[:, 1]) < 20
        channels = (1,) if is_ramp else (0, 2)
        assert np.percentile(bg[:, list(channels)], 90) < 25


def test_generate_with_backgrounds_and_one_object(photo_dir: Path,
                                                  tmp_path: Path) -> None:
    code = training_main(["generate", "dataset", "--out", str(tmp_path / "d"),
                          "--train", "0", "--val", "3", "--size", "64", "96",
                          "--backgrounds", str(photo_dir), "--max-objects", "1"])
    assert code == 0
    val = load_dataset(tmp_path / "d" / "data.yaml", "val")
    assert [len(s.boxes) for s in val] == [1, 1, 1]


def test_backgrounds_folder_without_photos_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no photographs"):
        generate.load_backgrounds(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        generate.load_backgrounds(tmp_path / "missing")
