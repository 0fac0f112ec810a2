"""TensorRT engines: build-engine CLI, calibration data, sidecar checks, backend.

Three kinds of tests:
* pure CPU tests of the checks and data code (sidecar, batch profile,
  CalibrationBatcher, CLI validation);
* a mypy run against ``tensorrt-stubs`` that fails on TensorRT APIs removed in
  10.x (``num_bindings``, ``execute_async_v2``, ...);
* the builder/backend control flow driven by a small *fake* ``tensorrt`` module
  and a fake CUDA runtime (real host memory, memmove for copies). These check
  our bookkeeping (buffers, profiles, trimming, data-dependent outputs, INT8
  cache reuse, cleanup); they say nothing about real TensorRT behaviour.
The ``gpu`` tests build and run real engines and are skipped without TensorRT
and a CUDA device.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from core.meta import ModelError, ModelMeta, read_sidecar_data, sidecar_path
from engines.backends import cuda_memory
from engines.backends.tensorrt import TensorRTBackend, check_engine_sidecar
from training.tensorrt.builder import EngineBuilder
from training.tensorrt.calibration import CalibrationBatcher, meta_prepare
from training.tensorrt.engine import build_engine
from training.tensorrt.fp16 import fp16_copy
from training.tensorrt.profile import batch_profile, onnx_signature
from training.tensorrt.qdq import qdq_nodes

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
OWN_FILES = ["engines/backends/tensorrt.py", "engines/backends/cuda_memory.py",
             *(str(p.relative_to(ROOT))
               for p in sorted((ROOT / "training" / "tensorrt").glob("*.py")))]


# ------------------------------------------------------------------ helpers

def make_onnx(path: Path, batch: int | str | None = "batch", size: int = 8,
              meta: ModelMeta | None = None) -> Path:
    """A tiny ONNX: images [B, 3, size, size] (or [3, size, size] when ``batch``
    is None) -> scores (Flatten)."""
    import onnx
    from onnx import TensorProto, helper

    shape = [3, size, size] if batch is None else [batch, 3, size, size]
    node = helper.make_node("Flatten", ["images"], ["scores"], axis=1)
    graph = helper.make_graph(
        [node], "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT,
                                       [shape[0], int(np.prod(shape[1:]))])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if meta is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "streamdet", meta.to_json()
    onnx.save(model, str(path))
    return path


def make_qdq_onnx(path: Path, zero_point: int = 0, zp_type: int | None = None,
                  meta: ModelMeta | None = None) -> Path:
    """images -> QuantizeLinear -> DequantizeLinear -> Flatten -> scores: the shape
    of an explicitly quantized graph (``zp_type`` UINT8 makes it asymmetric)."""
    import onnx
    from onnx import TensorProto, helper

    zp_type = TensorProto.INT8 if zp_type is None else zp_type
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.02]),
             helper.make_tensor("zp", zp_type, [], [zero_point])]
    nodes = [helper.make_node("QuantizeLinear", ["images", "s", "zp"], ["q"],
                              name="q_images"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"]),
             helper.make_node("Flatten", ["dq"], ["scores"], axis=1)]
    graph = helper.make_graph(
        nodes, "qdq",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                       ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 192])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    entry = model.metadata_props.add()
    entry.key, entry.value = "streamdet", (meta or tiny_meta()).to_json()
    onnx.save(model, str(path))
    return path


def tiny_meta(**kw) -> ModelMeta:
    base = dict(family="yolo", class_names=["a", "b"], input_size=(8, 8))
    base.update(kw)
    return ModelMeta(**base)


def write_images(folder: Path, count: int, shape=(30, 40)) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img{i:03d}.png"), image)
        images.append(image)
    return images


def sidecar(**extra) -> dict:
    data = json.loads(tiny_meta().to_json())
    data["extra"] = {"tensorrt_version": "10.13.0.35", "gpu_name": "NVIDIA H100",
                     "compute_capability": "9.0", "precision": "fp16",
                     "onnx_path": "models/yolo_demo.onnx", **extra}
    return data


# ------------------------------------------------------------------ sidecar check

def test_sidecar_check_accepts_matching_build():
    meta = check_engine_sidecar("m.engine", sidecar(), "10.13.0.35", "NVIDIA H100",
                                "9.0")
    assert meta.family == "yolo" and meta.class_names == ["a", "b"]
    assert meta.precision == "fp16"


def test_sidecar_version_mismatch_names_both_versions_and_rebuild():
    with pytest.raises(ModelError) as err:
        check_engine_sidecar("runs/m.engine", sidecar(), "10.16.1.11", "NVIDIA H100",
                             "9.0")
    msg = str(err.value)
    assert "runs/m.engine" in msg and "10.13.0.35" in msg and "10.16.1.11" in msg
    assert ("rebuild with: python -m training build-engine models/yolo_demo.onnx "
            "--out runs/m.engine --precision fp16") in msg


@pytest.mark.parametrize("gpu, capability", [("NVIDIA L4", "8.9"),
                                             ("NVIDIA H100", "8.0"),
                                             ("NVIDIA H200", "9.0")])
def test_sidecar_gpu_mismatch_names_both_gpus(gpu, capability):
    with pytest.raises(ModelError) as err:
        check_engine_sidecar("m.engine", sidecar(), "10.13.0.35", gpu, capability)
    msg = str(err.value)
    assert "NVIDIA H100 (compute 9.0)" in msg and f"{gpu} (compute {capability})" in msg
    assert "rebuild with: python -m training build-engine" in msg


def test_sidecar_missing_fields_are_listed():
    data = sidecar()
    del data["extra"]["gpu_name"], data["class_names"]
    with pytest.raises(ModelError, match=r"lacks class_names, extra\.gpu_name"):
        check_engine_sidecar("m.engine", data, "10.13.0.35", "NVIDIA H100", "9.0")
    with pytest.raises(ModelError, match=r"extra\.tensorrt_version"):
        check_engine_sidecar("m.engine", {"family": "yolo", "class_names": [],
                                          "input_size": [8, 8]}, "10", "g", "9.0")


def test_backend_without_sidecar_is_a_clear_error(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ModelError, match=r"sidecar .*m\.json is missing.*build-engine"):
        TensorRTBackend(engine, device="cuda")


@pytest.mark.parametrize("text", ["{}", '{"images": [], "annotations": []}', "nope"])
def test_backend_beside_an_unrelated_json_names_it_and_how_to_rebuild(tmp_path, text):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_text(text)
    with pytest.raises(ModelError) as caught:
        TensorRTBackend(engine, device="cuda")
    message = str(caught.value)
    assert "\n" not in message and str(sidecar_path(engine)) in message
    assert "is not a streamdet metadata sidecar" in message
    assert "python -m training build-engine" in message


def test_backend_reads_a_wrapped_sidecar(tmp_path, monkeypatch):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_text(json.dumps({"streamdet": sidecar()}))
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # stops right after reading
    with pytest.raises(ModelError, match="TensorRT is not installed"):
        TensorRTBackend(engine, device="cuda:0")


def test_backend_without_tensorrt_is_a_clear_error(tmp_path, monkeypatch):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_text(json.dumps(sidecar()))
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import raises ImportError
    with pytest.raises(ModelError, match="TensorRT is not installed"):
        TensorRTBackend(engine, device="cuda:0")
    empty = types.ModuleType("tensorrt")  # what tensorrt-stubs alone leaves
    monkeypatch.setitem(sys.modules, "tensorrt", empty)
    with pytest.raises(ModelError, match="only type stubs"):
        TensorRTBackend(engine, device="cuda:0")
    with pytest.raises(ModelError, match="not a CUDA device"):
        TensorRTBackend(engine, device="cpu")


# ------------------------------------------------------------------ batch profile

def test_batch_profile_dynamic_defaults_and_explicit():
    lo, mid, hi = batch_profile(["batch", 3, 64, 96])
    assert (lo, mid, hi) == ((1, 3, 64, 96), (4, 3, 64, 96), (8, 3, 64, 96))
    assert batch_profile([-1, 3, 32, 32], 2, 3, 16) == (
        (2, 3, 32, 32), (3, 3, 32, 32), (16, 3, 32, 32))
    assert batch_profile([None, 3, 32, 32], max_batch=2)[1] == (2, 3, 32, 32)
    assert batch_profile(["b", 3, 32, 32], min_batch=12)[0][0] == 12


def test_batch_profile_static_batch():
    assert batch_profile([1, 3, 64, 64]) == ((1, 3, 64, 64),) * 3
    assert batch_profile([2, 3, 64, 64], 2, 2, 2) == ((2, 3, 64, 64),) * 3
    with pytest.raises(ValueError, match="fixed batch of 1"):
        batch_profile([1, 3, 64, 64], max_batch=8)


@pytest.mark.parametrize("args, match", [
    ((0, None, None), "--min-batch must be an integer >= 1, got 0"),
    ((None, None, -2), "--max-batch must be an integer >= 1, got -2"),
    ((1, 9, 8), "min <= opt <= max, got min=1 opt=9 max=8"),
    ((4, 2, 8), "min <= opt <= max"),
    ((None, 2.5, None), "--opt-batch must be an integer"),
])
def test_batch_profile_rejects_bad_values(args, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        batch_profile(["batch", 3, 32, 32], *args)


def test_batch_profile_rejects_dynamic_image_size():
    with pytest.raises(ValueError, match="only the batch axis may be dynamic"):
        batch_profile(["batch", 3, "height", "width"])
    with pytest.raises(ValueError, match=re.escape("is not [C, H, W] or [N, C, H, W]")):
        batch_profile([3, 64])


def test_batch_profile_unbatched_chw_input():
    assert batch_profile([3, 64, 80]) == ((3, 64, 80),) * 3
    assert batch_profile([3, 64, 80], 1, 1, 1) == ((3, 64, 80),) * 3
    with pytest.raises(ValueError, match="has no batch axis"):
        batch_profile([3, 64, 80], max_batch=4)
    with pytest.raises(ValueError, match="dynamic image size"):
        batch_profile([3, "height", "width"])


# ------------------------------------------------------------------ calibration data

def test_calibration_batches_from_image_folder(tmp_path):
    images = write_images(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    meta = tiny_meta(input_size=(16, 24), mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0),
                     resize="stretch")
    batcher = CalibrationBatcher(tmp_path / "imgs", 2, meta_prepare(meta))
    batches = list(batcher)
    assert [b.shape for b in batches] == [(2, 3, 16, 24)] * 3
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in batches)
    # independent reference: stretch, BGR->RGB, /255, (x - mean) / std, CHW
    rgb = cv2.resize(images[0], (24, 16), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    expected = (rgb.astype(np.float32) / 255 - [0.1, 0.2, 0.3]) / [0.5, 0.25, 2.0]
    np.testing.assert_allclose(batches[0][0], expected.transpose(2, 0, 1), atol=1e-5)
    # last partial batch: the fifth image, repeated to fill the fixed batch
    np.testing.assert_array_equal(batches[2][0], batches[2][1])
    assert not np.array_equal(batches[2][0], batches[1][1])
    assert len(list(CalibrationBatcher(tmp_path / "imgs", 2, meta_prepare(meta),
                                       max_images=3))) == 2


def test_calibration_letterbox_matches_yolo_detector_prepare(tmp_path):
    from engines.base import Backend
    from engines.build import build_detector

    meta = tiny_meta(input_size=(32, 32), mean=(0.0, 0.1, 0.2), std=(1.0, 0.5, 0.5))

    class Fixed(Backend):  # enough of a backend for YoloDetector's constructor
        def load(self) -> None:
            self.meta = meta
            self.input_shape = ("batch", 3, 32, 32)
            self.output_names = ["out"]
            self.output_shapes = [("batch", 6, 21)]

        def infer(self, batch):
            return [np.zeros((len(batch), 6, 21), np.float32)]

    try:
        detector = build_detector(Fixed(tmp_path / "x.onnx"))
    except Exception as exc:  # the YOLO helper's constructor changed
        pytest.skip(f"YoloDetector could not be built from a fixed backend: {exc}")
    image = np.random.default_rng(1).integers(0, 256, (20, 50, 3), dtype=np.uint8)
    np.testing.assert_allclose(meta_prepare(meta)(image), detector.prepare(image).input,
                               atol=1e-6)


def test_calibration_batches_from_video(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 30))
    for i in range(12):
        writer.write(np.full((30, 40, 3), i * 20, np.uint8))
    writer.release()
    meta = tiny_meta(input_size=(8, 8), resize="stretch")
    batcher = CalibrationBatcher(path, 3, meta_prepare(meta), max_images=4)
    frames = list(batcher.images())
    assert len(frames) == 4  # spread over the clip: frames 0, 3, 6, 9
    assert [round(f.mean() / 20) for f in frames] == [0, 3, 6, 9]
    batches = list(batcher)
    assert [b.shape for b in batches] == [(3, 3, 8, 8), (3, 3, 8, 8)]
    assert batches[0].dtype == np.float32 and 0 <= batches[0].min() <= 1


def test_calibration_source_errors(tmp_path):
    prepare = meta_prepare(tiny_meta())
    with pytest.raises(ValueError, match="not found"):
        CalibrationBatcher(tmp_path / "missing", 2, prepare)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        list(CalibrationBatcher(tmp_path / "empty", 2, prepare))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a folder of images nor a video"):
        CalibrationBatcher(tmp_path / "x.txt", 2, prepare)
    with pytest.raises(ValueError, match="batch size must be >= 1"):
        CalibrationBatcher(tmp_path / "empty", 0, prepare)


# ------------------------------------------------------------------ CLI

def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", "build-engine", *argv],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_cli_help_lists_options():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("--precision", "--calib-data", "--calib-cache", "--calib-images",
                   "--min-batch", "--opt-batch", "--max-batch", "--workspace-gb",
                   "--timing-cache", "--device"):
        assert option in result.stdout


def test_cli_rejects_bad_precision(tmp_path):
    result = run_cli(str(tmp_path / "m.onnx"), "--precision", "fp8")
    assert result.returncode == 2
    assert "invalid choice: 'fp8'" in result.stderr


def test_cli_int8_needs_calibration_data_or_cache(tmp_path, caplog):
    from training.__main__ import main

    onnx_path = make_onnx(tmp_path / "m.onnx", meta=tiny_meta())
    assert main(["build-engine", str(onnx_path), "--precision", "int8"]) == 2
    assert "int8 needs --calib-data DIR_OR_VIDEO" in caplog.text
    assert str(tmp_path / "m_int8.calib") in caplog.text
    caplog.clear()
    assert main(["build-engine", str(tmp_path / "none.onnx")]) == 2
    assert "ONNX model not found" in caplog.text
    caplog.clear()
    assert main(["build-engine", str(onnx_path), "--out", str(tmp_path / "m.trt")]) == 2
    assert "--out must end in .engine or .plan" in caplog.text
    static = make_onnx(tmp_path / "s.onnx", batch=1, meta=tiny_meta())
    caplog.clear()
    assert main(["build-engine", str(static), "--max-batch", "4"]) == 2
    assert "fixed batch of 1" in caplog.text


def test_onnx_signature_reads_input_and_metadata(tmp_path):
    name, shape, meta = onnx_signature(make_onnx(tmp_path / "m.onnx", meta=tiny_meta()))
    assert name == "images" and shape == ["batch", 3, 8, 8]
    assert meta is not None and meta.class_names == ["a", "b"]


# ------------------------------------------------------------------ static types

def _stub_dir(tmp: Path) -> Path | None:
    """Copy tensorrt-stubs' .pyi files where mypy reads them, fixing two generator
    slips (a parameter named ``in``; a module variable named ``bool``)."""
    spec = importlib.util.find_spec("tensorrt")
    spec_b = importlib.util.find_spec("tensorrt_bindings")
    if spec is None or spec_b is None:
        return None
    out = tmp / "stubs"
    for s, name in ((spec, "tensorrt"), (spec_b, "tensorrt_bindings")):
        for location in s.submodule_search_locations or []:
            for pyi in Path(location).glob("*.pyi"):
                (out / name).mkdir(parents=True, exist_ok=True)
                text = pyi.read_text()
                text = re.sub(r"([(, ])in: ", r"\1in_: ", text)
                text = re.sub(r"^bool: DataType.*$", "", text, flags=re.M)
                text = text.replace("channel_axis: int) -> IScaleLayer",
                                    "channel_axis: int = ...) -> IScaleLayer")
                (out / name / pyi.name).write_text(text)
    return out if (out / "tensorrt_bindings" / "tensorrt.pyi").is_file() else None


REMOVED_API = '''
from __future__ import annotations
import tensorrt as trt

def old(data: bytes, stream: int) -> None:
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(data)
    print(engine.num_bindings)
    print(engine.get_binding_shape(0))
    context = engine.create_execution_context()
    context.execute_async_v2([0], stream)
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    config.max_workspace_size = 1 << 30
    builder.build_engine(builder.create_network(0), config)
'''


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory) -> dict[str, list[str]]:
    """One mypy run over our files, a removed-API snippet, and a mutated backend."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install mypy)")
    tmp = tmp_path_factory.mktemp("mypy")
    stubs = _stub_dir(tmp)
    if stubs is None:
        pytest.skip("tensorrt-stubs not installed "
                    "(pip install --no-deps tensorrt-stubs==10.13.0.35.1)")
    (tmp / "removed_api.py").write_text(REMOVED_API)
    backend = (ROOT / "engines/backends/tensorrt.py").read_text()
    assert "execute_async_v3(stream.handle)" in backend
    (tmp / "mutated_backend.py").write_text(
        backend.replace("execute_async_v3(stream.handle)",
                        "execute_async_v2(stream.handle)"))
    config = tmp / "mypy.ini"
    config.write_text(
        f"[mypy]\npython_version = 3.11\nfollow_imports = silent\n"
        f"mypy_path = {stubs}\nexplicit_package_bases = True\n"
        "[mypy-tensorrt.*,tensorrt_bindings.*]\nignore_errors = True\n"
        "[mypy-tensorrt_libs.*,cuda.*,cv2.*,onnx.*]\nignore_missing_imports = True\n")
    files = [*OWN_FILES, str(tmp / "removed_api.py"), str(tmp / "mutated_backend.py")]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir",
         str(tmp / "cache"), "--no-error-summary", *files],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    by_file: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        if ": error:" in line:
            by_file.setdefault(Path(line.split(":", 1)[0]).name, []).append(line)
    return by_file


