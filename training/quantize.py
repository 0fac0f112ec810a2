"""``python -m training quantize``: static int8 (ONNX Runtime QDQ) of a detector ONNX.

Calibration frames come from any source the pipeline reads (a video, an image
folder or glob) or from a dataset yaml/json, and go through the detector's own
``prepare``, so the quantizer sees exactly what the network sees at inference.
Every calibration method (MinMax, Entropy, Percentile) is tried, with and
without the network's decode tail kept in fp32; the variant that agrees best
with the fp32 model on held-back frames wins (a tie goes to the variant that
keeps fewer nodes in fp32, which runs faster). The output carries the input's
metadata plus ``precision: int8``.

Agreement = detections of the int8 model matched one-to-one to the fp32 model's
(same class, IoU >= 0.9) over the larger of the two counts; the score change is
taken over matched pairs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.boxes import iou_matrix
from core.meta import META_KEY, ModelMeta, read_sidecar, write_sidecar
from core.types import Detections
from engines.base import Detector
from engines.build import load_detector

log = logging.getLogger(__name__)

METHODS = ("MinMax", "Entropy", "Percentile")
MATCH_IOU = 0.9
AGREEMENT_TIE = 0.005  # agreements closer than this count as equal
COMPARE_CONF = 0.25  # detections compared between fp32 and int8 above this score
MIN_COMPARED = 20  # fewer fp32 boxes than this above COMPARE_CONF: lower the bar
WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
DATASET_SUFFIXES = {".yaml", ".yml", ".json"}


@dataclass(frozen=True)
class Agreement:
    """int8 vs fp32 on held-back frames."""

    matched: float  # matched pairs / max(len(fp32), len(int8)), summed over frames
    max_score_change: float
    fp32_boxes: int
    int8_boxes: int

    def __str__(self) -> str:
        return (f"{100 * self.matched:.1f}% of boxes matched at IoU>={MATCH_IOU} "
                f"({self.fp32_boxes} fp32, {self.int8_boxes} int8), max score "
                f"change {self.max_score_change:.3f}")


def read_frames(source: str | Path, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` BGR frames spread evenly over a video, image folder or
    dataset (yaml/json: its train split, else val)."""
    if limit < 1:
        raise ValueError(f"calibration frame count must be >= 1, got {limit}")
    path = Path(source)
    if path.suffix.lower() in DATASET_SUFFIXES:
        from training.data.datasets import load_dataset

        for split in ("train", "val"):
            try:
                dataset = load_dataset(path, split)
            except (ValueError, KeyError, FileNotFoundError):
                continue
            if len(dataset):
                step = max(1, len(dataset) // limit)
                return [dataset[i].image for i in range(0, len(dataset), step)][:limit]
        raise ValueError(f"{source}: no images in its train or val split")
    from pipeline.sources import SourceConfig, make_source

    with make_source(str(source), SourceConfig(reconnect_attempts=0)) as src:
        step = max(1, (src.frame_count or 0) // limit)
        frames = [f.image for f in src.frames() if f.index % step == 0][:limit]
    if not frames:
        raise ValueError(f"{source}: no frames to calibrate on")
    return frames


def network_inputs(detector: Detector, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The exact tensors the backend receives: ``prepare`` + the batch axis the
    model declares."""
    rank = len(getattr(detector, "backend").input_shape)
    xs = [detector.prepare(f).input for f in frames]
    return [x[None] if rank == 4 else x for x in xs]


class _Reader:
    """ONNX Runtime ``CalibrationDataReader`` over prepared tensors."""

    def __init__(self, name: str, tensors: list[np.ndarray]) -> None:
        self.name, self.tensors = name, tensors
        self._it: Iterator[np.ndarray] = iter(tensors)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.name: x}

    def rewind(self) -> None:
        self._it = iter(self.tensors)


def decode_tail(model: Any, convs_allowed: int) -> list[str]:
    """Names of nodes whose every path to a graph output crosses at most
    ``convs_allowed`` weight layers (Conv/Gemm/MatMul, the node itself counted):
    0 = the pure decode after the last layers (box/score concat, sigmoid, DFL
    arithmetic), 1 = also the last weight layer of each head (box regression)."""
    nodes = list(model.graph.node)
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    outputs = {o.name for o in model.graph.output}
    depth: dict[int, int] = {}  # most weight layers on any path to an output
    for i in reversed(range(len(nodes))):  # ONNX nodes are topologically sorted
        below = [depth.get(j, 1 << 20) for out in nodes[i].output
                 for j in consumers.get(out, [])]
        if not below and not any(out in outputs for out in nodes[i].output):
            depth[i] = 1 << 20  # dead branch: never worth keeping in fp32
            continue
        depth[i] = max(below, default=0) + (nodes[i].op_type in WEIGHT_OPS)
    return [n.name for i, n in enumerate(nodes)
            if n.name and depth[i] <= convs_allowed]


def quantize(src: Path, dst: Path, tensors: list[np.ndarray], input_name: str,
             method: str, exclude: list[str], symmetric: bool = False) -> None:
    """ONNX Runtime static QDQ: per-channel int8 weights, uint8 activations (the
    u8s8 pair x86 VNNI kernels run fastest); ``symmetric``: int8 activations with
    zero point 0, the only Q/DQ TensorRT builds."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    # ranges are merged every `chunk` frames (bounds memory); ONNX Runtime fails
    # with "No data is collected" when the count is an exact multiple of it
    chunk = next(c for c in (8, 7, 9, 5) if len(tensors) % c)
    quantize_static(str(src), str(dst), _Reader(input_name, tensors),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, method),
                    nodes_to_exclude=exclude,
                    extra_options={"CalibMaxIntermediateOutputs": chunk,
                                   "ActivationSymmetric": symmetric,
                                   "WeightSymmetric": True})


def preprocess_model(src: Path, dst: Path) -> Path:
    """ONNX Runtime's recommended shape inference + fusion before quantizing;
    the original file when a graph does not survive it (e.g. control flow)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    problem = ""
    dst.parent.mkdir(parents=True, exist_ok=True)
    for skip_symbolic in (False, True):  # symbolic shapes fail on dynamic axes
        try:
            # it leaves scratch files in the working directory: keep them in dst's
            with contextlib.chdir(dst.parent):
                quant_pre_process(str(src.resolve()), str(dst.resolve()),
                                  skip_symbolic_shape=skip_symbolic)
            return dst
        except Exception as exc:  # each step rejects some graphs
            problem = str(exc).splitlines()[0][:120] if str(exc) else repr(exc)
    log.info("%s: quantization pre-processing skipped (%s)", src.name, problem)
    return src


def agreement(reference: list[Detections], candidate: list[Detections]) -> Agreement:
    """Greedy one-to-one matching, best IoU first, same class, IoU >= MATCH_IOU."""
    matched = 0.0
    worst = 0.0
    n_ref = n_cand = 0
    for ref, cand in zip(reference, candidate, strict=True):
        n_ref, n_cand = n_ref + len(ref), n_cand + len(cand)
        if not len(ref) or not len(cand):
            continue
        iou = iou_matrix(ref.xyxy, cand.xyxy)
        iou[ref.class_ids[:, None] != cand.class_ids[None, :]] = 0.0
        pairs = 0
        while True:
            r, c = np.unravel_index(int(iou.argmax()), iou.shape)
            if iou[r, c] < MATCH_IOU:
                break
            pairs += 1
            worst = max(worst, abs(float(ref.scores[r]) - float(cand.scores[c])))
            iou[r, :] = 0.0
            iou[:, c] = 0.0
        matched += pairs
    total = max(n_ref, n_cand)
    return Agreement(matched / total if total else 1.0, worst, n_ref, n_cand)


def copy_metadata(src: Path, dst: Path, extra: dict[str, str]) -> None:
    """The fp32 file's ``metadata_props`` (streamdet, Ultralytics' names/stride/
    imgsz, ...) on the quantized file, the streamdet meta gaining ``precision``;
    our sidecar beside the source (only a recognised one: ``read_sidecar``) is
    mirrored beside the output."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(src), load_external_data=False)
             .metadata_props}
    props.update(extra)
    if META_KEY in props:
        props[META_KEY] = ModelMeta.from_json(props[META_KEY]).updated(extra).to_json()
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(dst))
    sidecar = read_sidecar(src)
    if sidecar is not None:
        write_sidecar(dst, sidecar.updated(extra))


