"""``python -m training faster-rcnn train|export ...``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", allow_abbrev=False,
                       help="train on a YOLO data.yaml or COCO json")
    t.add_argument("--data", type=Path, required=True, help="data.yaml or COCO .json")
    from engines.nets.faster_rcnn import BACKBONES
    from training.precision import add_precision_argument

    t.add_argument("--backbone", choices=BACKBONES, default=None,
                   help="default: csp (the YOLO's backbone; trains fastest from "
                        "scratch), mobilenet_v3 with --weights/--backbone-weights")
    t.add_argument("--imgsz", default=None, metavar="N|H,W",
                   help="fixed network input, N (square) or H,W, multiples of 32 "
                        "(default: long side 320, short side from the data's aspect)")
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--minutes", type=float, default=0.0,
                   help="train for this much wall clock instead of --epochs; the "
                        "warm-up and cosine decay are laid over it")
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--anchors", choices=["default", "kmeans"], default="default",
                   help="kmeans: anchor sizes and aspect ratios fitted to the "
                        "training boxes (training.faster_rcnn.anchors)")
    t.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default 1e-3 AdamW, 0.01 SGD)")
    t.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    t.add_argument("--warmup-iters", type=int, default=100)
    t.add_argument("--out", type=Path, default=Path("runs/frcnn"))
    t.add_argument("--resume", type=Path, default=None, help="last.pt to continue")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    add_precision_argument(t)
    t.add_argument("--weights", type=Path, default=None,
                   help="full torchvision Faster R-CNN state dict to start from")
    t.add_argument("--backbone-weights", type=Path, default=None,
                   help="torchvision mobilenet_v3_large / resnet18 state dict")
    t.add_argument("--layout", choices=["", "torchvision"], default="",
                   help="'torchvision' keeps torchvision's anchors/widths so its "
                        "COCO state dicts load with --weights")
    t.add_argument("--affine", type=float, default=0.0, metavar="P",
                   help="probability of a random zoom (0.5-1.5) and shift (up to "
                        "10 %%) per image (default 0: off)")
    t.add_argument("--max-images", type=int, default=None,
                   help="images per epoch (a fresh random draw each epoch)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--rpn-post-nms-top-n-test", type=int, default=None)
    t.add_argument("--box-score-thresh", type=float, default=None)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any build_faster_rcnn option, e.g. box_positive_fraction=0.5 "
                        "(repeatable; on --resume it overrides the checkpoint's)")
    e = sub.add_parser("export", allow_abbrev=False,
                       help="export a checkpoint to ONNX (fixed input size)")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--out", type=Path, default=None)
    e.add_argument("--no-simplify", action="store_true")
    e.add_argument("--rpn-post-nms-top-n-test", type=int, default=None,
                   help="proposals kept per image at inference (speed vs recall)")


def run(args: argparse.Namespace) -> int:
    if args.action == "export":
        return _export(args)
    from training.faster_rcnn.train import TrainConfig, train

    model = {"rpn_post_nms_top_n_test": args.rpn_post_nms_top_n_test,
             "box_score_thresh": args.box_score_thresh, "layout": args.layout or None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        model[key.strip()] = yaml.safe_load(value)
    cfg = TrainConfig(
        data=args.data, backbone=args.backbone, imgsz=args.imgsz, epochs=args.epochs,
        minutes=args.minutes, anchors=args.anchors,
        batch=args.batch, lr=args.lr or (1e-3 if args.optimizer == "adamw" else 0.01),
        optimizer=args.optimizer, warmup_iters=args.warmup_iters, out=args.out,
        resume=args.resume, seed=args.seed, device=args.device, weights=args.weights,
        backbone_weights=args.backbone_weights, affine=args.affine,
        max_images=args.max_images, threads=args.threads, precision=args.precision,
        model={k: v for k, v in model.items() if v is not None})
    result = train(cfg)
    best = result["best_map"]
    print(f"best mAP {'-' if best is None else f'{best:.4f}'}  best {result['best']}  "
          f"last {result['last']}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.checkpoint import load_model
    from training.faster_rcnn.export import export_faster_rcnn

    model, meta = load_model(args.checkpoint)
    if args.rpn_post_nms_top_n_test:
        model.rpn._post_nms_top_n["testing"] = args.rpn_post_nms_top_n_test
    out = args.out or args.checkpoint.with_suffix(".onnx")
    report = export_faster_rcnn(model, meta, out, simplify=not args.no_simplify)
    for key, value in report.items():
        print(f"{key}: {value}")
    return 0