def test_mypy_our_tensorrt_code_is_clean(mypy_output):
    ours = {Path(f).name for f in OWN_FILES}
    errors = [e for name, lines in mypy_output.items() if name in ours for e in lines]
    assert errors == []


def test_mypy_catches_removed_tensorrt_apis(mypy_output):
    text = "\n".join(mypy_output.get("removed_api.py", []))
    for api in ("num_bindings", "get_binding_shape", "execute_async_v2",
                "max_workspace_size", "build_engine"):
        assert f'has no attribute "{api}"' in text
    # our backend is really typed: the same slip in it is caught too
    mutated = "\n".join(mypy_output.get("mutated_backend.py", []))
    assert 'has no attribute "execute_async_v2"' in mutated


# ------------------------------------------------------------------ fakes

class FakeCudart:
    """cuda-python's runtime API on host memory: pointers are real addresses."""

    class cudaError_t(enum.IntEnum):  # CUDA's own names
        cudaSuccess = 0
        cudaErrorMemoryAllocation = 2

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    cudaHostAllocDefault = 0
    cudaStreamNonBlocking = 1
    OK = cudaError_t.cudaSuccess

    def __init__(self) -> None:
        self.blocks: dict[int, ctypes.Array] = {}
        self.streams = 0
        self.fail_malloc = False

    def _alloc(self, nbytes):
        block = ctypes.create_string_buffer(nbytes)
        self.blocks[ctypes.addressof(block)] = block
        return ctypes.addressof(block)

    def cudaMalloc(self, nbytes):
        if self.fail_malloc:
            return (self.cudaError_t.cudaErrorMemoryAllocation, 0)
        return (self.OK, self._alloc(nbytes))

    def cudaHostAlloc(self, nbytes, flags):
        return (self.OK, self._alloc(nbytes))

    def cudaFree(self, ptr):
        del self.blocks[ptr]
        return (self.OK,)

    cudaFreeHost = cudaFree

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        ctypes.memmove(dst, src, count)
        return (self.OK,)

    def cudaStreamCreateWithFlags(self, flags):
        self.streams += 1
        return (self.OK, 77)  # cudaStream_t converts to its handle with int()

    def cudaStreamSynchronize(self, stream):
        return (self.OK,)

    def cudaStreamDestroy(self, stream):
        self.streams -= 1
        return (self.OK,)

    def cudaSetDevice(self, device):
        return (self.OK,)

    def cudaGetDeviceProperties(self, device):
        return (self.OK, SimpleNamespace(name=b"Fake GPU\0\0\0", major=8, minor=6))

    def cudaGetErrorName(self, err):
        return (self.OK, err.name.encode())

    def cudaGetErrorString(self, err):
        return (self.OK, b"out of memory")