def detect_all(detector: Detector, frames: list[np.ndarray], conf: float
               ) -> list[Detections]:
    return [d[d.scores >= conf] for d in
            (detector.detect([f])[0] for f in frames)]


def compare_threshold(detections: list[Detections]) -> float:
    """COMPARE_CONF, or lower when the fp32 model finds fewer than MIN_COMPARED
    boxes above it (a weak model): the score of its MIN_COMPARED-th best box."""
    scores = np.sort(np.concatenate([d.scores for d in detections] or [[]]))[::-1]
    if len(scores) == 0 or (scores >= COMPARE_CONF).sum() >= MIN_COMPARED:
        return COMPARE_CONF
    return float(scores[min(MIN_COMPARED, len(scores)) - 1])


def choose(src: Path, dst: Path, frames: list[np.ndarray], held_back: int,
           methods: tuple[str, ...] = METHODS, family: str | None = None,
           symmetric: bool = False) -> dict[str, Any]:
    """Quantize ``src`` to ``dst`` with the best-agreeing variant; returns the
    measurements of every variant tried."""
    if held_back < 1 or len(frames) <= held_back:
        raise ValueError(f"{len(frames)} frames leave none for calibration after "
                         f"holding back {held_back}")
    calib, check = frames[:-held_back], frames[-held_back:]
    with load_detector(src, family=family, conf=0.001) as fp32:
        tensors = network_inputs(fp32, calib)
        input_name = fp32.backend.input_name
        everything = detect_all(fp32, check, 0.0)
    conf = compare_threshold(everything)
    if conf != COMPARE_CONF:
        log.warning("%s finds few boxes above %.2f on the held-back frames: "
                    "comparing boxes above %.4f instead", src.name, COMPARE_CONF, conf)
    reference = [d[d.scores >= conf] for d in everything]
    import onnx

    variants: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="streamdet-quant-") as tmp:
        base = preprocess_model(src, Path(tmp) / "pre.onnx")
        graph = onnx.load(str(base), load_external_data=False)
        tails = {"decode": decode_tail(graph, 0),
                 "decode+last layer": decode_tail(graph, 1)}

        def attempt(method: str, tail_name: str, exclude: list[str]) -> None:
            out = Path(tmp) / f"{len(variants)}.onnx"
            quantize(base, out, tensors, input_name, method, exclude, symmetric)
            copy_metadata(src, out, {"precision": "int8"})
            with load_detector(out, family=family, conf=0.001) as q:
                score = agreement(reference, detect_all(q, check, conf))
            variants.append({"method": method, "fp32_nodes": tail_name,
                             "excluded": len(exclude), "agreement": score,
                             "path": out})
            log.info("%-10s fp32 nodes %-17s %s", method, tail_name, score)

        # methods compared with the decode tail in fp32 (a plain int8 concat of
        # pixel boxes and [0, 1] scores loses the scores), then the other tails
        first = "decode" if tails["decode"] else "none"
        for method in methods:
            attempt(method, first, tails.get(first, []))
        method = pick(variants)["method"]
        for tail_name, exclude in {"none": [], **tails}.items():
            if tail_name != first and (exclude or tail_name == "none"):
                attempt(method, tail_name, exclude)
        best = pick(variants)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(best["path"].read_bytes())
        copy_metadata(src, dst, {"precision": "int8",
                                 "calibration": best["method"],
                                 "fp32_nodes": best["fp32_nodes"],
                                 "activations": "int8 symmetric" if symmetric
                                 else "uint8"})
    return {"best": best, "variants": variants, "calibration_frames": len(calib),
            "held_back": len(check), "compare_conf": conf}


