"""TorchBackend: runs a .pt checkpoint with the same outputs as its ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.meta import ModelError, ModelMeta
from engines.backends.torch import TorchBackend
from engines.build import load_detector
from engines.nets.yolo import YoloModel
from training.checkpoint import save_checkpoint

IMG = 64
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("torch_backend")
    model = YoloModel(2)
    meta = ModelMeta(family="yolo", class_names=["a", "b"], input_size=(IMG, IMG),
                     layout="anchor_free")
    path = save_checkpoint(root / "tiny.pt", "yolo", {"num_classes": 2}, meta, model)
    return path


def test_matches_the_exported_module(checkpoint):
    """Same outputs as the export-form module (which test_yolo_train checks against
    ONNX Runtime), so the torch and ONNX paths agree."""
    backend = TorchBackend(checkpoint)
    assert backend.meta.class_names == ["a", "b"]
    assert backend.input_shape == ("batch", 3, IMG, IMG)
    images = np.random.default_rng(0).random((2, 3, IMG, IMG), dtype=np.float32)
    out = backend.infer(images)
    anchors = (IMG // 8) ** 2 + (IMG // 16) ** 2 + (IMG // 32) ** 2
    assert len(out) == 1 and out[0].shape == (2, 4 + 2, anchors)
    ckpt = torch.load(checkpoint, weights_only=True)
    model = YoloModel(2)
    model.load_state_dict(ckpt["model"])
    model.eval().export = True
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    assert np.abs(out[0] - expected).max() < 1e-5


def test_load_detector_picks_torch_for_pt(checkpoint):
    det = load_detector(checkpoint, conf=0.0)
    assert isinstance(det.backend, TorchBackend)
    assert det.class_names == ["a", "b"] and det.layout == "anchor_free"
    out = det.detect([np.zeros((48, 80, 3), np.uint8)])[0]
    assert (out.xyxy[:, [0, 2]] <= 80).all() and (out.xyxy[:, [1, 3]] <= 48).all()


@pytest.mark.skipif(HAS_CUDA, reason="checks the error raised when CUDA is absent")
def test_cuda_absent_is_a_clear_error(checkpoint):
    with pytest.raises(ModelError, match="CUDA"):
        TorchBackend(checkpoint, device="cuda")


def test_bad_inputs_name_the_problem(checkpoint, tmp_path):
    with pytest.raises(ModelError, match="half"):
        TorchBackend(checkpoint, device="cpu", half=True)
    with pytest.raises(ValueError, match="device 'tpu'"):
        TorchBackend(checkpoint, device="tpu")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ModelError, match="junk\\.pt"):
        TorchBackend(junk)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs an NVIDIA GPU")
def test_cuda_fp16_close_to_fp32(checkpoint):
    images = np.random.default_rng(0).random((2, 3, IMG, IMG), dtype=np.float32)
    ref = TorchBackend(checkpoint).infer(images)[0]
    half = TorchBackend(checkpoint, device="cuda", half=True).infer(images)[0]
    assert np.abs(ref - half).max() < 0.1
