"""Detection loss for the anchor-free head (as YOLOv8).

With TAL targets (``assigner.py``), S = sum of the soft class targets:

* classification: ``BCE(logits, target_scores).sum() / S``
* box: ``sum_fg (1 - CIoU(pred, target)) * w / S`` with ``w`` the anchor's soft
  target; CIoU = IoU - rho^2/c^2 - v * alpha (centre distance over the enclosing
  box diagonal, plus an aspect-ratio term v = 4/pi^2 (atan(w_t/h_t) - atan(w/h))^2).
* DFL: each side distance t (grid units) lies between bins i = floor(t) and i+1;
  ``CE(bin i) * (i + 1 - t) + CE(bin i+1) * (t - i)``, weighted like the box term.

Total = 7.5 box + 0.5 cls + 1.5 dfl, times the batch size (YOLOv8's gains).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from engines.nets.yolo import YoloModel, make_anchors
from training.yolo.assigner import TaskAlignedAssigner


def ciou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of paired ``[..., 4]`` xyxy boxes. ``eps`` must survive
    ``1 + eps`` in float32, or identical boxes give 0/0 in the alpha term."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    wa, ha = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1] + eps
    wb, hb = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1] + eps
    union = wa * ha + wb * hb - inter + eps
    iou = inter / union
    cw = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    ch = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    c2 = cw**2 + ch**2 + eps
    rho2 = ((a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]) ** 2
            + (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(wb / hb) - torch.atan(wa / ha)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def dfl_loss(dist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``dist`` [K, 4, R] logits, ``target`` [K, 4] distances in bins -> [K]."""
    r = dist.shape[-1]
    target = target.clamp(0, r - 1 - 0.01)
    left = target.long()
    wl = left + 1 - target
    logp = dist.log_softmax(-1)
    ce_l = -logp.gather(-1, left.unsqueeze(-1)).squeeze(-1)
    ce_r = -logp.gather(-1, (left + 1).unsqueeze(-1)).squeeze(-1)
    return (ce_l * wl + ce_r * (1 - wl)).mean(-1)


class DetectionLoss:
    """Callable ``(maps, targets) -> (total, parts)``.

    ``targets``: ``[K, 6]`` rows ``(image_index, class_id, x1, y1, x2, y2)`` in
    input pixels. ``parts`` is a detached ``[3]`` tensor (box, cls, dfl).
    """

    def __init__(self, model: YoloModel, box_gain: float = 7.5, cls_gain: float = 0.5,
                 dfl_gain: float = 1.5, assigner: TaskAlignedAssigner | None = None
                 ) -> None:
        self.nc, self.reg_max = model.head.nc, model.head.reg_max
        self.strides = model.head.strides
        self.gains = (box_gain, cls_gain, dfl_gain)
        self.assigner = assigner or TaskAlignedAssigner()

    def __call__(self, maps: list[torch.Tensor], targets: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        b = maps[0].shape[0]
        device, dtype = maps[0].device, maps[0].dtype
        anchors, strides = make_anchors([(m.shape[2], m.shape[3]) for m in maps],
                                        self.strides, device, dtype)
        x = torch.cat([m.flatten(2) for m in maps], 2).transpose(1, 2)  # [B, N, *]
        dist, logits = x.split([4 * self.reg_max, self.nc], -1)
        n = dist.shape[1]
        dist = dist.reshape(b, n, 4, self.reg_max)
        bins = torch.arange(self.reg_max, device=device, dtype=dtype)
        ltrb = (dist.softmax(-1) * bins).sum(-1)  # grid units
        pred_boxes = torch.cat([anchors - ltrb[..., :2], anchors + ltrb[..., 2:]], -1)

        gt_labels, gt_boxes, gt_mask = self._pad_targets(targets, b, device, dtype)
        target_boxes, target_scores, fg = self.assigner(
            logits.detach().sigmoid(), (pred_boxes.detach() * strides),
            anchors * strides, gt_labels, gt_boxes, gt_mask)
        score_sum = target_scores.sum().clamp(min=1)

        loss_cls = F.binary_cross_entropy_with_logits(
            logits, target_scores, reduction="sum") / score_sum
        loss_box = loss_dfl = logits.new_zeros(())
        if fg.any():
            weight = target_scores.sum(-1)[fg]
            tb = target_boxes / strides  # to grid units, like pred_boxes
            loss_box = ((1 - ciou(pred_boxes[fg], tb[fg])) * weight).sum() / score_sum
            a = anchors.unsqueeze(0).expand(b, n, 2)[fg]
            t_ltrb = torch.cat([a - tb[fg][:, :2], tb[fg][:, 2:] - a], -1)
            loss_dfl = (dfl_loss(dist[fg], t_ltrb) * weight).sum() / score_sum
        gb, gc, gd = self.gains
        parts = torch.stack([loss_box * gb, loss_cls * gc, loss_dfl * gd])
        return parts.sum() * b, parts.detach()

    @staticmethod
    def _pad_targets(targets: torch.Tensor, b: int, device: torch.device,
                     dtype: torch.dtype
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[K, 6]`` rows -> labels [B, M], boxes [B, M, 4], mask [B, M]."""
        targets = targets.to(device)
        idx = targets[:, 0].long()
        counts = torch.bincount(idx, minlength=b) if len(idx) else torch.zeros(
            b, dtype=torch.long, device=device)
        m = int(counts.max()) if len(idx) else 0
        labels = torch.zeros(b, m, dtype=torch.long, device=device)
        boxes = torch.zeros(b, m, 4, dtype=dtype, device=device)
        mask = torch.zeros(b, m, dtype=torch.bool, device=device)
        if m:
            order = torch.argsort(idx, stable=True)
            idx, rows = idx[order], targets[order]
            starts = torch.cumsum(counts, 0) - counts
            slot = torch.arange(len(idx), device=device) - starts[idx]
            labels[idx, slot] = rows[:, 1].long()
            boxes[idx, slot] = rows[:, 2:6].to(dtype)
            mask[idx, slot] = True
        return labels, boxes, mask
