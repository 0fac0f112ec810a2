"""The lineage's small networks (torch), each exported to ONNX by ``train``."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.ops import roi_align, roi_pool

from engines.lineage.roi_pool import POOLINGS


def conv_bn(c_in: int, c_out: int, k: int = 3, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=padding, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class LocNet(nn.Module):
    """Classification backbone + class head + box head (localization as regression).

    (B, 3, H, W) RGB [0, 1] -> logits (B, C), box (B, 4) xyxy in [0, 1] of the input.
    The class head reads globally max-pooled features (what the object is does
    not depend on where it is, and a small object fills one cell of the map); the
    box head reads the flattened coarse grid (it must see "where").
    """

    def __init__(self, num_classes: int, input_size: tuple[int, int] = (64, 112),
                 width: int = 16) -> None:
        super().__init__()
        w = width
        self.backbone = nn.Sequential(
            conv_bn(3, w), nn.MaxPool2d(2), conv_bn(w, 2 * w), nn.MaxPool2d(2),
            conv_bn(2 * w, 4 * w), nn.MaxPool2d(2), conv_bn(4 * w, 4 * w),
            nn.MaxPool2d(2))
        cells = (input_size[0] // 16) * (input_size[1] // 16)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * cells, 128),
                                nn.ReLU(inplace=True))
        self.cls = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                                 nn.Linear(4 * w, 64), nn.ReLU(inplace=True),
                                 nn.Linear(64, num_classes))
        self.box = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(x)
        return self.cls(f), torch.sigmoid(self.box(self.fc(f)))


class OverFeatNet(nn.Module):
    """A 32x32-window classifier whose fully-connected layers are convolutions.

    Valid (unpadded) convolutions and 2x2 pools only, so a window's output does
    not depend on pixels outside it: on a 32x32 input the output is 1x1, on a
    larger image cell (i, j) equals the classifier on the window at
    ``STRIDE * (j, i)``. Outputs: scores (B, C+1, h, w) logits (0 = background),
    offsets (B, 4, h, w) object x1 y1 x2 y2 in window units.
    """

    WINDOW = 32
    STRIDE = 4

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(3, w, padding=0), nn.MaxPool2d(2),           # 32 -> 30 -> 15
            conv_bn(w, 2 * w, padding=0), nn.MaxPool2d(2),       # 15 -> 13 -> 6
            conv_bn(2 * w, 4 * w, padding=0))                    # 6 -> 4
        # "fc" layers as convs: a 4x4 kernel covers the whole 4x4 map of a window.
        self.fc = nn.Sequential(nn.Conv2d(4 * w, 128, 4), nn.ReLU(inplace=True),
                                nn.Conv2d(128, 128, 1), nn.ReLU(inplace=True))
        self.scores = nn.Conv2d(128, num_classes + 1, 1)
        self.offsets = nn.Conv2d(128, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.fc(self.features(x))
        return self.scores(f), self.offsets(f)


class FastRCNNTrunk(nn.Module):
    """Shared conv trunk: (B, 3, H, W) -> features (B, 4w, H/stride, W/stride),
    stride 8 or 4 (4 drops the last pooling: small objects keep more cells)."""

    STRIDE = 8

    def __init__(self, width: int = 16, stride: int = STRIDE) -> None:
        super().__init__()
        if stride not in (4, 8):
            raise ValueError(f"stride must be 4 or 8, got {stride}")
        w = width
        self.stride = stride
        self.body = nn.Sequential(
            conv_bn(3, w), nn.MaxPool2d(2), conv_bn(w, 2 * w), nn.MaxPool2d(2),
            conv_bn(2 * w, 4 * w), *([nn.MaxPool2d(2)] if stride == 8 else []),
            conv_bn(4 * w, 4 * w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FastRCNNHead(nn.Module):
    """RoI pooling + fc heads: features, rois (K, 5) = batch index + xyxy in
    input pixels -> logits (K, C+1), deltas (K, 4C). ``pooling``: "max" is Fast
    R-CNN's RoI max pooling (the RoI rounded to feature cells), "align" is
    RoIAlign (aligned, ``sampling_ratio`` bilinear samples per bin side: no
    rounding). Exported without the pooling (``fc_head``): inference pools in
    NumPy (``engines.lineage.roi_pool``), so the head is a one-input network any
    backend runs."""

    def __init__(self, num_classes: int, channels: int = 64, pool: int = 5,
                 stride: int = FastRCNNTrunk.STRIDE, pooling: str = "max",
                 sampling_ratio: int = 1) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pool = pool
        self.spatial_scale = 1.0 / stride
        self.pooling = pooling
        self.sampling_ratio = sampling_ratio
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(channels * pool * pool, 256),
                                nn.ReLU(inplace=True))
        self.cls = nn.Linear(256, num_classes + 1)
        self.deltas = nn.Linear(256, 4 * num_classes)

    def forward(self, features: torch.Tensor, rois: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        size = (self.pool, self.pool)
        if self.pooling == "align":
            pooled = roi_align(features, rois, size, self.spatial_scale,
                               self.sampling_ratio, aligned=True)
        else:
            pooled = roi_pool(features, rois, size, self.spatial_scale)
        return self.fc_head(pooled)

    def fc_head(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, C, pool, pool) pooled features -> logits, deltas."""
        f = self.fc(pooled)
        return self.cls(f), self.deltas(f)


