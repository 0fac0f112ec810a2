"""Task-aligned assigner (TAL, from TOOD; as used by YOLOv8).

For every ground-truth box g and anchor point a whose centre lies inside g:

    align(a, g) = score(a, class_g) ** alpha * IoU(box_a, g) ** beta

Each g keeps its ``topk`` anchors by ``align``; an anchor claimed by several boxes
goes to the one it overlaps most. The classification target of a positive anchor
is soft: ``align / max_align(g) * max_IoU(g)``, so well-localised, confident
predictions are pushed up and the rest of g's anchors are pushed less.
"""

from __future__ import annotations

import torch

EPS = 1e-9


def box_iou_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise IoU of broadcastable ``[..., 4]`` xyxy boxes."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + EPS)


class TaskAlignedAssigner:
    """Assign anchors to ground truth; all tensors batched and padded.

    Inputs: ``scores`` [B, N, C] (sigmoid), ``boxes`` [B, N, 4] xyxy px,
    ``anchors`` [N, 2] px, ``gt_labels`` [B, M] int64, ``gt_boxes`` [B, M, 4]
    xyxy px, ``gt_mask`` [B, M] bool (padding rows False).
    Returns ``target_boxes`` [B, N, 4], ``target_scores`` [B, N, C],
    ``fg_mask`` [B, N] bool.
    """

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0) -> None:
        self.topk, self.alpha, self.beta = topk, alpha, beta

    @torch.no_grad()
    def __call__(self, scores: torch.Tensor, boxes: torch.Tensor,
                 anchors: torch.Tensor, gt_labels: torch.Tensor,
                 gt_boxes: torch.Tensor, gt_mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = scores.shape
        m = gt_boxes.shape[1]
        if m == 0:
            return (torch.zeros_like(boxes), torch.zeros_like(scores),
                    torch.zeros(b, n, dtype=torch.bool, device=scores.device))
        # anchors inside each gt box: [B, M, N]
        ax, ay = anchors[:, 0].view(1, 1, n), anchors[:, 1].view(1, 1, n)
        g = gt_boxes.unsqueeze(-1)  # [B, M, 4, 1]
        inside = ((ax - g[:, :, 0] > EPS) & (ay - g[:, :, 1] > EPS)
                  & (g[:, :, 2] - ax > EPS) & (g[:, :, 3] - ay > EPS))
        valid = inside & gt_mask.unsqueeze(-1)
        iou = box_iou_pairs(gt_boxes.unsqueeze(2), boxes.unsqueeze(1))  # [B, M, N]
        iou = iou * valid
        labels = gt_labels.clamp(min=0).long()
        cls_score = scores.gather(2, labels.unsqueeze(1).expand(b, n, m))
        cls_score = cls_score.transpose(1, 2)  # [B, M, N]
        align = cls_score.pow(self.alpha) * iou.pow(self.beta) * valid
        # top-k anchors per gt
        k = min(self.topk, n)
        top_idx = align.topk(k, dim=-1).indices  # [B, M, k]
        pos = torch.zeros_like(align, dtype=torch.bool)
        pos.scatter_(-1, top_idx, True)
        pos &= valid & (align > 0)
        # an anchor claimed by several gts goes to the one with the highest IoU
        multi = pos.sum(1, keepdim=True) > 1  # [B, 1, N]
        best = iou.argmax(1, keepdim=True)  # [B, 1, N]
        best_onehot = torch.zeros_like(pos).scatter_(1, best, True)
        pos = torch.where(multi, best_onehot & pos.any(1, keepdim=True), pos)
        fg = pos.any(1)  # [B, N]
        gt_idx = pos.float().argmax(1)  # [B, N]
        target_boxes = gt_boxes.gather(1, gt_idx.unsqueeze(-1).expand(b, n, 4))
        target_labels = labels.gather(1, gt_idx)
        # soft class targets normalised per gt
        align = align * pos
        max_align = align.amax(-1, keepdim=True)
        max_iou = (iou * pos).amax(-1, keepdim=True)
        norm = (align * max_iou / (max_align + EPS)).amax(1)  # [B, N]
        target_scores = torch.zeros_like(scores)
        target_scores.scatter_(2, target_labels.unsqueeze(-1), 1.0)
        target_scores *= (norm * fg).unsqueeze(-1)
        return target_boxes, target_scores, fg
