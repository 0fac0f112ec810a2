"""Faster R-CNN proposal count vs speed and accuracy on ONNX Runtime (CPU).

For each ``rpn_post_nms_top_n_test`` the checkpoint is exported to ONNX at its
fixed input size, then run through ``load_detector`` on a validation set: COCO
mAP, mAP@.5 and ms per frame (pre-processing + inference + decoding).

    python -m benchmarks.frcnn_proposals runs/frcnn/best.pt --data data.yaml \
        --proposals 1000 300 100 50 --limit 100 --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

log = logging.getLogger("frcnn_proposals")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="faster_rcnn .pt checkpoint")
    parser.add_argument("--data", type=Path, required=True, help="YOLO data.yaml")
    parser.add_argument("--split", default="val")
    parser.add_argument("--proposals", type=int, nargs="+",
                        default=[1000, 300, 100, 50])
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--conf", type=float, default=0.001)
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime intra-op threads (default: all cores)")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore")

    from engines.backends.onnxruntime import OnnxRuntimeBackend
    from engines.build import build_detector
    from training.checkpoint import load_model
    from training.data.datasets import DetectionDataset, load_dataset
    from training.evaluate import evaluate_detector
    from training.faster_rcnn.export import export_faster_rcnn

    dataset = load_dataset(args.data, args.split)
    if args.limit:
        n = min(args.limit, len(dataset))
        dataset = DetectionDataset(dataset.image_paths[:n], dataset.labels[:n],
                                   dataset.class_names, dataset.normalized,
                                   dataset.image_ids[:n])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.proposals:
            if n < 1:
                raise ValueError(f"proposal counts must be >= 1, got {n}")
            model, meta = load_model(args.checkpoint)
            model.rpn._post_nms_top_n["testing"] = n
            model.rpn._pre_nms_top_n["testing"] = max(n, model.rpn._pre_nms_top_n[
                "testing"])
            path = Path(tmp) / f"frcnn_{n}.onnx"
            export_faster_rcnn(model, meta, path, images=[dataset[0].image])
            backend = OnnxRuntimeBackend(path, threads=args.threads)
            with build_detector(backend, family="faster_rcnn",
                                conf=args.conf) as detector:
                result = evaluate_detector(detector, dataset, warmup=3)
            rows.append({"proposals": n, "map": result["map"], "map50": result["map50"],
                         "ms_per_frame": result["ms_per_image"]})
            log.info("%s", rows[-1])
    print(f"{'proposals':>9}  {'mAP':>6}  {'mAP@.5':>6}  {'ms/frame':>8}")
    for r in rows:
        print(f"{r['proposals']:>9}  {r['map']:>6.3f}  {r['map50']:>6.3f}  "
              f"{r['ms_per_frame']:>8.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