def truncated_svd(linear: nn.Linear, rank: int) -> nn.Sequential:
    """Fast R-CNN's speed-up for its fc layers (Girshick 2015, section 3.1): the
    u x v weight becomes U_t S_t V_t^T, two layers of t x v and u x t with no
    non-linearity between, so t (u + v) multiply-adds per RoI instead of u v."""
    if not 0 < rank <= min(linear.in_features, linear.out_features):
        raise ValueError(f"rank must be in [1, {min(linear.weight.shape)}], got {rank}")
    u, s, vt = torch.linalg.svd(linear.weight.detach(), full_matrices=False)
    first = nn.Linear(linear.in_features, rank, bias=False)
    second = nn.Linear(rank, linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        first.weight.copy_(s[:rank, None] * vt[:rank])
        second.weight.copy_(u[:, :rank])
        if linear.bias is not None:
            second.bias.copy_(linear.bias)
    return nn.Sequential(first, second)


class PooledHead(nn.Module):
    """The exported form of ``FastRCNNHead``: pooled features in, no RoI op.

    Input (K, P, P, C), channels last as the NumPy pooling gathers them: the
    first fc layer's columns are permuted to that order, so inference skips a
    transpose of every pooled RoI."""

    def __init__(self, head: FastRCNNHead) -> None:
        super().__init__()
        self.head = copy.deepcopy(head)
        fc = self.head.fc[1]
        first = fc if isinstance(fc, nn.Linear) else fc[0]  # whole or truncated SVD
        p = head.pool
        with torch.no_grad():
            w = first.weight.view(first.out_features, -1, p, p)
            first.weight.copy_(w.permute(0, 2, 3, 1).reshape(first.out_features, -1))

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.fc_head(pooled)


class RCNNNet(nn.Module):
    """R-CNN's per-proposal CNN: (N, 3, S, S) warped crops -> logits (N, C+1),
    class-specific deltas (N, 4C).

    The same network as Fast R-CNN's, as in the paper, where both run one network:
    the conv trunk, then the fc heads on a ``pool`` x ``pool`` map. A crop of
    S = ``pool * stride`` pixels gives the trunk exactly the grid that Fast
    R-CNN's RoI pooling hands the same heads, so the two differ only in where
    the convolutions run: once per region here, once per frame there."""

    def __init__(self, num_classes: int, width: int = 16, pool: int = 5,
                 stride: int = FastRCNNTrunk.STRIDE) -> None:
        super().__init__()
        self.size = pool * stride
        self.trunk = FastRCNNTrunk(width, stride)
        self.head = FastRCNNHead(num_classes, 4 * width, pool, stride)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.fc_head(self.trunk(x))
