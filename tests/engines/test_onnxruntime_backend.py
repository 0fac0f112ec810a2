from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from core.meta import ModelError, ModelMeta, sidecar_path
from engines.backends.onnxruntime import OnnxRuntimeBackend
from engines.registry import open_backend
from training.export import embed_metadata


def tiny_model(path: Path, dtype: int = TensorProto.FLOAT) -> Path:
    """input [N,3,4,4] -> output = input * 2 (as float32 for fp16 inputs)."""
    two = helper.make_tensor("two", dtype, [], [2.0])
    nodes = [helper.make_node("Mul", ["images", "two"], ["scaled"])]
    out = "scaled"
    if dtype == TensorProto.FLOAT16:
        nodes.append(helper.make_node("Cast", ["scaled"], ["out"],
                                      to=TensorProto.FLOAT))
        out = "out"
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", dtype, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 3, 4, 4])],
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
