"""``python -m training quantize`` on small generated models (seconds, not minutes)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from core.meta import META_KEY, ModelMeta
from core.types import Detections
from engines.build import load_detector
from training import quantize as q
from training.__main__ import main
from training.data.generate import generate_dataset, render_scene
from training.export import embed_metadata

SIZE = 64  # network input (square)


def tiny_yolo(path: Path, classes: int = 2, seed: int = 0) -> Path:
    """A two-conv anchor-free head, ``[B, 4 + C, N]``: boxes in input pixels
    (sigmoid x SIZE) concatenated with sigmoid class scores, as YOLOv8 exports."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(),
                torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.ReLU())
            self.box = torch.nn.Conv2d(16, 4, 1)
            self.cls = torch.nn.Conv2d(16, classes, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = self.body(x)
            boxes = torch.sigmoid(self.box(f)).flatten(2) * SIZE
            boxes = torch.cat([boxes[:, :2], boxes[:, 2:] * 0.5], 1)  # cx cy w h
            return torch.cat([boxes, torch.sigmoid(self.cls(f)).flatten(2)], 1)

    torch.manual_seed(seed)
    net = Net().eval()
    torch.onnx.export(net, torch.zeros(1, 3, SIZE, SIZE), str(path),
                      input_names=["images"], output_names=["output0"],
                      dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
                      opset_version=17, dynamo=False)
    embed_metadata(path, ModelMeta("yolo", [f"c{i}" for i in range(classes)],
                                   (SIZE, SIZE), layout="anchor_free"))
    return path


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    for i in range(24):
        image = render_scene(rng, (96, 128))[0]
        cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    return folder


def test_read_frames_from_folder_video_and_dataset(frames_dir: Path, tmp_path: Path,
                                                   sample_video: Path) -> None:
    frames = q.read_frames(frames_dir, 10)
    assert len(frames) == 10 and frames[0].shape == (96, 128, 3)
    video = q.read_frames(sample_video, 5)
    assert len(video) == 5 and video[0].dtype == np.uint8
    data = generate_dataset(tmp_path / "ds", 6, 2, size=(64, 96))
    assert len(q.read_frames(data, 4)) == 4
    with pytest.raises(ValueError, match="frame count must be >= 1"):
        q.read_frames(frames_dir, 0)


def test_decode_tail_stops_at_the_last_weight_layers() -> None:
    """conv -> relu -> conv -> sigmoid -> concat(output): tail 0 = sigmoid+concat,
    tail 1 adds the last conv and what runs between it and the conv before (relu);
    dead branches are ignored."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv1"),
             helper.make_node("Relu", ["a"], ["b"], name="relu"),
             helper.make_node("Conv", ["b", "w"], ["c"], name="conv2"),
             helper.make_node("Sigmoid", ["c"], ["d"], name="sig"),
             helper.make_node("Concat", ["d", "c"], ["y"], name="cat", axis=1),
             helper.make_node("Neg", ["a"], ["unused"], name="dead")]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])], [w])
    model = helper.make_model(graph)
    assert sorted(q.decode_tail(model, 0)) == ["cat", "sig"]
    assert sorted(q.decode_tail(model, 1)) == ["cat", "conv2", "relu", "sig"]


def test_agreement_matches_one_to_one_by_class_and_iou() -> None:
    ref = Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
                     np.array([0.9, 0.8], np.float32), np.array([0, 1], np.int32))
    same_but_one = Detections(np.array([[0, 0, 10, 10.2], [20, 20, 30, 30]],
                                       np.float32),
                              np.array([0.85, 0.8], np.float32),
                              np.array([0, 0], np.int32))  # second: wrong class
    result = q.agreement([ref], [same_but_one])
    assert result.matched == pytest.approx(0.5)
    assert result.max_score_change == pytest.approx(0.05, abs=1e-6)
    assert q.agreement([Detections.empty()], [Detections.empty()]).matched == 1.0


def test_compare_threshold_drops_for_weak_models() -> None:
    def dets(scores: list[float]) -> Detections:
        n = len(scores)
        return Detections(np.tile(np.array([[0, 0, 5, 5]], np.float32), (n, 1)),
                          np.array(scores, np.float32), np.zeros(n, np.int32))

    confident = [dets([0.9] * q.MIN_COMPARED)]
    assert q.compare_threshold(confident) == q.COMPARE_CONF
    weak = [dets([0.05, 0.02]), dets([0.01 * k for k in range(1, 30)])]
    threshold = q.compare_threshold(weak)
    assert threshold < q.COMPARE_CONF
    assert sum(int((d.scores >= threshold).sum()) for d in weak) >= q.MIN_COMPARED
    assert q.compare_threshold([Detections.empty()]) == q.COMPARE_CONF


def test_quantize_cli_writes_qdq_int8_with_metadata(tmp_path: Path, frames_dir: Path,
                                                    capsys: pytest.CaptureFixture
                                                    ) -> None:
    src = tiny_yolo(tmp_path / "tiny.onnx")
    out = tmp_path / "tiny_int8.onnx"
    assert main(["quantize", str(src), "--calibration", str(frames_dir), "--out",
                 str(out), "--frames", "24", "--held-back", "6"]) == 0
    printed = capsys.readouterr().out
    assert "<- chosen" in printed and "matched at IoU>=0.9" in printed
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [i for i in model.graph.initializer
                    if i.data_type == TensorProto.INT8]
    assert int8_weights, "no int8 weights in the quantized file"
    props = {p.key: p.value for p in model.metadata_props}
    meta = ModelMeta.from_json(props[META_KEY])
    assert meta.class_names == ["c0", "c1"] and meta.precision == "int8"
    assert props["precision"] == "int8" and props["calibration"] in q.METHODS
    with load_detector(out) as detector:  # still a working detector
        assert detector.class_names == ["c0", "c1"]
        image = cv2.imread(str(next(frames_dir.glob("*.png"))))
        assert isinstance(detector.detect([image])[0], Detections)


def test_fp32_decode_tail_is_kept_when_int8_loses_the_scores(tmp_path: Path,
                                                             frames_dir: Path
                                                             ) -> None:
    """One int8 scale for a concat of [0, 64] px boxes and [0, 1] scores rounds the
    scores away; keeping the decode in fp32 restores agreement, and is chosen."""
    src = tiny_yolo(tmp_path / "tiny.onnx", seed=1)
    frames = q.read_frames(frames_dir, 24)
    report = q.choose(src, tmp_path / "out.onnx", frames, 6, ("MinMax",))
    by_tail = {v["fp32_nodes"]: v["agreement"].matched for v in report["variants"]}
    assert by_tail["none"] < by_tail["decode"]
    assert report["best"]["fp32_nodes"] != "none"
    assert report["best"]["agreement"].matched >= 0.5


def test_rejections_name_the_problem(tmp_path: Path, frames_dir: Path) -> None:
    assert main(["quantize", str(tmp_path / "missing.onnx"), "--calibration",
                 str(frames_dir)]) == 2
    src = tiny_yolo(tmp_path / "t.onnx")
    with pytest.raises(ValueError, match="leave none for calibration"):
        q.choose(src, tmp_path / "o.onnx", q.read_frames(frames_dir, 4), 4)
    assert main(["quantize", str(src), "--calibration", str(frames_dir), "--out",
                 str(src)]) == 2


def test_symmetric_output_is_what_tensorrt_takes(tmp_path: Path, frames_dir: Path
                                                 ) -> None:
    from training.tensorrt.qdq import qdq_nodes

    src = tiny_yolo(tmp_path / "tiny.onnx")
    frames = q.read_frames(frames_dir, 12)
    q.choose(src, tmp_path / "sym.onnx", frames, 4, ("MinMax",), symmetric=True)
    q.choose(src, tmp_path / "asym.onnx", frames, 4, ("MinMax",))
    count, asymmetric = qdq_nodes(tmp_path / "sym.onnx")
    assert count > 0 and asymmetric == []
    assert qdq_nodes(tmp_path / "asym.onnx")[1], "uint8 activations have zero points"
