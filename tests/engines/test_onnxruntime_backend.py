from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from core.meta import ModelError, ModelMeta, sidecar_path
from engines.backends.onnxruntime import OnnxRuntimeBackend
from engines.build import open_backend
from training.export import embed_metadata


def tiny_model(path: Path, dtype: int = TensorProto.FLOAT,
               batch: int | str = "N") -> Path:
    """input [N,3,4,4] -> output = input * 2 (as float32 for fp16 inputs);
    ``batch``: an int fixes the batch axis, as static exports do."""
    two = helper.make_tensor("two", dtype, [], [2.0])
    nodes = [helper.make_node("Mul", ["images", "two"], ["scaled"])]
    out = "scaled"
    if dtype == TensorProto.FLOAT16:
        nodes.append(helper.make_node("Cast", ["scaled"], ["out"],
                                      to=TensorProto.FLOAT))
        out = "out"
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", dtype, [batch, 3, 4, 4])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, 3, 4, 4])],
        [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_runs_and_reports_signature(tmp_path: Path) -> None:
    backend = open_backend(tiny_model(tmp_path / "m.onnx"), threads=1)
    assert isinstance(backend, OnnxRuntimeBackend)
    assert backend.input_shape == ("N", 3, 4, 4) and backend.meta is None
    x = np.random.default_rng(0).random((2, 3, 4, 4), dtype=np.float32)
    np.testing.assert_allclose(backend.infer(x)[0], x * 2, rtol=1e-6)
    backend.warmup()


def test_fp16_input_models_take_float32_batches(tmp_path: Path) -> None:
    backend = open_backend(tiny_model(tmp_path / "h.onnx", TensorProto.FLOAT16))
    x = np.full((1, 3, 4, 4), 0.5, np.float32)
    out = backend.infer(x)[0]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 1.0)


def test_metadata_embedded_and_sidecar(tmp_path: Path) -> None:
    meta = ModelMeta("yolo", ["a", "b"], (4, 4), layout="anchor_free")
    embedded = tiny_model(tmp_path / "e.onnx")
    embed_metadata(embedded, meta)
    assert open_backend(embedded).meta == meta
    beside = tiny_model(tmp_path / "s.onnx")
    sidecar_path(beside).write_text(meta.to_json())
    assert open_backend(beside).meta == meta


@pytest.mark.parametrize("content", [b"", b"\x08\x07junk" * 20, None])
def test_corrupt_or_truncated_onnx_named(tmp_path: Path, content: bytes | None
                                         ) -> None:
    path = tmp_path / "bad.onnx"
    if content is None:  # a real model cut in half
        data = tiny_model(tmp_path / "good.onnx").read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(ModelError, match=r"bad\.onnx: not a loadable ONNX model"):
        open_backend(path)


def test_unknown_device_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"device 'tpu'.*'cpu', 'cuda' or 'cuda:N'"):
        OnnxRuntimeBackend(tiny_model(tmp_path / "m.onnx"), device="tpu")


def test_intra_op_threads_sleep_unless_asked_to_spin(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "m.onnx")
    entry = "session.intra_op.allow_spinning"
    quiet = OnnxRuntimeBackend(path, threads=2).session.get_session_options()
    assert quiet.get_session_config_entry(entry) == "0"
    busy = OnnxRuntimeBackend(path, threads=2, spin=True).session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):
        busy.get_session_config_entry(entry)  # unset: ONNX Runtime's default, spin


@pytest.mark.parametrize("fixed", [1, 2])
def test_fixed_batch_model_takes_larger_batches_as_parallel_requests(
        tmp_path: Path, fixed: int) -> None:
    """A static-batch export takes batch x threads frames per call: chunks of its
    batch (the last one padded) run on a 1-thread session at once."""
    backend = OnnxRuntimeBackend(tiny_model(tmp_path / "m.onnx", batch=fixed),
                                 threads=2)
    assert backend.max_batch == 2 * fixed
    x = np.random.default_rng(0).random((fixed + 1, 3, 4, 4), dtype=np.float32)
    out = backend.infer(x)[0]
    assert out.shape == x.shape  # the padding is dropped
    np.testing.assert_allclose(out, x * 2, rtol=1e-6)
    assert backend._chunk_pool is not None  # the parallel path ran
    assert backend.calls_in_flight == 2
    backend.close()
    assert backend._chunk_pool is None and backend._single is None


def check_overlapping_calls(backend: Any) -> None:
    """``infer`` called from 4 threads at once on ``tiny_model``: each call's
    chunks must come back to that call, in order (the pipeline overlaps calls)."""
    assert backend.calls_in_flight == 2
    rng = np.random.default_rng(2)
    batches = [rng.random((3, 3, 4, 4), dtype=np.float32) for _ in range(24)]
    with ThreadPoolExecutor(4) as calls:
        outs = list(calls.map(lambda x: backend.infer(x)[0], batches))
    for x, out in zip(batches, outs, strict=True):
        np.testing.assert_allclose(out, x * 2, rtol=1e-6)


@pytest.mark.parametrize("fixed", [1, "N"])
def test_overlapping_calls_each_get_their_own_outputs(tmp_path: Path,
                                                      fixed: int | str) -> None:
    check_overlapping_calls(OnnxRuntimeBackend(
        tiny_model(tmp_path / "m.onnx", batch=fixed), threads=2))


