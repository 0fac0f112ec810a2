"""RoIAlign for training on a CPU: the same numbers as torchvision's
``roi_align`` (``aligned=False``), computed as a sparse product.

torchvision's CPU backward scatters each sampled gradient one at a time on one
thread; it took ~45 % of a Faster R-CNN training step here (224×416 input,
256 RoIs per image). Bilinear sampling is linear in the features, so the whole
pooling is a sparse matrix ``S`` (RoI bins × feature pixels, 16 weights per
bin at sampling ratio 2) times the features, and its backward is ``Sᵀ`` times
the gradient. Both products run as ``embedding_bag`` (fixed-size bags forward,
the taps sorted by pixel backward): 2.3× faster than torch's COO ``sparse.mm``
(whose forward sorts the entries and then runs on one thread), which was
itself ~5× faster than torchvision's kernel. Equal to torchvision's within
1e-5 (``tests/engines/test_roi_align.py``).

Only used while gradients are on; inference and ONNX export keep torchvision's
operator (exported as ONNX ``RoiAlign``).
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import Tensor
from torch.nn import functional as F
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import (
    _convert_to_roi_format,
    _filter_input,
    _onnx_merge_levels,
    _setup_scales,
)


def _taps(coord: Tensor, size: int, bins: int, ratio: int) -> tuple[Tensor, Tensor]:
    """Indices and weights (R, bins, 2·ratio) of the bilinear taps of roi_align's
    samples along one axis, with its border rules (a sample beyond one pixel
    outside is 0; one inside that margin reads the edge), each weighted
    1/ratio so a bin's taps average its samples."""
    valid = (coord >= -1.0) & (coord <= size)
    c = coord.clamp(min=0.0)
    low = c.floor().long()
    edge = low >= size - 1
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    high = torch.where(edge, low, low + 1)
    frac = torch.where(edge, torch.zeros_like(c), c - low.to(c.dtype))
    weight = torch.stack([1 - frac, frac], -1) * (valid.to(c.dtype) / ratio)[..., None]
    rois = coord.shape[0]
    return (torch.stack([low, high], -1).view(rois, bins, 2 * ratio),
            weight.view(rois, bins, 2 * ratio))


class _WeightedGather(torch.autograd.Function):
    """``out[b] = sum_t weights[b, t] * pixels[columns[b, t]]`` (B, C): the sparse
    product ``S @ pixels`` as an ``embedding_bag`` (many bags of a fixed size, fast
    and threaded). The backward ``S^T @ grad`` is another ``embedding_bag``: the
    taps sorted by pixel, one variable-size bag per pixel. Gradients flow to
    ``pixels`` only (the weights come from detached RoIs)."""

    @staticmethod
    def forward(ctx: Any, pixels: Tensor, columns: Tensor, weights: Tensor) -> Tensor:
        ctx.save_for_backward(columns, weights)
        ctx.pixels = pixels.shape[0]
        return F.embedding_bag(columns, pixels, per_sample_weights=weights, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        columns, weights = ctx.saved_tensors
        flat = columns.reshape(-1)
        order = torch.argsort(flat.int())  # int32 sorts twice as fast here
        counts = torch.bincount(flat, minlength=ctx.pixels)
        grad_pixels = F.embedding_bag(
            order // columns.shape[1], grad.contiguous(), counts.cumsum(0) - counts,
            mode="sum", per_sample_weights=weights.reshape(-1)[order])
        return grad_pixels, None, None


def roi_align_sparse(features: Tensor, rois: Tensor, output_size: tuple[int, int],
                     spatial_scale: float, sampling_ratio: int) -> Tensor:
    """torchvision ``roi_align(features, rois, output_size, spatial_scale,
    sampling_ratio, aligned=False)`` for ``sampling_ratio > 0``; ``rois`` (R, 5)
    rows of (image index, x1, y1, x2, y2) in input pixels. Returns (R, C, PH, PW)."""
    ph, pw = output_size
    n, channels, h, w = features.shape
    r, k = len(rois), sampling_ratio
    taps = 2 * k  # bilinear taps per bin along one axis
    box = rois[:, 1:].detach() * spatial_scale
    roi_w = (box[:, 2] - box[:, 0]).clamp(min=1.0)
    roi_h = (box[:, 3] - box[:, 1]).clamp(min=1.0)
    steps_x, steps_y = ((torch.arange(b * k, dtype=box.dtype) + 0.5) / (b * k)
                        for b in (pw, ph))
    iy, wy = _taps(box[:, 1:2] + steps_y * roi_h[:, None], h, ph, k)
    ix, wx = _taps(box[:, 0:1] + steps_x * roi_w[:, None], w, pw, k)
    image = rois[:, 0].detach().long() * (h * w)
    columns = (image.view(r, 1, 1, 1, 1) + iy.view(r, ph, 1, taps, 1) * w
               + ix.view(r, 1, pw, 1, taps))
    weights = wy.view(r, ph, 1, taps, 1) * wx.view(r, 1, pw, 1, taps)
    # float32 under bf16 autocast too, as torchvision's roi_align casts: the
    # sampling weights are not rounded
    pixels = features.permute(0, 2, 3, 1).reshape(n * h * w, channels).to(weights.dtype)
    with torch.autocast(features.device.type, enabled=False):
        pooled = _WeightedGather.apply(pixels, columns.reshape(r * ph * pw, taps ** 2),
                                       weights.reshape(r * ph * pw, taps ** 2))
    return pooled.view(r, ph, pw, channels).permute(0, 3, 1, 2)


class SparseMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` (same levels, same numbers) with
    ``roi_align_sparse`` while gradients are on. In eval mode it is torchvision's
    own; while tracing for ONNX it is torchvision's operator with the level
    indices squeezed on a known axis, so the graph has no ``If`` node whatever
    the backbone (torchvision's ``torch.where(...)[0]`` leaves one where the
    exporter loses the rank of the levels)."""

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor],
                image_shapes: list[tuple[int, int]]) -> Tensor:
        tracing = torchvision._is_tracing()
        if not (tracing or torch.is_grad_enabled()) or self.sampling_ratio <= 0:
            return super().forward(x, boxes, image_shapes)
        features = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level)
        rois = _convert_to_roi_format(boxes)
        size = tuple(self.output_size)
        pool = roi_align if tracing else roi_align_sparse
        if len(features) == 1:
            return pool(features[0], rois, size, self.scales[0], self.sampling_ratio)
        levels = self.map_levels(boxes)
        index = [torch.nonzero(levels == level).squeeze(1)
                 for level in range(len(features))]
        pooled = [pool(f, rois[i], size, scale, self.sampling_ratio)
                  for f, scale, i in zip(features, self.scales, index, strict=True)]
        if tracing:  # ONNX has no index assignment: torchvision's scatter merge
            return _onnx_merge_levels(levels, pooled)
        result = pooled[0].new_zeros((len(rois), *pooled[0].shape[1:]))
        for i, p in zip(index, pooled, strict=True):
            result[i] = p.to(result.dtype)
        return result
