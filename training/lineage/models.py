"""The lineage's small networks (torch), each exported to ONNX by ``train``."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_pool


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


class RCNNNet(nn.Module):
    """R-CNN's per-proposal CNN: (N, 3, S, S) warped crops -> logits (N, C+1),
    class-specific deltas (N, 4C)."""

    def __init__(self, num_classes: int, size: int = 32, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(3, w), nn.MaxPool2d(2), conv_bn(w, 2 * w), nn.MaxPool2d(2),
            conv_bn(2 * w, 4 * w), nn.MaxPool2d(2))
        cells = (size // 8) ** 2
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * cells, 256),
                                nn.ReLU(inplace=True))
        self.cls = nn.Linear(256, num_classes + 1)
        self.deltas = nn.Linear(256, 4 * num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.fc(self.features(x))
        return self.cls(f), self.deltas(f)


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
    """RoI max pooling + fc heads: features, rois (K, 5) = batch index + xyxy in
    input pixels -> logits (K, C+1), deltas (K, 4C). Exported without the pooling
    (``fc_head``): inference pools in NumPy (``engines.lineage.roi_pool``), so the
    head is a one-input network any backend runs."""

    def __init__(self, num_classes: int, channels: int = 64, pool: int = 5,
                 stride: int = FastRCNNTrunk.STRIDE) -> None:
        super().__init__()
        self.pool = pool
        self.spatial_scale = 1.0 / stride
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(channels * pool * pool, 256),
                                nn.ReLU(inplace=True))
        self.cls = nn.Linear(256, num_classes + 1)
        self.deltas = nn.Linear(256, 4 * num_classes)

    def forward(self, features: torch.Tensor, rois: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = roi_pool(features, rois, (self.pool, self.pool), self.spatial_scale)
        return self.fc_head(pooled)

    def fc_head(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, C, pool, pool) pooled features -> logits, deltas."""
        f = self.fc(pooled)
        return self.cls(f), self.deltas(f)


class PooledHead(nn.Module):
    """The exported form of ``FastRCNNHead``: pooled features in, no RoI op."""

    def __init__(self, head: FastRCNNHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.fc_head(pooled)