def test_dynamic_batch_runs_one_chunk_per_thread_and_one_thread_runs_whole(
        tmp_path: Path) -> None:
    dynamic = OnnxRuntimeBackend(tiny_model(tmp_path / "d.onnx"), threads=2)
    assert dynamic.max_batch == 0  # no cap: the detector picks the batch
    assert dynamic.calls_in_flight == 2
    x = np.random.default_rng(3).random((3, 3, 4, 4), dtype=np.float32)
    sizes: list[int] = []
    run_chunk = dynamic._run_chunk
    dynamic._run_chunk = lambda c: (sizes.append(len(c)), run_chunk(c))[1]
    np.testing.assert_allclose(dynamic.infer(x)[0], 2 * x, rtol=1e-6)
    assert sorted(sizes) == [1, 2]  # 3 frames on 2 threads, no padding
    assert len(dynamic.infer(x[:1])[0]) == 1 and len(sizes) == 2  # 1 frame: whole
    one_thread = OnnxRuntimeBackend(tiny_model(tmp_path / "s.onnx", batch=1),
                                    threads=1)
    assert one_thread.max_batch == 0 and one_thread.fixed_batch == 1
    assert one_thread.calls_in_flight == 1
    assert not one_thread._chunked(x)


def test_run_chunks_pads_the_last_chunk_and_keeps_order() -> None:
    from engines.base import run_chunks

    x = np.arange(5, dtype=np.float32).reshape(5, 1)
    seen = []

    def run_all(chunks: list[np.ndarray]) -> list[list[np.ndarray]]:
        seen.extend(c.shape for c in chunks)
        return [[c * 10, c[:, :0]] for c in chunks]

    out, empty = run_chunks(x, 2, run_all)
    assert seen == [(2, 1)] * 3  # 2 + 2 + (1 padded to 2)
    np.testing.assert_array_equal(out, x * 10)
    assert empty.shape == (5, 0)
    seen.clear()
    out, _ = run_chunks(x, 3, run_all, pad=False)
    assert seen == [(3, 1), (2, 1)]
    np.testing.assert_array_equal(out, x * 10)


def test_yolo_on_a_static_batch_export_batches_across_threads(tmp_path: Path) -> None:
    """The shipped YOLO with its batch axis fixed to 1 (as Ultralytics exports by
    default): the detector takes 2 frames per call on 2 threads, same boxes."""
    from engines.build import MODELS_DIR, build_detector
    from training.data.generate import render_scene

    model = onnx.load(str(MODELS_DIR / "yolo_demo.onnx"))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    path = tmp_path / "static.onnx"
    onnx.save(model, str(path))
    detector = build_detector(OnnxRuntimeBackend(path, threads=2))
    assert detector.max_batch == 2
    rng = np.random.default_rng(0)
    frames = [render_scene(rng)[0] for _ in range(3)]
    prepared = [detector.prepare(f) for f in frames]
    together = detector.infer(prepared)
    alone = [detector.infer([p])[0] for p in prepared]
    assert all(len(d) for d in alone)
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def softmax_model(path: Path, axis: int, opset: int, shape: list[int]) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["images"], ["probs"], axis=axis)], "softmax",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def numpy_softmax(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    return e / e.sum(axis=axes, keepdims=True)


@pytest.mark.parametrize(("axis", "opset", "axes", "rewritten"), [
    (1, 18, (1,), 1),        # axes of ReduceMax as an input
    (1, 13, (1,), 1),        # ReduceMax's axes as an attribute, ReduceSum's as input
    (1, 11, (1, 2, 3), 1),   # before opset 13: softmax over every axis from 1 on
    (-3, 17, (1,), 1),
    (-1, 17, (3,), 0),       # last axis: ONNX Runtime's own kernel is fast there
])
def test_softmax_over_a_non_last_axis_runs_decomposed(
        tmp_path: Path, axis: int, opset: int, axes: tuple[int, ...],
        rewritten: int) -> None:
    """The DFL softmax of YOLOv8/11 exports ([1, 16, 4, A], axis 1) runs as
    Exp / ReduceSum on CPU; the values stay softmax's over the axes ONNX defines."""
    shape = [2, 16, 4, 5]
    path = softmax_model(tmp_path / "s.onnx", axis, opset, shape)
    backend = OnnxRuntimeBackend(path, threads=1)
    assert backend.rewritten_softmax == rewritten
    x = np.random.default_rng(1).normal(0, 20, shape).astype(np.float32)
    np.testing.assert_allclose(backend.infer(x)[0], numpy_softmax(x, axes),
                               rtol=1e-5, atol=1e-7)
    assert onnx.load(str(path)).graph.node[0].op_type == "Softmax"  # file untouched


def test_models_with_external_weights_load_as_they_are(tmp_path: Path) -> None:
    """A model whose weights sit beside it is handed to ONNX Runtime by path (its
    weights are not read twice); it still runs."""
    path = softmax_model(tmp_path / "x.onnx", 1, 17, [2, 16, 4, 5])
    model = onnx.load(str(path))
    model.graph.initializer.append(onnx.numpy_helper.from_array(
        np.zeros(4096, np.float32), "unused"))
    onnx.save(model, str(path), save_as_external_data=True, size_threshold=0,
              location="x.data")
    backend = OnnxRuntimeBackend(path, threads=1)
    assert backend.rewritten_softmax == 0
    x = np.random.default_rng(2).normal(0, 5, (2, 16, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(backend.infer(x)[0], numpy_softmax(x, (1,)), rtol=1e-5,
                               atol=1e-7)