def pick(variants: list[dict[str, Any]]) -> dict[str, Any]:
    """Best agreement; within ``AGREEMENT_TIE`` of it, fewest fp32 nodes, then the
    smaller score change."""
    best = max(v["agreement"].matched for v in variants)
    close = [v for v in variants if v["agreement"].matched >= best - AGREEMENT_TIE]
    return min(close, key=lambda v: (v["excluded"], v["agreement"].max_score_change,
                                     -v["agreement"].matched))


def format_variants(report: dict[str, Any]) -> str:
    rows = [f"{'method':<11}{'fp32 nodes':<19}{'matched %':>10}{'max dscore':>11}"]
    for v in report["variants"]:
        mark = "  <- chosen" if v is report["best"] else ""
        rows.append(f"{v['method']:<11}{v['fp32_nodes']:<19}"
                    f"{100 * v['agreement'].matched:>10.1f}"
                    f"{v['agreement'].max_score_change:>11.3f}{mark}")
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="fp32 .onnx (YOLO or Faster R-CNN)")
    parser.add_argument("--calibration", required=True,
                        help="video, image folder/glob or dataset yaml/json")
    parser.add_argument("--out", type=Path, default=None,
                        help="output .onnx (default: MODEL_int8.onnx)")
    parser.add_argument("--frames", type=int, default=64,
                        help="frames read from the calibration source")
    parser.add_argument("--held-back", type=int, default=16,
                        help="of those, frames kept out of calibration to measure "
                             "agreement with fp32")
    parser.add_argument("--method", choices=METHODS, action="append", default=None,
                        help="calibration method(s) to try (default: all)")
    parser.add_argument("--family", default=None, help="override the model family")
    parser.add_argument("--symmetric", action="store_true",
                        help="int8 activations with zero point 0: the Q/DQ "
                             "TensorRT builds (build-engine --precision int8)")
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset yaml/json: print mAP before and after")
    parser.add_argument("--split", default="val", help="split of --data to score")
    parser.add_argument("--json", type=Path, default=None, help="write results here")


