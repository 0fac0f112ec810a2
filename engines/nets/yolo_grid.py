"""YOLO v1's grid network (S x S x (5B + C)) on the CSP backbone; the loss and
the paper's formulation are documented in ``training/yolo/grid.py``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engines.nets.yolo import SCALES, Backbone, Conv, PANNeck


class GridYolo(nn.Module):
    """Backbone -> PAN neck -> S x S cells -> 1x1 conv to 5B + C.

    Each cell sees two things: the max over its area of the stride-8 PAN map
    (small objects keep their own detail: a 16 px star fills a few stride-8
    cells but is a blur inside one 46 px cell of a stride-32 map, where the class
    term did not move in 5 CPU epochs on shapes over photographs), and the
    stride-32 PAN map resized to S x S (context). The max is exportable: the
    stride-8 map is resized to k*S per side (bilinear, ONNX ``Resize``) and max
    pooled by k, since adaptive pooling only exports when S divides the size.
    The formulation is still v1's: one S x S grid, B boxes and one class
    distribution per cell.

    Training ``forward`` returns activated predictions ``[batch, S, S, 5B + C]``
    with box sizes as sqrt(w), sqrt(h); ``export = True`` squares them.
    """

    def __init__(self, num_classes: int, scale: str = "nano", grid: int = 7,
                 boxes_per_cell: int = 2) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; expected one of "
                             f"{sorted(SCALES)}")
        if grid < 1 or boxes_per_cell < 1:
            raise ValueError(f"grid ({grid}) and boxes_per_cell ({boxes_per_cell}) "
                             "must be positive")
        width, depth, max_ch = SCALES[scale]
        self.num_classes, self.scale = num_classes, scale
        self.S, self.B = grid, boxes_per_cell
        self.backbone = Backbone(width, depth, max_ch)
        self.pan = PANNeck(self.backbone.channels, depth)
        c3, _, c5 = self.backbone.channels
        self.fine = Conv(c3, c5, 3)
        self.context = nn.Sequential(Conv(c5, c5, 3),
                                     nn.Upsample(size=(grid, grid), mode="bilinear"))
        self.mix = Conv(2 * c5, c5, 3)
        self.out = nn.Conv2d(c5, 5 * boxes_per_cell + num_classes, 1)
        self.export = False

    def _cells_max(self, x: torch.Tensor) -> torch.Tensor:
        """Max of ``x`` over each of the S x S cells."""
        s = self.S
        # plain ints: the export has a fixed input size, so these are constants
        k = max(1, -(-max(int(x.shape[-2]), int(x.shape[-1])) // s))  # ceil(size/S)
        x = nn.functional.interpolate(x, size=(k * s, k * s), mode="bilinear",
                                      align_corners=False)
        return nn.functional.max_pool2d(x, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n3, _, n5 = self.pan(self.backbone(x))
        cells = torch.cat([self._cells_max(self.fine(n3)), self.context(n5)], 1)
        y = self.out(self.mix(cells)).permute(0, 2, 3, 1)
        nb = 5 * self.B
        boxes = y[..., :nb].sigmoid()
        probs = y[..., nb:].softmax(-1)
        if self.export:
            b = boxes.unflatten(-1, (self.B, 5))
            b = torch.cat([b[..., :2], b[..., 2:4] ** 2, b[..., 4:]], -1)
            boxes = b.flatten(-2)
        return torch.cat([boxes, probs], -1)


def build_grid(config: dict[str, Any]) -> GridYolo:
    """Checkpoint builder: ``num_classes``, ``scale``, ``grid``, ``boxes_per_cell``."""
    model = GridYolo(int(config["num_classes"]), config.get("scale", "nano"),
                     int(config.get("grid", 7)), int(config.get("boxes_per_cell", 2)))
    model.export = True
    return model.eval()