@pytest.fixture
def fake_cuda(monkeypatch):
    rt = FakeCudart()
    monkeypatch.setattr(cuda_memory, "_CUDART", rt)
    yield rt
    assert rt.blocks == {}, "device/pinned memory leaked"
    assert rt.streams == 0, "stream leaked"


def _view(ptr: int, nbytes: int) -> np.ndarray:
    return np.frombuffer((ctypes.c_byte * nbytes).from_address(ptr), np.uint8)


def make_fake_trt(version: str = "10.13.0.35") -> types.ModuleType:
    """Enough of TensorRT 10's Python API for our builder and backend.

    The "engine" is JSON: input name/shape, profile, outputs. Execution writes
    ``scores = 2 * input[:, :6]`` (static [B, 6]) and a data-dependent
    ``boxes [2B, 4]`` through the output allocator.
    """
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Logger:
        WARNING, VERBOSE = 2, 4

        def __init__(self, level=2):
            self.level = level

    class Dims(tuple):
        def __new__(cls, dims=()):
            return super().__new__(cls, [int(d) for d in dims])

    trt.Logger, trt.Dims = Logger, Dims
    trt.init_libnvinfer_plugins = lambda logger, namespace: True
    trt.TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.nptype = lambda dtype: np.float32
    trt.IOutputAllocator = type("IOutputAllocator", (), {"__init__": lambda s: None})
    trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (),
                                       {"__init__": lambda s: None})

    class Context:
        def __init__(self, engine):
            self.engine, self.batch = engine, None
            self.addresses: dict[str, int] = {}
            self.allocators: dict[str, object] = {}

        def set_input_shape(self, name, dims):
            lo, _, hi = self.engine.spec["profile"]
            ok = name == self.engine.spec["input"] and lo[0] <= dims[0] <= hi[0]
            self.batch = dims[0] if ok else self.batch
            return ok

        def get_tensor_shape(self, name):
            if name == "boxes":
                return Dims([-1, 4])
            if name == "scores":
                return Dims([self.batch, 6])
            return Dims([self.batch, *self.engine.spec["shape"][1:]])

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def set_output_allocator(self, name, allocator):
            self.allocators[name] = allocator
            return True

        def execute_async_v3(self, stream):
            assert stream == 77
            shape = (self.batch, *self.engine.spec["shape"][1:])
            nbytes = int(np.prod(shape)) * 4
            x = _view(self.addresses[self.engine.spec["input"]], nbytes).view(
                np.float32).reshape(self.batch, -1)
            scores = np.ascontiguousarray(2 * x[:, :6])
            ctypes.memmove(self.addresses["scores"], scores.ctypes.data, scores.nbytes)
            n = self.engine.spec.get("boxes_per_image", 2) * self.batch
            boxes = np.arange(n * 4, dtype=np.float32).reshape(n, 4) + x[:, 0].sum()
            allocator = self.allocators["boxes"]
            ptr = allocator.reallocate_output_async("boxes", 0, boxes.nbytes, 256, 77)
            ctypes.memmove(ptr, boxes.ctypes.data, boxes.nbytes)
            allocator.notify_shape("boxes", Dims([n, 4]))
            return True

    class Engine:
        def __init__(self, spec):
            self.spec = spec
            self.names = [spec["input"], "scores", "boxes"]
            self.num_io_tensors = 3

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return "INPUT" if name == self.spec["input"] else "OUTPUT"

        def get_tensor_dtype(self, name):
            return "FLOAT"

        def get_tensor_shape(self, name):
            return Dims({"scores": [-1, 6], "boxes": [-1, 4]}.get(
                name, [-1, *self.spec["shape"][1:]]))

        def get_tensor_profile_shape(self, name, index):
            return [Dims(s) for s in self.spec["profile"]]

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            try:
                return Engine(json.loads(data))
            except ValueError:
                return None

    class Tensor(SimpleNamespace):
        pass

    class Network:
        def __init__(self):
            self.inputs, self.outputs = [], []

        num_inputs = property(lambda s: len(s.inputs))
        num_outputs = property(lambda s: len(s.outputs))

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

    class OnnxParser:
        fail = False

        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0

        def parse_from_file(self, path):
            if OnnxParser.fail:
                self.num_errors = 1
                return False
            trt.parsed = Path(path)
            name, shape, _ = onnx_signature(path)
            self.network.inputs.append(Tensor(name=name, shape=Dims(
                [-1 if isinstance(d, str) else d for d in shape]), dtype="FLOAT"))
            self.network.outputs.append(Tensor(name="scores", shape=Dims([-1, 6]),
                                               dtype="FLOAT"))
            return True

        def get_error(self, i):
            return SimpleNamespace(node=lambda: 3, node_name=lambda: "Flatten_3",
                                   node_operator=lambda: "Flatten",
                                   desc=lambda: "unsupported axis")

    class Profile:
        def set_shape(self, name, lo, mid, hi):
            self.name, self.shapes = name, [list(lo), list(mid), list(hi)]

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return self.data + b"+timing"

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.pool = set(), [], None
            self.int8_calibrator = self.calibration_profile = self.cache = None

        def set_memory_pool_limit(self, pool, size):
            self.pool = (pool, size)

        def set_flag(self, flag):
            self.flags.add(flag)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return 0

        def set_calibration_profile(self, profile):
            self.calibration_profile = profile
            return True

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            trt.builder = self

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def create_network(self, flags=0):
            assert flags == 0  # weakly typed, explicit batch
            return Network()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calibrator = getattr(config, "int8_calibrator", None)
            trt.calibration_batches = 0
            if calibrator is not None and calibrator.read_calibration_cache() is None:
                while calibrator.get_batch([network.inputs[0].name]):
                    trt.calibration_batches += 1
                calibrator.write_calibration_cache(b"calibration-table")
            profile = config.profiles[0]
            return json.dumps({"input": profile.name, "shape": profile.shapes[2],
                               "profile": profile.shapes}).encode()

    trt.Runtime, trt.Builder, trt.OnnxParser = Runtime, Builder, OnnxParser
    if int(version.split(".")[0]) >= 11:  # what 11.x removed, per NVIDIA's guide
        trt.BuilderFlag = SimpleNamespace()  # FP16, INT8, ... are gone

        class Config11(Config):
            def __setattr__(self, name, value):
                if name == "int8_calibrator" and value is not None:
                    raise AttributeError("IBuilderConfig.int8_calibrator was removed")
                super().__setattr__(name, value)

            def set_calibration_profile(self, profile):
                raise AttributeError("set_calibration_profile was removed")

        class Builder11(Builder):
            def create_builder_config(self):
                self.config = Config11()
                return self.config

        trt.Builder = Builder11
    return trt


