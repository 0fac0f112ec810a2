"""``python -m training lineage train --model loc|overfeat|hog|rcnn|fast-rcnn``."""

from __future__ import annotations

import argparse
from pathlib import Path

MODELS = ("loc", "overfeat", "hog", "rcnn", "fast-rcnn")
DEFAULT_EPOCHS = {"loc": 20, "overfeat": 10, "hog": 1, "rcnn": 40, "fast-rcnn": 40}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("train", allow_abbrev=False,
                       help="train one lineage network and export ONNX")
    p.add_argument("--model", choices=MODELS, required=True)
    p.add_argument("--data", type=Path, default=None,
                   help="data.yaml (YOLO) or COCO .json; required except for loc, "
                        "which renders its own single-object images")
    p.add_argument("--epochs", type=int, default=None,
                   help="hog: rounds of hard-negative mining")
    p.add_argument("--images", type=int, default=8000,
                   help="loc only: single-object images to render")
    p.add_argument("--backgrounds", type=Path, default=None, metavar="DIR",
                   help="loc only: render over crops of the photographs in DIR")
    p.add_argument("--pooling", choices=("align", "max"), default="align",
                   help="fast-rcnn only: RoIAlign (default) or the paper's RoI "
                        "max pooling")
    p.add_argument("--out", type=Path, default=Path("runs/lineage"),
                   help="output folder; writes lineage_<model>.onnx there "
                        "(hog: lineage_hog.npz)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import torch

    from training.data.datasets import load_dataset
    from training.data.generate import CLASS_NAMES
    from training.lineage import train

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    epochs = args.epochs or DEFAULT_EPOCHS[args.model]
    if epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    name = args.model.replace("-", "_")
    out = args.out / f"lineage_{name}.onnx"
    if args.model == "loc":
        names = (load_dataset(args.data, "train").class_names if args.data
                 else list(CLASS_NAMES))
        train.train_loc(out, names, epochs, args.images, args.seed,
                        backgrounds=args.backgrounds)
    else:
        if args.data is None:
            raise ValueError(f"--data is required for --model {args.model}")
        dataset = load_dataset(args.data, "train")
        cache = args.out / "proposals_train.npz"
        if args.model == "overfeat":
            train.train_overfeat(dataset, out, epochs, args.seed)
        elif args.model == "hog":
            from training.lineage.hog import train_hog

            out = train_hog(dataset, out.with_suffix(".npz"), args.seed,
                            rounds=epochs)
        elif args.model == "rcnn":
            train.train_rcnn(dataset, out, epochs, args.seed, cache=cache)
        else:
            train.train_fast_rcnn(dataset, out, epochs, args.seed, cache=cache,
                                  pooling=args.pooling)
    print(out)
    return 0
