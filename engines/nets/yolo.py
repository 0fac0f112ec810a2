"""A compact anchor-free one-stage detector (YOLOv8/YOLO11 family, our own code).

``backbone (CSP, C2f blocks, SPPF) -> PAN/FPN neck -> decoupled head`` at strides
8/16/32. Each location predicts box side distances (l, t, r, b) as a discrete
distribution over ``reg_max`` bins (DFL) and ``C`` class logits.

* ``model.train()`` / ``export=False``: ``forward`` returns the raw maps, a list of
  three ``[B, 4*reg_max + C, H_i, W_i]`` tensors (what the loss needs).
* ``model.export = True``: ``forward`` returns one ``[B, 4 + C, N]`` tensor:
  cx, cy, w, h in input pixels and sigmoid class scores, N = sum(H_i * W_i).
  This is the YOLOv8/YOLO11 ONNX layout, so one decoder serves ours and theirs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

# name -> (width multiple, depth multiple, max channels): YOLOv8's n/s rows, with
# nano's stride-32 width capped at 128 so the exported file stays under 10 MB.
SCALES: dict[str, tuple[float, float, int]] = {
    "nano": (0.25, 0.33, 512),
    "small": (0.50, 0.33, 1024),
}
STRIDES = (8, 16, 32)
REG_MAX = 16


def _ch(c: int, width: float, max_ch: int) -> int:
    return int(math.ceil(min(c, max_ch) * width / 8) * 8)


def _n(n: int, depth: float) -> int:
    return max(round(n * depth), 1)


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm -> SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3)  # momentum 0.1: settles in short runs
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1, self.cv2 = Conv(c, c, 3), Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP block: split, a chain of bottlenecks whose every output is kept, fuse."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False) -> None:
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained 5x5 max-pools, concatenated."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c = c1 // 2
        self.cv1, self.cv2 = Conv(c1, c, 1), Conv(c * 4, c2, 1)
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Backbone(nn.Module):
    """CSP backbone; returns the stride 8, 16 and 32 feature maps."""

    def __init__(self, width: float, depth: float, max_ch: int) -> None:
        super().__init__()
        c = [_ch(x, width, max_ch) for x in (64, 128, 256, 512, 1024)]
        self.channels = (c[2], c[3], c[4])
        self.stem = nn.Sequential(Conv(3, c[0], 3, 2), Conv(c[0], c[1], 3, 2),
                                  C2f(c[1], c[1], _n(3, depth), True))
        self.p3 = nn.Sequential(Conv(c[1], c[2], 3, 2),
                                C2f(c[2], c[2], _n(6, depth), True))
        self.p4 = nn.Sequential(Conv(c[2], c[3], 3, 2),
                                C2f(c[3], c[3], _n(6, depth), True))
        self.p5 = nn.Sequential(Conv(c[3], c[4], 3, 2),
                                C2f(c[4], c[4], _n(3, depth), True), SPPF(c[4], c[4]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        return [p3, p4, self.p5(p4)]


class PANNeck(nn.Module):
    """Top-down (FPN) then bottom-up (PAN) fusion of the three levels."""

    def __init__(self, channels: tuple[int, int, int], depth: float) -> None:
        super().__init__()
        c3, c4, c5 = channels
        n = _n(3, depth)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td4 = C2f(c5 + c4, c4, n)
        self.td3 = C2f(c4 + c3, c3, n)
        self.down3 = Conv(c3, c3, 3, 2)
        self.bu4 = C2f(c3 + c4, c4, n)
        self.down4 = Conv(c4, c4, 3, 2)
        self.bu5 = C2f(c4 + c5, c5, n)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        t4 = self.td4(torch.cat([self.up(p5), p4], 1))
        n3 = self.td3(torch.cat([self.up(t4), p3], 1))
        n4 = self.bu4(torch.cat([self.down3(n3), t4], 1))
        n5 = self.bu5(torch.cat([self.down4(n4), p5], 1))
        return [n3, n4, n5]


def make_anchors(shapes: list[tuple[int, int]], strides: tuple[int, ...],
                 device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres in grid units ``(N, 2)`` (x, y) and their strides ``(N, 1)``."""
    points, stride_col = [], []
    for (h, w), s in zip(shapes, strides, strict=True):
        sy, sx = torch.meshgrid(torch.arange(h, device=device, dtype=dtype) + 0.5,
                                torch.arange(w, device=device, dtype=dtype) + 0.5,
                                indexing="ij")
        points.append(torch.stack([sx, sy], -1).reshape(-1, 2))
        stride_col.append(torch.full((h * w, 1), float(s), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(stride_col)


class DFL(nn.Module):
    """Expected value of a softmax over ``reg_max`` bins: [B, 4R, N] -> [B, 4, N]."""

    def __init__(self, reg_max: int = REG_MAX) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n = x.shape
        p = x.view(b, 4, self.reg_max, n).softmax(2)
        return (p * self.bins.view(1, 1, -1, 1)).sum(2)


class DetectHead(nn.Module):
    """Decoupled head: a box branch (4 x reg_max) and a class branch per level."""

    def __init__(self, num_classes: int, channels: tuple[int, ...],
                 strides: tuple[int, ...] = STRIDES, reg_max: int = REG_MAX) -> None:
        super().__init__()
        self.nc, self.reg_max, self.strides = num_classes, reg_max, strides
        c2 = max(16, channels[0] // 4, 4 * reg_max)
        c3 = max(channels[0], min(num_classes, 100))
        self.box = nn.ModuleList(nn.Sequential(Conv(c, c2, 3), Conv(c2, c2, 3),
                                               nn.Conv2d(c2, 4 * reg_max, 1))
                                 for c in channels)
        self.cls = nn.ModuleList(nn.Sequential(Conv(c, c3, 3), Conv(c3, c3, 3),
                                               nn.Conv2d(c3, num_classes, 1))
                                 for c in channels)
        self.dfl = DFL(reg_max)

    def init_bias(self, imgsz: int = 640) -> None:
        """Start box bins flat and class logits at ~5 objects per 640² image."""
        for box, cls, s in zip(self.box, self.cls, self.strides, strict=True):
            nn.init.constant_(box[-1].bias, 1.0)
            nn.init.constant_(cls[-1].bias,
                              math.log(5 / max(self.nc, 1) / (imgsz / s) ** 2))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.cat([b(x), c(x)], 1)
                for x, b, c in zip(feats, self.box, self.cls, strict=True)]

    def decode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Raw maps -> ``[B, 4 + C, N]``: cx, cy, w, h (input px), class scores."""
        shapes = [(m.shape[2], m.shape[3]) for m in maps]
        anchors, strides = make_anchors(shapes, self.strides, maps[0].device,
                                        maps[0].dtype)
        x = torch.cat([m.flatten(2) for m in maps], 2)  # [B, 4R + C, N]
        dist, logits = x.split([4 * self.reg_max, self.nc], 1)
        ltrb = self.dfl(dist)
        a = anchors.t().unsqueeze(0)  # [1, 2, N]
        lt, rb = ltrb[:, :2], ltrb[:, 2:]
        xy = (a + (rb - lt) / 2) * strides.t()
        wh = (lt + rb) * strides.t()
        return torch.cat([xy, wh, logits.sigmoid()], 1)


class YoloModel(nn.Module):
    """Backbone + neck + head; see the module docstring for the two output modes."""

    def __init__(self, num_classes: int, scale: str = "nano") -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; expected one of "
                             f"{sorted(SCALES)}")
        width, depth, max_ch = SCALES[scale]
        self.num_classes, self.scale = num_classes, scale
        self.backbone = Backbone(width, depth, max_ch)
        self.neck = PANNeck(self.backbone.channels, depth)
        self.head = DetectHead(num_classes, self.backbone.channels)
        self.head.init_bias()
        self.export = False

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        maps = self.head(self.neck(self.backbone(x)))
        return self.head.decode(maps) if self.export else maps


def build_yolo(config: dict[str, Any]) -> YoloModel:
    """Checkpoint builder: ``config`` has ``num_classes`` and ``scale``; export form."""
    model = YoloModel(int(config["num_classes"]), config.get("scale", "nano"))
    model.export = True
    return model.eval()