@pytest.fixture
def fake_trt(monkeypatch, fake_cuda):
    trt = make_fake_trt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


# ------------------------------------------------------------------ fake-driven flow

def test_cuda_memory_checks_return_codes(fake_cuda):
    with cuda_memory.PinnedBuffer((2, 3), np.float32) as pinned:
        pinned.array[:] = np.arange(6).reshape(2, 3)
        with cuda_memory.DeviceBuffer(pinned.nbytes) as device, \
                cuda_memory.Stream() as stream:
            stream.copy_htod_async(device, pinned.array)
            out = np.zeros((2, 3), np.float32)
            stream.copy_dtoh_async(out, device)
            stream.synchronize()
            np.testing.assert_array_equal(out, pinned.array)
    assert cuda_memory.gpu_name_and_capability(0) == ("Fake GPU", "8.6")
    fake_cuda.fail_malloc = True
    with pytest.raises(cuda_memory.CudaError,
                       match=r"cudaMalloc\(64\) failed: cudaErrorMemoryAllocation "
                             r"\(out of memory\)"):
        cuda_memory.DeviceBuffer(64)


def sidecar_extra(model: Path) -> dict:
    """The engine facts a sidecar records: its ``extra`` with the typed precision."""
    data = read_sidecar_data(model)
    assert data is not None, f"no streamdet sidecar beside {model}"
    return {**data["extra"], "precision": data["precision"]}


