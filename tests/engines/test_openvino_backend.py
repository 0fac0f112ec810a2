from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

pytest.importorskip("openvino", reason="openvino is not installed")

from core.boxes import iou_matrix
from core.meta import ModelError, ModelMeta
from engines.backends.onnxruntime import OnnxRuntimeBackend
from engines.backends.openvino import OpenVINOBackend, save_ir
from engines.build import MODELS_DIR, build_detector, open_backend
from tests.engines.test_onnxruntime_backend import check_overlapping_calls, tiny_model
from training.export import embed_metadata

# bf16 keeps 8 bits of mantissa: relative error up to ~2^-8 per op, a few ops deep
BF16_RTOL = 3e-2
YOLO = MODELS_DIR / "yolo_demo.onnx"


def tolerance(backend: OpenVINOBackend) -> float:
    return BF16_RTOL if backend.precision == "bf16" else 1e-4


def test_runs_and_reports_signature_and_precision(tmp_path: Path) -> None:
    backend = OpenVINOBackend(tiny_model(tmp_path / "m.onnx"), threads=1)
    assert backend.input_shape == ("?", 3, 4, 4) and backend.meta is None
    assert backend.threads == 1
    assert backend.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert backend.precision in ("bf16", "f32")
    assert backend.describe()["precision"] == backend.precision
    x = np.random.default_rng(0).random((2, 3, 4, 4), dtype=np.float32)
    out = backend.infer(x)[0]
    np.testing.assert_allclose(out, x * 2, rtol=tolerance(backend))
    backend.warmup()
    assert backend.infer(x)[0] is not out  # outputs are copies, not reused buffers


def test_fixed_batch_model_runs_a_batch_as_parallel_streams(tmp_path: Path) -> None:
    backend = OpenVINOBackend(tiny_model(tmp_path / "m.onnx", batch=1), threads=2,
                              precision="f32")
    assert backend.max_batch == 2
    x = np.random.default_rng(1).random((3, 3, 4, 4), dtype=np.float32)
    out = backend.infer(x)[0]
    np.testing.assert_allclose(out, x * 2, rtol=1e-6)
    assert backend._chunk_pool is not None  # the parallel path ran
    assert backend.infer(x[:1])[0].shape == (1, 3, 4, 4)  # one frame: one request


@pytest.mark.parametrize("fixed", [1, "N"])
def test_overlapping_calls_each_get_their_own_outputs(tmp_path: Path,
                                                      fixed: int | str) -> None:
    """Fixed- and dynamic-batch models both run a batch as parallel requests."""
    check_overlapping_calls(OpenVINOBackend(
        tiny_model(tmp_path / "m.onnx", batch=fixed), threads=2, precision="f32"))


def test_forced_fp32_hint_is_what_compiles(tmp_path: Path) -> None:
    backend = OpenVINOBackend(tiny_model(tmp_path / "m.onnx"), precision="f32")
    assert backend.precision == "f32"
    with pytest.raises(ValueError, match="precision must be one of"):
        OpenVINOBackend(tmp_path / "m.onnx", precision="int4")


@pytest.mark.skipif(not YOLO.is_file(), reason="models/yolo_demo.onnx not shipped")
def test_yolo_parity_with_onnxruntime() -> None:
    ov = OpenVINOBackend(YOLO, threads=1)
    ort = OnnxRuntimeBackend(YOLO, threads=1)
    assert ov.meta == ort.meta and ov.output_names == ort.output_names
    x = np.random.default_rng(1).random((1, 3, *ov.meta.input_size), np.float32)
    a, b = ov.infer(x)[0], ort.infer(x)[0]
    assert a.shape == b.shape
    scale = float(np.abs(b).max())
    assert float(np.abs(a - b).max()) <= tolerance(ov) * scale
    frame = (np.random.default_rng(2).random((240, 320, 3)) * 255).astype(np.uint8)
    d_ov = build_detector(ov, conf=0.01).detect([frame])[0]
    d_ort = build_detector(ort, conf=0.01).detect([frame])[0]
    if ov.precision == "f32":
        assert len(d_ov) == len(d_ort)
        np.testing.assert_allclose(d_ov.scores, d_ort.scores, atol=1e-3)


def test_ir_keeps_metadata_and_opens_by_suffix(tmp_path: Path) -> None:
    meta = ModelMeta("yolo", ["a"], (4, 4), layout="anchor_free")
    onnx_path = tiny_model(tmp_path / "m.onnx")
    embed_metadata(onnx_path, meta)
    assert OpenVINOBackend(onnx_path).meta == meta
    xml = save_ir(onnx_path, tmp_path / "ir")
    assert xml.with_suffix(".bin").is_file()
    backend = open_backend(xml, threads=1)
    assert isinstance(backend, OpenVINOBackend) and backend.meta == meta
    x = np.ones((1, 3, 4, 4), np.float32)
    np.testing.assert_allclose(backend.infer(x)[0], 2.0, rtol=tolerance(backend))


