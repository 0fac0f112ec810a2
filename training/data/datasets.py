"""Detection datasets in YOLO txt (Ultralytics layout) and COCO json formats.

Labels are parsed and validated when the dataset is loaded, so a bad file fails
at once with its name and line; images are read lazily in ``__getitem__``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.boxes import cxcywh_to_xyxy
from core.formats import IMAGE_SUFFIXES, read_yolo_labels

log = logging.getLogger(__name__)



@dataclass
class Sample:
    """One labelled image: ``image`` HxWx3 uint8 BGR, ``boxes`` (N, 4) float32 xyxy
    pixels, ``class_ids`` (N,) int64 (0-based into the dataset's class names),
    ``image_id`` (COCO id, or the 0-based index for YOLO folders)."""

    image: np.ndarray
    boxes: np.ndarray
    class_ids: np.ndarray
    image_id: int
    path: Path


class DetectionDataset:
    """A sequence of ``Sample`` (usable as a torch Dataset).

    ``labels[i]`` is ``(boxes (N, 4) float32, class_ids (N,) int64)``: boxes are
    normalised cx cy w h when ``normalized`` (YOLO), else xyxy pixels (COCO).
    """

    def __init__(self, image_paths: list[Path],
                 labels: list[tuple[np.ndarray, np.ndarray]],
                 class_names: list[str], normalized: bool,
                 image_ids: list[int] | None = None) -> None:
        if len(image_paths) != len(labels):
            raise ValueError(f"{len(image_paths)} images but {len(labels)} label sets")
        self.image_paths = [Path(p) for p in image_paths]
        self.labels = labels
        self.class_names = list(class_names)
        self.normalized = normalized
        self.image_ids = (list(range(len(image_paths))) if image_ids is None
                          else list(image_ids))
        # (height, width) of each image once read; COCO json fills it up front.
        self.sizes: list[tuple[int, int] | None] = [None] * len(self.image_paths)

    def __len__(self) -> int:
        return len(self.image_paths)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        path = self.image_paths[i]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read image {path}")
        self.sizes[i] = image.shape[:2]
        boxes, class_ids = self.targets(i, image.shape[:2])
        return Sample(image, boxes, class_ids, self.image_ids[i], path)

    def targets(self, i: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4) float32 xyxy pixels and class ids of image ``i`` whose
        (height, width) is ``size``, without reading the image."""
        boxes, class_ids = self.labels[i]
        if self.normalized and len(boxes):
            h, w = size
            boxes = cxcywh_to_xyxy(boxes) * (w, h, w, h)
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return boxes.astype(np.float32).reshape(-1, 4), class_ids.copy()

    @property
    def num_objects(self) -> int:
        return sum(len(c) for _, c in self.labels)


def _names(raw: object, where: Path) -> list[str]:
    if isinstance(raw, dict):
        keys = sorted(int(k) for k in raw)
        if keys != list(range(len(keys))):
            raise ValueError(f"{where}: 'names' keys must be 0..N-1, got {keys}")
        return [str(raw[k] if k in raw else raw[str(k)]) for k in keys]
    if isinstance(raw, list):
        return [str(n) for n in raw]
    raise ValueError(f"{where}: 'names' must be a list or a dict, got {raw!r}")


def _image_files(entry: str | list[str], root: Path, where: Path) -> list[Path]:
    """Images named by a data.yaml split entry: folder(s), image(s) or a .txt list."""
    entries = entry if isinstance(entry, list) else [entry]
    files: list[Path] = []
    for e in entries:
        p = Path(e) if Path(e).is_absolute() else root / e
        if p.is_dir():
            files += sorted(f for f in p.rglob("*")
                            if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.suffix == ".txt" and p.is_file():
            for line in p.read_text().splitlines():
                if line.strip():
                    f = Path(line.strip())
                    files.append(f if f.is_absolute() else (p.parent / f))
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"{where}: split entry {e!r} not found at {p}")
    return files


def label_path(image_path: Path) -> Path:
    """Ultralytics rule: the last ``images`` folder in the path becomes ``labels``."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def load_yolo(yaml_path: Path, split: str) -> DetectionDataset:
    import yaml

    data = yaml.safe_load(yaml_path.read_text()) or {}
    if not isinstance(data, dict) or "names" not in data:
        raise ValueError(f"{yaml_path}: not a YOLO data.yaml (needs 'names')")
    if split not in data or data[split] is None:
        raise ValueError(f"{yaml_path}: no split {split!r}; has "
                         f"{[k for k in ('train', 'val', 'test') if data.get(k)]}")
    names = _names(data["names"], yaml_path)
    root = yaml_path.parent
    if data.get("path"):
        given = Path(data["path"])
        root = given if given.is_absolute() else (yaml_path.parent / given)
        if not root.is_dir():  # a moved dataset: fall back to the yaml's folder
            log.warning("%s: path %s not found; using %s", yaml_path, root,
                        yaml_path.parent)
            root = yaml_path.parent
    images = _image_files(data[split], root, yaml_path)
    labels = []
    for img in images:
        lp = label_path(img)
        labels.append(read_yolo_labels(lp, len(names)) if lp.is_file() else
                      (np.zeros((0, 4), np.float32), np.zeros(0, np.int64)))
    return DetectionDataset(images, labels, names, normalized=True)


def load_coco(json_path: Path, split: str, image_root: Path | None) -> DetectionDataset:
    try:
        data = json.loads(json_path.read_text())
        images, categories = data["images"], data["categories"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{json_path}: not a COCO detection json ({exc})") from exc
    cat_ids = sorted(int(c["id"]) for c in categories)
    names_by_id = {int(c["id"]): str(c["name"]) for c in categories}
    index = {cid: i for i, cid in enumerate(cat_ids)}
    per_image: dict[int, list[tuple[list[float], int]]] = {
        int(im["id"]): [] for im in images}
    for ann in data.get("annotations", []):
        if ann.get("iscrowd", 0):
            continue
        cid, iid = int(ann["category_id"]), int(ann["image_id"])
        if cid not in index:
            raise ValueError(f"{json_path}: annotation {ann.get('id')} has category "
                             f"{cid}, not one of {cat_ids}")
        if iid not in per_image:
            raise ValueError(f"{json_path}: annotation {ann.get('id')} names unknown "
                             f"image {iid}")
        x, y, w, h = (float(v) for v in ann["bbox"])
        if w < 0 or h < 0:
            raise ValueError(f"{json_path}: annotation {ann.get('id')} has negative "
                             f"size bbox {ann['bbox']}")
        per_image[iid].append(([x, y, x + w, y + h], index[cid]))
    roots = ([image_root] if image_root is not None else
             [json_path.parent, json_path.parent.parent / "images" / split])
    paths, labels, ids = [], [], []
    for im in images:
        name = str(im["file_name"])
        found = next((r / name for r in roots if (r / name).is_file()), None)
        if found is None:
            raise ValueError(f"{json_path}: image {name!r} not found under "
                             f"{[str(r) for r in roots]}")
        anns = per_image[int(im["id"])]
        boxes = np.asarray([a[0] for a in anns], np.float32).reshape(-1, 4)
        labels.append((boxes, np.asarray([a[1] for a in anns], np.int64)))
        paths.append(found)
        ids.append(int(im["id"]))
    ds = DetectionDataset(paths, labels, [names_by_id[c] for c in cat_ids],
                          normalized=False, image_ids=ids)
    ds.sizes = [(int(im["height"]), int(im["width"])) if "height" in im and
                "width" in im else None for im in images]
    return ds


def load_dataset(path: str | Path, split: str = "val",
                 image_root: str | Path | None = None) -> DetectionDataset:
    """Open a YOLO ``data.yaml`` (its ``split`` entry) or a COCO ``.json``.

    COCO images are looked up beside the json, then in ``../images/<split>``;
    ``image_root`` overrides both. COCO category ids map to 0-based class ids in
    ascending id order; ``iscrowd`` annotations are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"dataset file not found: {path}")
    if path.suffix.lower() in {".yaml", ".yml"}:
        ds = load_yolo(path, split)
    elif path.suffix.lower() == ".json":
        ds = load_coco(path, split, Path(image_root) if image_root else None)
    else:
        raise ValueError(f"{path}: expected a YOLO data.yaml or a COCO .json")
    log.info("%s [%s]: %d images, %d objects, classes %s", path, split, len(ds),
             ds.num_objects, ds.class_names)
    return ds