def test_fake_build_then_run_round_trip(tmp_path, fake_trt):
    onnx_path = make_onnx(tmp_path / "m.onnx", meta=tiny_meta())
    engine = build_engine(onnx_path, precision="fp16", max_batch=4,
                          timing_cache=tmp_path / "timing.cache", workspace_gb=1)
    assert engine == tmp_path / "m_fp16.engine"
    assert sidecar_path(engine) == tmp_path / "m_fp16.json"
    config = fake_trt.builder.config
    assert config.flags == {"FP16"} and config.pool == ("WORKSPACE", 1 << 30)
    assert config.profiles[0].shapes == [[1, 3, 8, 8], [4, 3, 8, 8], [4, 3, 8, 8]]
    assert (tmp_path / "timing.cache").read_bytes() == b"+timing"
    meta = read_sidecar_data(engine)
    assert meta["family"] == "yolo" and meta["dynamic_batch"] is True
    extra = sidecar_extra(engine)
    assert extra["tensorrt_version"] == "10.13.0.35"
    assert (extra["gpu_name"], extra["compute_capability"]) == ("Fake GPU", "8.6")
    assert extra["precision"] == "fp16" and extra["input_name"] == "images"
    assert extra["profile"] == {"min": [1, 3, 8, 8], "opt": [4, 3, 8, 8],
                                "max": [4, 3, 8, 8]}
    assert extra["input_shape"] == ["batch", 3, 8, 8]
    assert len(extra["onnx_sha256"]) == 64

    with TensorRTBackend(engine, device="cuda:0") as backend:
        assert backend.meta.class_names == ["a", "b"]
        assert backend.input_shape == ("batch", 3, 8, 8)
        assert (backend.min_batch, backend.max_batch) == (1, 4)
        assert backend.output_names == ["scores", "boxes"]
        for n in (3, 1):
            x = np.random.default_rng(n).random((n, 3, 8, 8), dtype=np.float32)
            scores, boxes = backend.infer(x)
            np.testing.assert_allclose(scores, 2 * x.reshape(n, -1)[:, :6])
            assert boxes.shape == (2 * n, 4)
            np.testing.assert_allclose(boxes[0], np.arange(4) + x[:, 0, 0, 0].sum(),
                                       rtol=1e-6)
        kept = scores
        backend.infer(np.ones((2, 3, 8, 8), np.float32))
        np.testing.assert_allclose(kept, 2 * x.reshape(1, -1)[:, :6])  # not aliased
        with pytest.raises(ValueError, match=r"batch 5 is outside the engine's "
                                             r"optimization profile \[1, 4\]"):
            backend.infer(np.zeros((5, 3, 8, 8), np.float32))
        with pytest.raises(ValueError, match="does not match the engine input"):
            backend.infer(np.zeros((1, 3, 16, 16), np.float32))
        backend.warmup()
    with pytest.raises(RuntimeError, match="closed"):
        backend.infer(np.zeros((1, 3, 8, 8), np.float32))

    fake_trt.__version__ = "10.16.1.11"
    with pytest.raises(ModelError, match=re.escape("built with TensorRT 10.13.0.35, "
                                                   "but TensorRT 10.16.1.11 is "
                                                   "running")):
        TensorRTBackend(engine, device="cuda")


