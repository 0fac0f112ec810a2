"""MOTChallenge rows and YOLO label lines: one writer and one reader each."""

from __future__ import annotations

import numpy as np
import pytest

from core.formats import (
    mot_lines,
    mot_rows,
    read_mot,
    read_yolo_labels,
    write_mot,
    yolo_label_lines,
)

XYXY = np.array([[1, 2, 11, 22], [100.25, 50.5, 140.75, 130.125]], np.float32)
IDS = np.array([7, 12], np.int32)
SCORES = np.array([0.5, 0.875], np.float32)


def test_mot_rows_lines_and_file_agree(tmp_path):
    rows = mot_rows(3, XYXY, IDS, SCORES)
    assert rows.shape == (2, 10) and (rows[:, 7:] == -1).all()
    np.testing.assert_allclose(rows[1, :7], [3, 12, 100.25, 50.5, 40.5, 79.625,
                                             0.875])
    lines = list(mot_lines(3, XYXY, IDS, SCORES))
    assert lines == ["3,7,1.00,2.00,10.00,20.00,0.5000,-1,-1,-1\n",
                     "3,12,100.25,50.50,40.50,79.62,0.8750,-1,-1,-1\n"]
    path = write_mot(tmp_path / "sub" / "seq.txt", rows)
    assert path.read_text() == "".join(lines)
    np.testing.assert_allclose(read_mot(path)[:, :7], rows[:, :7], atol=0.005)


def test_mot_rows_of_an_empty_frame():
    assert mot_rows(1, np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0)
                    ).shape == (0, 10)
    assert list(mot_lines(1, np.zeros((0, 4), np.float32), [], [])) == []


def test_yolo_label_lines_normalise_by_height_and_width():
    size = (200, 400)  # height, width
    text = yolo_label_lines(XYXY[:1], np.array([2]), size)
    assert text == "2 0.015 0.06 0.025 0.1\n"
    with_scores = yolo_label_lines(XYXY, np.array([2, 0]), size, SCORES, spec=".6f")
    assert with_scores.splitlines() == [
        "2 0.015000 0.060000 0.025000 0.100000 0.500000",
        "0 0.301250 0.451562 0.101250 0.398125 0.875000"]
    assert yolo_label_lines(np.zeros((0, 4)), np.zeros(0), size) == ""


def test_yolo_labels_written_are_read_back(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text(yolo_label_lines(XYXY, np.array([2, 0]), (200, 400),
                                     spec=".6f"))
    cxcywh, classes = read_yolo_labels(path, num_classes=3)
    assert classes.tolist() == [2, 0]
    np.testing.assert_allclose(cxcywh[1], [0.30125, 0.4515625, 0.10125, 0.398125],
                               atol=1e-6)
    with pytest.raises(ValueError, match=r"x.txt:1: class id 2 is not an integer "
                                         r"in \[0, 1\]"):
        read_yolo_labels(path, num_classes=2)
