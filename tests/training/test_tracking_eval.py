"""evaluate-tracking: TrackEval metrics on MOT files/folders and tracker runs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.tracking import parse_tracker_params_for

pytest.importorskip("trackeval", reason="pip install --no-deps 'trackeval>=1.3'")

from training.__main__ import main
from training.evaluate_tracking import (
    evaluate,
    find_sequences,
    noisy_detections,
    read_mot,
    run_tracker,
    write_mot,
)


@pytest.fixture(scope="module")
def generated_video(tmp_path_factory):
    """A 150-frame procedural video and its ground truth (<stem>_gt.txt)."""
    from training.data.generate import generate_video

    video = tmp_path_factory.mktemp("tracking_eval") / "seq.mp4"
    gt = generate_video(video, n_frames=150, fps=15.0, seed=0, n_objects=6)
    return video, gt


def synthetic_gt(n_frames: int = 30) -> np.ndarray:
    """Three objects on straight lines, MOT rows (frame, id, x, y, w, h, 1, 1, 1)."""
    rows = []
    for f in range(1, n_frames + 1):
        for i in range(3):
            rows.append([f, i + 1, 20 + 5 * f, 40 + 100 * i, 30, 60, 1, 1, 1.0, -1])
    return np.array(rows, np.float64)


def write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, rows[:, :9], delimiter=",", fmt="%g")
    return path


def test_perfect_prediction_scores_one():
    gt = synthetic_gt()
    m = evaluate({"s": gt}, {"s": gt.copy()})["s"]
    assert m["MOTA"] == pytest.approx(1) and m["IDF1"] == pytest.approx(1)
    assert m["HOTA"] == pytest.approx(1) and m["IDSW"] == 0 and m["MT"] == 3


def test_swapped_ids_score_less():
    gt = synthetic_gt()
    pred = gt.copy()
    late = pred[:, 0] > 15
    one, two = late & (pred[:, 1] == 1), late & (pred[:, 1] == 2)
    pred[one, 1], pred[two, 1] = 2, 1  # objects 1 and 2 trade ids half-way
    m = evaluate({"s": gt}, {"s": pred})["s"]
    assert m["IDSW"] == 2
    assert m["MOTA"] < 1 and m["IDF1"] < 0.8 and m["HOTA"] < 0.9
    assert m["MOTA"] == pytest.approx(1 - 2 / len(gt))


def test_empty_prediction_scores_zero():
    gt = synthetic_gt()
    m = evaluate({"s": gt}, {"s": np.zeros((0, 10))})["s"]
    assert m["MOTA"] == 0 and m["IDF1"] == 0 and m["HOTA"] == 0 and m["FN"] == len(gt)


def test_duplicate_id_in_frame_rejected():
    gt = synthetic_gt()
    pred = gt.copy()
    pred[1, 1] = pred[0, 1]
    with pytest.raises(ValueError, match="twice"):
        evaluate({"s": gt}, {"s": pred})


def test_pedestrian_rules_forgive_distractors():
    gt = synthetic_gt(10)
    gt[gt[:, 1] == 3, 7] = 8  # object 3 is a "distractor"
    pred = gt.copy()
    plain = evaluate({"s": gt}, {"s": pred})["s"]
    assert plain["MOTA"] == pytest.approx(1)
    mot = evaluate({"s": gt}, {"s": pred}, pedestrians=True)["s"]
    assert mot["MOTA"] == pytest.approx(1) and mot["FP"] == 0 and mot["MT"] == 2
    gt[gt[:, 1] == 3, 7] = 3  # another class: not pedestrian, not a distractor
    mot = evaluate({"s": gt}, {"s": pred}, pedestrians=True)["s"]
    assert mot["FP"] == 10 and mot["MOTA"] == pytest.approx(0.5)


def test_tracker_params_from_cli_pairs():
    params = parse_tracker_params_for(
        ["bytetrack", "sort"], ["track_buffer=60", "sort.max_age=5", "fuse_score=no"])
    assert params == {"bytetrack": {"track_buffer": 60, "fuse_score": False},
                      "sort": {"max_age": 5}}
    with pytest.raises(ValueError, match="max_agee"):
        parse_tracker_params_for(["sort"], ["max_agee=3"])
    # evaluate-tracking once read any word but 1/true/yes as False
    with pytest.raises(ValueError, match="'maybe' is not a bool"):
        parse_tracker_params_for(["bytetrack"], ["fuse_score=maybe"])
    with pytest.raises(ValueError, match="'ocsort' is not one of"):
        parse_tracker_params_for(["sort"], ["ocsort.max_age=3"])


def test_read_mot_whitespace_and_six_columns(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("1 3 10 20 30 40\n2 3 12 20 30 40\n")
    rows = read_mot(path)
    assert rows.shape == (2, 10)
    np.testing.assert_array_equal(rows[:, :7], [[1, 3, 10, 20, 30, 40, 1],
                                                [2, 3, 12, 20, 30, 40, 1]])
    (tmp_path / "bad.txt").write_text("1,2,3\n")
    with pytest.raises(ValueError, match="6 columns"):
        read_mot(tmp_path / "bad.txt")


def test_cli_on_mot_challenge_folders(tmp_path, capsys):
    gt = synthetic_gt()
    for seq in ("MOT-A", "MOT-B"):
        write_rows(tmp_path / "gt" / seq / "gt" / "gt.txt", gt)
    write_rows(tmp_path / "pred" / "data" / "MOT-A.txt", gt)
    pred_b = gt[gt[:, 1] != 3]  # one object never tracked
    write_rows(tmp_path / "pred" / "data" / "MOT-B.txt", pred_b)
    seqs = find_sequences(tmp_path / "gt", tmp_path / "pred")
    assert sorted(seqs) == ["MOT-A", "MOT-B"]

    assert main(["evaluate-tracking", "--gt", str(tmp_path / "gt"),
                 "--pred", str(tmp_path / "pred")]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out
             .splitlines() if line.startswith(("MOT-", "COMBINED"))}
    assert lines["MOT-A"][1:4] == ["100.0", "100.0", "100.0"]
    assert float(lines["MOT-B"][1]) == pytest.approx(100 * 2 / 3, abs=0.1)
    assert float(lines["COMBINED"][1]) == pytest.approx(100 * 5 / 6, abs=0.1)

    (tmp_path / "pred" / "data" / "MOT-B.txt").unlink()
    assert main(["evaluate-tracking", "--gt", str(tmp_path / "gt"),
                 "--pred", str(tmp_path / "pred")]) == 2  # names the missing seq


def test_noisy_detections_from_ground_truth():
    gt = synthetic_gt(10)
    exact = noisy_detections(gt, 10, noise=0, drop=0, fp=0)
    assert len(exact) == 10 and all(len(d) == 3 for d in exact)
    np.testing.assert_allclose(exact[0].xyxy[0], [25, 40, 55, 100])
    noisy = noisy_detections(gt, 10, noise=0.1, drop=0.3, fp=0.5, seed=1)
    assert sum(map(len, noisy)) != 30
    assert not np.allclose(noisy[0].xyxy[:1], exact[0].xyxy[:1])
    with pytest.raises(ValueError, match="drop"):
        noisy_detections(gt, 10, drop=1.5)


def test_trackers_on_noisy_generated_video(generated_video, tmp_path, capsys):
    video, gt_path = generated_video
    assert main(["evaluate-tracking", "--video", str(video), "--detector", "noisy-gt",
                 "--tracker", "all", "--save", str(tmp_path)]) == 0
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]]
            for line in capsys.readouterr().out.splitlines()
            if line.startswith(("bytetrack", "sort"))}
    assert set(rows) == {"bytetrack", "sort"}
    mota, idf1, hota = rows["bytetrack"][:3]
    assert 60 < mota < 100 and 70 < idf1 < 100 and 50 < hota < 100
    assert idf1 > rows["sort"][1]  # ByteTrack keeps identities better
    # The saved file is a valid MOT prediction that scores the same.
    saved = read_mot(tmp_path / "bytetrack" / "seq.txt")
    m = evaluate({"s": read_mot(gt_path)}, {"s": saved})["s"]
    assert 100 * m["MOTA"] == pytest.approx(mota, abs=0.06)


def test_run_tracker_rows_and_timing(tmp_path):
    gt = synthetic_gt(20)
    rows, ms = run_tracker("bytetrack", noisy_detections(gt, 20, 0, 0, 0))
    assert rows.shape == (60, 7) and set(rows[:, 1]) == {1, 2, 3} and ms > 0
    written = read_mot(write_mot(tmp_path / "x.txt", rows))
    m = evaluate({"s": gt}, {"s": written})["s"]
    assert m["IDF1"] == pytest.approx(1) and m["MOTA"] == pytest.approx(1)