def test_fake_no_detections_gives_empty_output(tmp_path, fake_trt):
    engine = build_engine(make_onnx(tmp_path / "m.onnx", meta=tiny_meta()),
                          precision="fp32", max_batch=2)
    spec = json.loads(engine.read_bytes())
    engine.write_bytes(json.dumps({**spec, "boxes_per_image": 0}).encode())
    with TensorRTBackend(engine, device="cuda") as backend:
        scores, boxes = backend.infer(np.ones((2, 3, 8, 8), np.float32))
    assert scores.shape == (2, 6) and boxes.shape == (0, 4)


def test_fake_unbatched_chw_engine_runs_one_image(tmp_path, fake_trt):
    onnx_path = make_onnx(tmp_path / "chw.onnx", batch=None,
                          meta=tiny_meta(family="faster_rcnn"))
    engine = build_engine(onnx_path, precision="fp32")
    assert fake_trt.builder.config.profiles[0].shapes == [[3, 8, 8]] * 3
    with TensorRTBackend(engine, device="cuda") as backend:
        assert (backend.min_batch, backend.max_batch) == (1, 1)
        assert backend.input_shape == ("batch", 8, 8)  # the fake marks axis 0 dynamic
        x = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
        scores, _ = backend.infer(x)
        np.testing.assert_allclose(scores, 2 * x.reshape(3, -1)[:, :6])
        with pytest.raises(ValueError, match="does not match the engine input"):
            backend.infer(x[None])


