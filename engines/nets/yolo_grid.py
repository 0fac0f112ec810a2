"""YOLO v1's grid network (S x S x (5B + C)) on the CSP backbone; the loss and
the paper's formulation are documented in ``training/yolo/grid.py``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engines.nets.yolo import SCALES, Backbone, Conv, PANNeck


class GridYolo(nn.Module):
    """Backbone -> PAN neck's stride-32 output -> resized to S x S -> 1x1 conv to
    5B + C.

    The PAN output at stride 32 has been through the top-down and bottom-up
    paths, so it carries the stride-8 detail small objects need to be told apart
    (on the raw stride-32 backbone map the class term did not move in 6 CPU
    epochs). The formulation is still v1's: one S x S grid, B boxes and one class
    distribution per cell. The resize is bilinear (ONNX ``Resize``): adaptive
    pooling only exports when S divides the feature size, which 192x320 or
    320x320 inputs with S=7 do not.

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
        c = self.backbone.channels[-1]
        self.neck = nn.Sequential(Conv(c, c, 3), nn.Upsample(size=(grid, grid),
                                                             mode="bilinear"),
                                  Conv(c, c, 3))
        self.out = nn.Conv2d(c, 5 * boxes_per_cell + num_classes, 1)
        self.export = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.out(self.neck(self.pan(self.backbone(x))[-1])).permute(0, 2, 3, 1)
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