def test_ultralytics_folder_reads_metadata_yaml(tmp_path: Path) -> None:
    folder = tmp_path / "m_openvino_model"
    save_ir(tiny_model(tmp_path / "m.onnx"), folder)
    (folder / "metadata.yaml").write_text(
        "task: detect\nstride: 32\nimgsz:\n- 4\n- 4\nnames:\n  0: person\n  1: car\n")
    backend = open_backend(folder)
    assert isinstance(backend, OpenVINOBackend)
    assert backend.meta.class_names == ["person", "car"]
    assert backend.meta.input_size == (4, 4) and backend.meta.family == "yolo"


def test_ultralytics_folder_rejections(tmp_path: Path) -> None:
    folder = tmp_path / "m_openvino_model"
    folder.mkdir()
    with pytest.raises(ModelError, match=r"expected one OpenVINO \.xml"):
        open_backend(folder)
    save_ir(tiny_model(tmp_path / "m.onnx"), folder)
    (folder / "metadata.yaml").write_text("task: segment\nnames: [a]\n")
    with pytest.raises(ModelError, match="task 'segment' is not supported"):
        open_backend(folder)


@pytest.mark.parametrize("suffix", [".onnx", ".xml"])
def test_corrupt_file_named(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b"\x08\x07junk" * 20)
    with pytest.raises(ModelError, match=rf"bad\{suffix}: not a loadable"):
        OpenVINOBackend(path)


def test_unknown_device_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="device 'cuda:0' is not supported"):
        OpenVINOBackend(tiny_model(tmp_path / "m.onnx"), device="cuda:0")


@pytest.mark.parametrize("name", ["yolo", "faster-rcnn"])
def test_shipped_families_run_on_openvino_like_onnxruntime(name: str) -> None:
    from engines.build import load_detector
    from training.data.generate import render_scene

    # The models' own kind of input (shape scenes): on footage they were not
    # trained for, a two-stage model's weak detections come from proposals that
    # bf16 may reorder, so a paired box can belong to another proposal.
    rng = np.random.default_rng(5)
    frames = [render_scene(rng, (360, 640))[0] for _ in range(3)]
    with load_detector(name, backend="openvino", threads=1) as ov, \
            load_detector(name, threads=1) as ort:
        assert type(ov.backend).__name__ == "OpenVINOBackend"
        a, b = ov.detect(frames), ort.detect(frames)
    # bf16 rounds every activation to 8 bits of mantissa: through a two-stage
    # network a score moves by up to ~0.05 (0.01 on average) on these scenes
    tol = 0.1 if ov.backend.precision == "bf16" else 1e-3
    borderline = ort.conf + tol  # may fall on either side in bf16
    assert sum(len(y) for y in b), "no detections to compare"
    for x, y in zip(a, b, strict=True):
        # Near-equal scores may swap places in bf16: pair the boxes by overlap.
        iou = iou_matrix(x.xyxy, y.xyxy)
        rows, cols = linear_sum_assignment(-iou)
        paired = iou[rows, cols] > 0.5
        rows, cols = rows[paired], cols[paired]
        np.testing.assert_allclose(x.scores[rows], y.scores[cols], atol=tol)
        if len(rows):
            assert np.abs(x.scores[rows] - y.scores[cols]).mean() < tol / 3
        np.testing.assert_allclose(x.xyxy[rows], y.xyxy[cols], atol=100 * tol)
        np.testing.assert_array_equal(x.class_ids[rows], y.class_ids[cols])
        for dets, used in ((x, rows), (y, cols)):  # the rest: only threshold cases
            alone = np.setdiff1d(np.arange(len(dets)), used)
            assert (dets.scores[alone] < borderline).all(), dets.scores[alone]


def test_metrics_name_the_runtime_and_precision(tmp_path: Path) -> None:
    from engines.build import load_detector
    from pipeline.build import build_pipeline
    from pipeline.config import PipelineConfig
    from pipeline.sinks import OutputConfig
    from pipeline.sources import SourceConfig
    from tests.conftest import SAMPLE_VIDEO

    cfg = PipelineConfig(progress=False, sources=SourceConfig(max_frames=2),
                         outputs=OutputConfig(out_dir=tmp_path, video=False))
    with load_detector("yolo", backend="openvino", threads=1) as ov:
        summary = build_pipeline([str(SAMPLE_VIDEO)], ov, cfg).run().summary()
        assert summary["runtime"] == f"OpenVINOBackend {ov.backend.precision}"
        assert ov.backend.precision in ("bf16", "f32")
    with load_detector("yolo", threads=1) as ort:
        table = build_pipeline([str(SAMPLE_VIDEO)], ort, cfg).run().table()
        assert table.splitlines()[-1].endswith("on OnnxRuntimeBackend f32")