def test_fake_benchmark_script_prints_a_table(tmp_path, fake_trt, capsys):
    from benchmarks import trt_bench
    engine = build_engine(make_onnx(tmp_path / "m.onnx", meta=tiny_meta()),
                          precision="fp16", max_batch=4)
    assert trt_bench.main([str(engine), "--batches", "1", "4", "9", "--runs", "3"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("tensorrt", "fp16", "1"),
                                                  ("tensorrt", "fp16", "4")]
    assert all(float(r[-1]) > 0 for r in rows)


def test_fake_int8_calibrates_once_then_reuses_cache(tmp_path, fake_trt):
    write_images(tmp_path / "calib", 5)
    onnx_path = make_onnx(tmp_path / "m.onnx", meta=tiny_meta())
    out = tmp_path / "int8.engine"
    build_engine(onnx_path, out, "int8", calib_data=tmp_path / "calib",
                 min_batch=1, opt_batch=2, max_batch=4)
    config = fake_trt.builder.config
    assert config.flags == {"FP16", "INT8"}
    assert config.calibration_profile.shapes == [[2, 3, 8, 8]] * 3
    assert fake_trt.calibration_batches == 3  # 5 images in batches of 2
    assert (tmp_path / "int8.calib").read_bytes() == b"calibration-table"
    build_engine(onnx_path, out, "int8", opt_batch=2, max_batch=4)  # no data: cache
    assert fake_trt.calibration_batches == 0
    assert sidecar_extra(out)["precision"] == "int8"


def test_fake_parser_errors_are_listed(tmp_path, fake_trt):
    onnx_path = make_onnx(tmp_path / "m.onnx", meta=tiny_meta())
    fake_trt.OnnxParser.fail = True
    with pytest.raises(ModelError, match=r"parser failed with 1 error\(s\):\n  node 3 "
                                         r"\(Flatten_3, Flatten\): unsupported axis"):
        build_engine(onnx_path, precision="fp32")


@pytest.mark.skipif(not (MODELS / "yolo_demo.onnx").is_file(),
                    reason="models/yolo_demo.onnx not shipped")
def test_fp16_copy_runs_and_stays_close_to_fp32(tmp_path):
    """The file TensorRT 11 builds as fp16, run here by ONNX Runtime: same I/O,
    fp16-sized differences."""
    from engines.backends.onnxruntime import OnnxRuntimeBackend

    src = MODELS / "yolo_demo.onnx"
    half = OnnxRuntimeBackend(fp16_copy(src, tmp_path / "h.onnx"), threads=1)
    full = OnnxRuntimeBackend(src, threads=1)
    assert half.input_dtype is None and half.meta == full.meta  # fp32 input kept
    x = np.random.default_rng(0).random((1, 3, *full.meta.input_size), np.float32)
    a, b = half.infer(x)[0], full.infer(x)[0]
    assert a.dtype == np.float32 and a.shape == b.shape
    scale = float(np.abs(b).max())
    assert 0 < float(np.abs(a - b).max()) <= 2e-2 * scale  # changed, but not much


@pytest.fixture
def fake_trt11(monkeypatch, fake_cuda):
    trt = make_fake_trt("11.4.0.106")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def test_fake_tensorrt_11_fp16_builds_an_fp16_copy_with_fp32_io(tmp_path, fake_trt11):
    import onnx
    from onnx import TensorProto

    onnx_path = make_onnx(tmp_path / "m.onnx", meta=tiny_meta())
    engine = build_engine(onnx_path, precision="fp16", max_batch=2)
    config = fake_trt11.builder.config
    assert config.flags == set() and config.int8_calibrator is None
    assert fake_trt11.parsed == tmp_path / "m_fp16.fp16.onnx"
    half = onnx.load(str(fake_trt11.parsed))
    io = [*half.graph.input, *half.graph.output]
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in io)
    casts = [a.i for n in half.graph.node if n.op_type == "Cast" for a in n.attribute]
    assert TensorProto.FLOAT16 in casts  # computes in fp16 between the casts
    assert {p.key for p in half.metadata_props} == {"streamdet"}
    extra = sidecar_extra(engine)
    assert extra["precision"] == "fp16" and extra["int8_quantization"] == "none"
    assert extra["network_onnx"].endswith("m_fp16.fp16.onnx")
    assert extra["onnx_path"] == str(onnx_path)  # the sidecar names the source


def test_fake_tensorrt_11_int8_builds_the_qdq_file_as_is(tmp_path, fake_trt11):
    onnx_path = make_qdq_onnx(tmp_path / "q.onnx")
    engine = build_engine(onnx_path, precision="int8", max_batch=2,
                          calib_data=tmp_path / "unused")  # ignored: Q/DQ scales
    config = fake_trt11.builder.config
    assert config.flags == set() and config.int8_calibrator is None
    assert fake_trt11.parsed == onnx_path and fake_trt11.calibration_batches == 0
    extra = sidecar_extra(engine)
    assert extra["precision"] == "int8" and extra["int8_quantization"] == "explicit"


def test_fake_tensorrt_11_refuses_what_needs_removed_apis(tmp_path, fake_trt11):
    plain = make_onnx(tmp_path / "m.onnx", meta=tiny_meta())
    write_images(tmp_path / "calib", 2)
    with pytest.raises(ModelError, match="no implicit INT8 calibration: quantize"):
        build_engine(plain, precision="int8", calib_data=tmp_path / "calib")
    builder = EngineBuilder()
    builder.create_network(plain)
    with pytest.raises(ModelError, match="removed the FP16/INT8 builder flags"):
        builder.create_engine(tmp_path / "x.engine", "fp16", ((1, 3, 8, 8),) * 3)


def test_fake_tensorrt_11_fp32_sets_no_flags(tmp_path, fake_trt11):
    onnx_path = make_onnx(tmp_path / "m.onnx", meta=tiny_meta())
    build_engine(onnx_path, precision="fp32", max_batch=2)
    assert fake_trt11.builder.config.flags == set()
    assert fake_trt11.parsed == onnx_path


def test_fake_tensorrt_10_builds_qdq_explicitly_without_calibration(tmp_path,
                                                                    fake_trt):
    onnx_path = make_qdq_onnx(tmp_path / "q.onnx")
    engine = build_engine(onnx_path, precision="int8", max_batch=2)  # no calib data
    config = fake_trt.builder.config
    assert config.flags == {"FP16", "INT8"} and config.int8_calibrator is None
    assert fake_trt.calibration_batches == 0
    assert sidecar_extra(engine)[
        "int8_quantization"] == "explicit"


