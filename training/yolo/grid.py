"""The original YOLO (v1) grid formulation, on our CSP backbone.

The image is split into an S x S grid; each cell predicts B boxes
(x, y, w, h, confidence) and one set of C class probabilities, so the output is
``[batch, S, S, 5B + C]`` (layout "grid"). Per box: x, y are the centre's offset
inside its cell in [0, 1]; w, h are fractions of the input size; confidence is
P(object) * IoU. Class probabilities are conditional on an object in the cell.

Loss (Redmon et al. 2016), sum-squared over the grid, divided by batch size:

    5   * sum_obj [(x - x')^2 + (y - y')^2
                   + (sqrt w - sqrt w')^2 + (sqrt h - sqrt h')^2]
  + sum_obj (C - IoU)^2 + 0.5 * sum_noobj C^2 + sum_cells_with_obj sum_c (p_c - p_c')^2

"obj" is the one predictor in the cell holding a ground-truth centre whose box
has the highest IoU with it ("responsible"); every other predictor is "noobj".
The network predicts sqrt(w), sqrt(h) directly (sigmoid), so the squared error on
sqrt sizes is the paper's; exported w, h are squared back.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.nets.yolo_grid import GridYolo, build_grid
from training.yolo.assigner import box_iou_pairs

LAMBDA_COORD = 5.0
LAMBDA_NOOBJ = 0.5


def _cell_boxes(pred: torch.Tensor, s: int) -> torch.Tensor:
    """``[..., S, S, B, 4]`` (x, y, sqrt w, sqrt h) -> xyxy in [0, 1] image units."""
    cols = torch.arange(s, device=pred.device, dtype=pred.dtype).view(1, 1, s, 1)
    rows = torch.arange(s, device=pred.device, dtype=pred.dtype).view(1, s, 1, 1)
    cx = (pred[..., 0] + cols) / s
    cy = (pred[..., 1] + rows) / s
    w, h = pred[..., 2] ** 2, pred[..., 3] ** 2
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


class GridLoss:
    """Callable ``(pred, targets, imgsz) -> (total, parts)``; parts = (coord, obj,
    noobj, cls). ``targets`` rows: (image_index, class_id, x1, y1, x2, y2) px;
    ``imgsz`` = (height, width) of the input."""

    def __init__(self, model: GridYolo) -> None:
        self.S, self.B, self.nc = model.S, model.B, model.num_classes

    def __call__(self, pred: torch.Tensor, targets: torch.Tensor,
                 imgsz: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        bsz, s, nb = pred.shape[0], self.S, self.B
        boxes = pred[..., : 5 * nb].unflatten(-1, (nb, 5))  # [bs, S, S, B, 5]
        probs = pred[..., 5 * nb:]
        h, w = imgsz
        t = targets.to(pred.device, pred.dtype)
        scale = t.new_tensor([w, h, w, h])
        gt = t[:, 2:6] / scale  # normalised xyxy
        cx, cy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
        gw, gh = (gt[:, 2] - gt[:, 0]).clamp(min=0), (gt[:, 3] - gt[:, 1]).clamp(min=0)
        col = (cx * s).clamp(0, s - 1e-4).long()
        row = (cy * s).clamp(0, s - 1e-4).long()
        img = t[:, 0].long()
        # one ground truth per cell (v1's limit): later rows overwrite earlier ones
        tgt = pred.new_zeros(bsz, s, s, 4)
        tcls = pred.new_zeros(bsz, s, s, self.nc)
        has = torch.zeros(bsz, s, s, dtype=torch.bool, device=pred.device)
        tgt[img, row, col] = torch.stack([cx * s - col, cy * s - row, gw.sqrt(),
                                          gh.sqrt()], -1)
        onehot = nn.functional.one_hot(t[:, 1].long(), self.nc)
        tcls[img, row, col] = onehot.to(pred.dtype)
        has[img, row, col] = True
        # responsible predictor: highest IoU with the cell's ground truth
        with torch.no_grad():
            pb = _cell_boxes(boxes[..., :4], s)
            tb = _cell_boxes(tgt.unsqueeze(3), s)
            iou = box_iou_pairs(pb, tb)  # [bs, S, S, B]
            resp = nn.functional.one_hot(iou.argmax(-1), nb).bool() & has.unsqueeze(-1)
        coord = ((boxes[..., :4] - tgt.unsqueeze(3)) ** 2).sum(-1)
        loss_coord = LAMBDA_COORD * coord[resp].sum()
        loss_obj = ((boxes[..., 4] - iou) ** 2)[resp].sum()
        loss_noobj = LAMBDA_NOOBJ * (boxes[..., 4] ** 2)[~resp].sum()
        loss_cls = ((probs - tcls) ** 2).sum(-1)[has].sum()
        parts = torch.stack([loss_coord, loss_obj, loss_noobj, loss_cls]) / bsz
        return parts.sum(), parts.detach()


__all__ = ["LAMBDA_COORD", "LAMBDA_NOOBJ", "GridLoss", "GridYolo", "build_grid"]
