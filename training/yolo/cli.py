"""``python -m training yolo train ...``: train the modern or the grid YOLO head."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="yolo_command", metavar="ACTION", required=True)
    p = sub.add_parser("train", allow_abbrev=False,
                       help="train from a YOLO data.yaml or COCO json")
    p.add_argument("--data", required=True, help="data.yaml (YOLO) or COCO .json")
    p.add_argument("--head", choices=("modern", "grid"), default="modern",
                   help="anchor-free TAL head, or the YOLO v1 SxS grid")
    from engines.nets.yolo import SCALES
    from training.precision import add_precision_argument

    p.add_argument("--scale", choices=sorted(SCALES), default="nano")
    p.add_argument("--imgsz", default="320",
                   help="input size: 320 (square) or H,W e.g. 192,320 "
                   "(multiples of 32)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--minutes", type=float, default=0.0,
                   help="train for this much wall clock instead of --epochs; the "
                        "warm-up and cosine decay are laid over it")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--no-augment", action="store_true", help="train on plain images")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs")
    p.add_argument("--max-val-images", type=int, default=0,
                   help="validate on the first N val images (0: all)")
    p.add_argument("--grid", type=int, default=7, help="grid head: S")
    p.add_argument("--boxes-per-cell", type=int, default=2, help="grid head: B")
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (0: torch's default)")
    p.add_argument("--out", default="runs/yolo", help="folder for best.pt / last.pt")
    p.add_argument("--resume", type=Path, default=None, help="last.pt to continue")
    p.add_argument("--weights", default="",
                   help="a best.pt/last.pt (either head) to start from where names "
                        "and shapes match, e.g. the backbone")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    add_precision_argument(p)


def run(args: argparse.Namespace) -> int:
    import torch

    from training.yolo.train import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        data=args.data, head=args.head, scale=args.scale, imgsz=args.imgsz,
        epochs=args.epochs, minutes=args.minutes, batch=args.batch, lr=args.lr,
        warmup_steps=args.warmup_steps, augment=not args.no_augment,
        val_every=args.val_every, max_val_images=args.max_val_images,
        workers=args.workers, seed=args.seed, device=args.device, out=args.out,
        grid=args.grid, boxes_per_cell=args.boxes_per_cell,
        weights=args.weights, precision=args.precision)
    report = train(cfg, resume=args.resume)
    print(f"{'epoch':>5} {'mAP':>7} {'mAP50':>7}  losses")
    for r in report["history"]:
        m = f"{r['map']:7.4f} {r['map50']:7.4f}" if "map" in r else f"{'-':>7} {'-':>7}"
        losses = " ".join(f"{k}={v:.3f}" for k, v in r["loss"].items())
        print(f"{r['epoch'] + 1:>5} {m}  {losses}")
    print(f"best mAP {report['best_map']}, mAP50 {report['best_map50']}, "
          f"{report['seconds']} s -> {report['best']}")
    return 0
