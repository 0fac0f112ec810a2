"""The training-time RoIAlign gives torchvision's numbers, forward and backward."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

from engines.nets.roi_align import SparseMultiScaleRoIAlign, roi_align_sparse


def random_rois(n: int, images: int, width: float, height: float) -> torch.Tensor:
    """Boxes of every kind roi_align meets: tiny, huge, partly or wholly outside."""
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([width, height]) * 1.2 - 20
    wh = torch.rand(n, 2, generator=g) ** 2 * torch.tensor([width, height]) + 0.1
    index = torch.randint(0, images, (n, 1), generator=g).float()
    return torch.cat([index, xy, xy + wh], 1)


@pytest.mark.parametrize("shape,scale,ratio", [((3, 8, 28, 52), 1 / 8, 2),
                                               ((2, 4, 7, 13), 1 / 32, 2),
                                               ((1, 3, 5, 1), 1 / 16, 3)])
def test_matches_torchvision_forward_and_backward(shape, scale, ratio) -> None:
    features = torch.randn(*shape, generator=torch.Generator().manual_seed(1),
                           requires_grad=True)
    h, w = shape[2] / scale, shape[3] / scale
    rois = random_rois(300, shape[0], w, h)
    ours = roi_align_sparse(features, rois, (7, 7), scale, ratio)
    theirs = roi_align(features, rois, (7, 7), scale, ratio, aligned=False)
    assert torch.allclose(ours, theirs, atol=1e-4)  # float32 sums, other order
    up = torch.randn_like(theirs)
    (g_ours,) = torch.autograd.grad((ours * up).sum(), features)
    (g_theirs,) = torch.autograd.grad((theirs * up).sum(), features)
    assert torch.allclose(g_ours, g_theirs, atol=1e-4)
    assert g_theirs.abs().max() > 0.1  # the comparison is not of zeros


def test_no_rois_gives_an_empty_result() -> None:
    """A level may get no RoI at all: an empty result, as torchvision's."""
    features = torch.randn(2, 4, 8, 8, requires_grad=True)
    out = roi_align_sparse(features, torch.zeros(0, 5), (7, 7), 1.0, 2)
    assert out.shape == roi_align(features, torch.zeros(0, 5), (7, 7), 1.0, 2).shape
    out.sum().backward()
    assert features.grad is not None and not features.grad.any()


def test_multiscale_module_matches_and_falls_back_without_grad() -> None:
    torch.manual_seed(0)
    features = OrderedDict(
        (name, torch.randn(2, 4, 64 // s, 96 // s, requires_grad=True))
        for name, s in (("0", 8), ("1", 16), ("pool", 32)))
    boxes = [random_rois(40, 1, 96, 64)[:, 1:].clamp(0, 60) + torch.tensor([0, 0, 4, 4])
             for _ in range(2)]
    shapes = [(64, 96)] * 2
    ours = SparseMultiScaleRoIAlign(["0", "1"], 7, 2)
    theirs = MultiScaleRoIAlign(["0", "1"], 7, 2)
    expected = theirs(features, boxes, shapes)
    assert torch.allclose(ours(features, boxes, shapes), expected, atol=1e-4)
    with torch.no_grad():  # inference: torchvision's operator itself
        assert torch.equal(ours(features, boxes, shapes), expected.detach())


def test_under_bf16_autocast_it_pools_in_float32_and_backpropagates() -> None:
    """Mixed-precision training hands it bf16 features: the product runs in
    float32 (sparse.mm has no bf16 backward) and equals torchvision's on the
    same bf16-rounded features."""
    features = torch.randn(2, 8, 12, 20, generator=torch.Generator().manual_seed(2),
                           requires_grad=True)
    rois = random_rois(60, 2, 160, 96)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = roi_align_sparse(features.bfloat16(), rois, (7, 7), 1 / 8, 2)
    assert ours.dtype == torch.float32
    theirs = roi_align(features.bfloat16().float(), rois, (7, 7), 1 / 8, 2)
    assert torch.allclose(ours, theirs, atol=1e-4)
    (grad,) = torch.autograd.grad(ours.sum(), features)
    assert grad.dtype == torch.float32 and grad.abs().max() > 0.1
