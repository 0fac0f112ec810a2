"""``python -m training <command> ...``: train, evaluate, export, build engines.

Each command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so
``--help`` is fast and a command never pays for another's imports.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "generate": (
        "training.data.generate",
        "write a procedural labelled dataset or video",
    ),
    "yolo": ("training.yolo.cli", "train a YOLO detector (modern or grid head)"),
    "faster-rcnn": ("training.faster_rcnn.cli", "train a Faster R-CNN detector"),
    "lineage": (
        "training.lineage.cli",
        "train the detection-lineage networks (loc, overfeat, rcnn, fast-rcnn)",
    ),
    "compare": (
        "training.compare",
        "one table + plot: every lineage detector on one held-out set",
    ),
    "evaluate": ("training.evaluate", "COCO mAP of any detector on a dataset"),
    "evaluate-tracking": ("training.evaluate_tracking", "MOTA/IDF1/HOTA of trackers"),
    "export": ("training.checkpoint", "export a checkpoint to ONNX, parity-checked"),
    "quantize": ("training.quantize", "static int8 (QDQ) ONNX, calibrated on frames"),
    "build-engine": ("training.tensorrt.cli", "build a TensorRT engine from ONNX"),
    "pseudo-label": (
        "training.pseudo_label",
        "label videos/images with a teacher detector",
    ),
}


def build_parser(wanted: str | None) -> argparse.ArgumentParser:
    """The parser with every command; only ``wanted``'s module is imported and
    adds its options. Whole option names only: ``--pre 2`` must not quietly set
    ``--preset``."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        allow_abbrev=False,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, allow_abbrev=False,
                                 help=help_text, description=help_text)
        if name == wanted:  # only the chosen command's module is imported
            module = importlib.import_module(module_name)
            module.add_arguments(command)
            command.set_defaults(handler=module.run)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """The parsed command line (the chosen command's module is imported)."""
    wanted = next((a for a in argv if not a.startswith("-")), None)
    return build_parser(wanted).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        logging.getLogger("training").error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
