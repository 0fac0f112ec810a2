"""``python -m training build-engine ONNX [--precision ...]``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from core.meta import sidecar_path
from training.tensorrt.engine import build_engine
from training.tensorrt.profile import DEFAULT_BATCH
from training.tensorrt.versions import PRECISIONS

log = logging.getLogger(__name__)


def cuda_index(text: str) -> int:
    """``cuda``, ``cuda:N`` or ``N`` -> N (the project's ``--device`` vocabulary)."""
    name = text.strip().lower()
    index = "0" if name == "cuda" else name.removeprefix("cuda:")
    if not index.isdigit():
        raise argparse.ArgumentTypeError(f"device {text!r}: expected cuda, cuda:N "
                                         "or N (an engine builds on a GPU)")
    return int(index)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", type=Path, help="ONNX model (with streamdet metadata)")
    parser.add_argument("--out", type=Path, default=None,
                        help="engine path (default: <onnx stem>_<precision>.engine "
                             "beside the ONNX)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16",
                        help="fp32, fp16 (default) or int8 (a Q/DQ ONNX from "
                             "`quantize --symmetric`, or calibration on TensorRT 10)")
    parser.add_argument("--calib-data", type=Path, default=None,
                        help="folder of images or a video for INT8 calibration")
    parser.add_argument("--calib-cache", type=Path, default=None,
                        help="INT8 calibration cache, reused when present "
                             "(default: the engine name with .calib)")
    parser.add_argument("--calib-images", type=int, default=256,
                        help="images/frames used for calibration (default 256)")
    parser.add_argument("--min-batch", type=int, default=None,
                        help=f"profile min batch (default {DEFAULT_BATCH[0]})")
    parser.add_argument("--opt-batch", type=int, default=None,
                        help=f"profile opt batch, also the INT8 calibration batch "
                             f"(default {DEFAULT_BATCH[1]})")
    parser.add_argument("--max-batch", type=int, default=None,
                        help=f"profile max batch (default {DEFAULT_BATCH[2]})")
    parser.add_argument("--workspace-gb", type=float, default=2.0,
                        help="builder workspace limit in GiB (default 2)")
    parser.add_argument("--timing-cache", type=Path, default=None,
                        help="timing cache file, loaded when present, saved after")
    parser.add_argument("--device", type=cuda_index, default=0,
                        help="GPU: cuda, cuda:N (or N); default cuda:0")


def run(args: argparse.Namespace) -> int:
    from engines.backends.cuda_memory import CudaError

    try:
        out = build_engine(
            args.onnx, args.out, args.precision, calib_data=args.calib_data,
            calib_cache=args.calib_cache, calib_images=args.calib_images,
            min_batch=args.min_batch, opt_batch=args.opt_batch,
            max_batch=args.max_batch, workspace_gb=args.workspace_gb,
            timing_cache=args.timing_cache, verbose=getattr(args, "verbose", False),
            device=args.device)
    except CudaError as exc:
        log.error("CUDA: %s", exc)
        return 2
    print(f"engine: {out}")
    print(f"metadata: {sidecar_path(out)}")
    return 0