def run(args: argparse.Namespace) -> int:
    src: Path = args.model
    if not src.is_file():
        raise FileNotFoundError(f"{src}: model file not found")
    if src.suffix.lower() != ".onnx":
        raise ValueError(f"{src}: quantize takes an .onnx model, got {src.suffix!r}")
    dst = args.out or src.with_name(f"{src.stem}_int8.onnx")
    if dst.resolve() == src.resolve():
        raise ValueError(f"{dst}: the output would overwrite the input")
    frames = read_frames(args.calibration, args.frames)
    held = min(args.held_back, max(1, len(frames) // 4))
    report = choose(src, dst, frames, held, tuple(args.method or METHODS), args.family,
                    args.symmetric)
    best = report["best"]
    print(format_variants(report))
    print(f"wrote {dst}: {best['method']} calibration on "
          f"{report['calibration_frames']} frames, {best['excluded']} nodes in fp32 "
          f"({best['fp32_nodes']}); vs fp32 on {report['held_back']} held-back "
          f"frames, boxes scoring >= {report['compare_conf']:.3g}: "
          f"{best['agreement']}")
    result: dict[str, Any] = {
        "model": str(src), "out": str(dst), "method": best["method"],
        "fp32_nodes": best["fp32_nodes"], "excluded_nodes": best["excluded"],
        "calibration_frames": report["calibration_frames"],
        "held_back": report["held_back"], "compare_conf": report["compare_conf"],
        "variants": [{"method": v["method"], "fp32_nodes": v["fp32_nodes"],
                      "matched": v["agreement"].matched,
                      "max_score_change": v["agreement"].max_score_change}
                     for v in report["variants"]]}
    if args.data:
        from training.data.datasets import load_dataset
        from training.evaluate import evaluate_detector

        dataset = load_dataset(args.data, args.split)
        maps = {}
        for name, path in (("fp32", src), ("int8", dst)):
            with load_detector(path, family=args.family, conf=0.001) as d:
                maps[name] = evaluate_detector(d, dataset)
        lost = maps["int8"]["map"] - maps["fp32"]["map"]
        print(f"mAP@[.5:.95] fp32 {maps['fp32']['map']:.4f} -> int8 "
              f"{maps['int8']['map']:.4f} ({lost:+.4f});"
              f" mAP@.5 {maps['fp32']['map50']:.4f} -> {maps['int8']['map50']:.4f}; "
              f"ms/image {maps['fp32']['ms_per_image']:.1f} -> "
              f"{maps['int8']['ms_per_image']:.1f} ({len(dataset)} images)")
        result["map"] = {k: {m: v[m] for m in ("map", "map50", "ms_per_image")}
                         for k, v in maps.items()}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0
