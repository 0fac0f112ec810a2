"""Training precision: which one ``auto`` picks, and that bf16 autocast and the
channels-last layout leave a training step's numbers close to fp32's."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.precision import (  # noqa: E402
    autocast,
    channels_last,
    native_bf16,
    resolve_precision,
    to_float,
)


def test_auto_follows_the_hardware_and_bad_names_are_rejected() -> None:
    native = native_bf16("cpu")
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")


def test_to_float_casts_floating_tensors_in_nested_outputs() -> None:
    half = torch.ones(2, dtype=torch.bfloat16)
    out = to_float({"a": [half, (half, torch.ones(2, dtype=torch.int64))], "b": 3})
    assert out["a"][0].dtype == torch.float32
    assert out["a"][1][0].dtype == torch.float32
    assert out["a"][1][1].dtype == torch.int64 and out["b"] == 3


def test_bf16_step_is_close_to_fp32_and_channels_last_is_exact_layout() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 4, 3, padding=1))
    x = torch.randn(2, 3, 24, 24)
    reference = net(x)
    moved = channels_last(net)
    assert moved[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(moved(x), reference, atol=1e-5)
    with autocast("cpu", "bf16"):
        low = moved(x)
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), reference, atol=0.05, rtol=0.05)
    assert not torch.equal(low.float(), reference)  # bf16 did run
    with autocast("cpu", "fp32"):
        assert moved(x).dtype == torch.float32