def test_qdq_files_are_checked_before_tensorrt(tmp_path, monkeypatch):
    from onnx import TensorProto

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # never reached
    assert qdq_nodes(make_onnx(tmp_path / "plain.onnx")) == (0, [])
    symmetric = make_qdq_onnx(tmp_path / "sym.onnx")
    assert qdq_nodes(symmetric) == (2, [])
    asym = make_qdq_onnx(tmp_path / "asym.onnx", 128, TensorProto.UINT8)
    assert qdq_nodes(asym) == (2, ["q_images"])
    with pytest.raises(ModelError, match=r"only symmetric int8 Q/DQ .* --symmetric"):
        build_engine(asym, precision="int8")
    with pytest.raises(ValueError, match=r"is quantized .* --precision int8"):
        build_engine(symmetric, precision="fp16")


# ------------------------------------------------------------------ real GPU

def _real_tensorrt() -> str | None:
    """Why GPU tests cannot run here, or None when they can."""
    if os.environ.get("STREAMDET_SKIP_GPU"):
        return "STREAMDET_SKIP_GPU is set"
    try:
        import tensorrt
    except ImportError:
        return "TensorRT is not installed (see requirements-gpu.txt)"
    if not hasattr(tensorrt, "Runtime"):
        return "only tensorrt-stubs is installed, not TensorRT"
    try:
        if cuda_memory.device_count() < 1:
            return "no CUDA device"
    except cuda_memory.CudaError as exc:
        return f"CUDA unavailable: {exc}"
    return None


GPU_SKIP = _real_tensorrt()
gpu = pytest.mark.skipif(GPU_SKIP is not None, reason=f"GPU test: {GPU_SKIP}")

# score tolerance against ONNX Runtime CPU, per precision (matched boxes IoU >= 0.9)
SCORE_TOL = {"fp32": 1e-3, "fp16": 2e-2, "int8": 0.1}
MIN_MATCHED = {"fp32": 0.98, "fp16": 0.95, "int8": 0.8}


def _frames(count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(ROOT / "samples" / "vtest.mp4"))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("model", ["yolo_demo.onnx", "faster_rcnn_demo.onnx"])
def test_gpu_engine_matches_onnxruntime(model, precision, engine_dir):
    from core.boxes import iou_matrix
    from engines.build import load_detector

    onnx_path = MODELS / model
    if not onnx_path.is_file():
        pytest.skip(f"{onnx_path} not shipped yet")
    frames = _frames(8)
    calib = engine_dir / "calib"
    if precision == "int8" and not calib.exists():
        calib.mkdir()
        for i, frame in enumerate(_frames(32)):
            cv2.imwrite(str(calib / f"{i:03d}.jpg"), frame)
    out = engine_dir / f"{onnx_path.stem}_{precision}.engine"
    build_from = onnx_path
    import tensorrt

    if precision == "int8" and int(tensorrt.__version__.split(".")[0]) >= 11:
        from training.quantize import choose  # 11.x: int8 only from Q/DQ files

        build_from = engine_dir / f"{onnx_path.stem}_qdq.onnx"
        choose(onnx_path, build_from, _frames(40), 8, ("MinMax",), symmetric=True)
    engine = build_engine(build_from, out, precision,
                          calib_data=calib if precision == "int8" else None,
                          timing_cache=engine_dir / "timing.cache")
    with load_detector(onnx_path, device="cpu") as ref, \
            load_detector(engine, device="cuda") as trt_det:
        expected, actual = ref.detect(frames), trt_det.detect(frames)
    matched = total = 0
    worst = 0.0
    for e, a in zip(expected, actual, strict=True):
        keep = e.scores >= 0.5
        total += int(keep.sum())
        if not keep.any() or not len(a):
            continue
        iou = iou_matrix(e.xyxy[keep], a.xyxy)
        same = e.class_ids[keep][:, None] == a.class_ids[None, :]
        iou = np.where(same, iou, 0)
        best = iou.argmax(1)
        ok = iou[np.arange(len(best)), best] >= 0.9
        matched += int(ok.sum())
        if ok.any():
            diff = np.abs(e.scores[keep][ok] - a.scores[best[ok]])
            worst = max(worst, float(diff.max()))
    print(f"{model} {precision}: matched {matched}/{total}, max score diff {worst:.4f}")
    assert total > 0, "the reference found nothing to compare on the sample frames"
    assert matched / total >= MIN_MATCHED[precision]
    assert worst <= SCORE_TOL[precision]


@pytest.mark.gpu
@gpu
def test_gpu_engine_throughput(engine_dir):
    onnx_path = MODELS / "yolo_demo.onnx"
    if not onnx_path.is_file():
        pytest.skip(f"{onnx_path} not shipped yet")
    engine = build_engine(onnx_path, engine_dir / "bench_fp16.engine", "fp16",
                          max_batch=8, timing_cache=engine_dir / "timing.cache")
    with TensorRTBackend(engine, device="cuda") as backend:
        x = np.random.default_rng(0).random((8, *backend.input_shape[1:]),
                                            dtype=np.float32)
        backend.warmup()
        start = time.perf_counter()
        runs = 50
        for _ in range(runs):
            backend.infer(x)
        elapsed = time.perf_counter() - start
    fps = runs * 8 / elapsed
    print(f"yolo_demo fp16 batch 8: {fps:.0f} images/s (incl. host copies)")
    assert fps > 0


def test_gpu_skip_reason_is_explicit():
    """On CPU machines the GPU tests must be skipped for a stated reason."""
    if GPU_SKIP is None:
        pytest.skip("TensorRT and a GPU are present: the gpu tests run instead")
    assert any(word in GPU_SKIP for word in ("TensorRT", "tensorrt-stubs", "CUDA",
                                             "STREAMDET_SKIP_GPU"))
