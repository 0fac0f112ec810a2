"""End-to-end FPS against Ultralytics ``predict(stream=True)`` on the same ONNX and
clip, in one run, interleaved (every configuration once per round, then again).

    python -m benchmarks.vs_ultralytics --model yolov8n.onnx --int8 yolov8n_int8.onnx \
        --clip /usr/share/doc/opencv-doc/examples/data/vtest.avi \
        --reference-python /work/venv-cpuspeed/bin/python --rounds 3

Ultralytics needs ``opencv-python`` (which would replace opencv-contrib's ``cv2``),
so it runs in its own virtual environment (``--reference-python``); every
configuration runs in a fresh process of its own environment. Configurations:

* ``ul-onnx``      Ultralytics ``predict`` on the fp32 ONNX (its ONNX Runtime path);
* ``ul-openvino``  Ultralytics ``predict`` on ``NAME_openvino_model/`` made from the
  same ONNX with ``openvino.convert_model`` (+ ``metadata.yaml``: task, stride,
  imgsz, names), when ``ultralytics`` and ``openvino`` import in that environment;
* ``ours-ort``     our pipeline, ONNX Runtime, fp32;
* ``ours-ov``      our pipeline, OpenVINO at its default precision here (bf16 where
  the CPU has it, else fp32: the table says which);
* ``ours-ov-f32``  our pipeline, OpenVINO held to fp32 (``precision="f32"``);
* ``ours-int8-ort`` / ``ours-int8-ov``  the QDQ int8 file (``--int8``) on each;
* ``ours-ort-spin`` / ``ours-int8-spin``  ONNX Runtime with its intra-op
  threads spinning between work items (ONNX Runtime's own default; ours sleeps).

Our pipeline runs with ``--batch 4`` (run_stream.py's default): on a fixed
batch-1 model that is one single-thread request per core at once.

Each runs twice per round: writing annotated video with the tool's own default
writer, and with video writing off. Timed: the whole clip from opening it to the
last frame written, after the model is loaded and warmed up on one frame (both
tools). FPS = frames / wall seconds; CPU = process CPU-seconds per frame.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULT = "RESULT "  # prefix of the one JSON line a child prints


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- children (each runs in its own process) ----------------------------------
def child_ultralytics(args: argparse.Namespace) -> dict[str, Any]:
    """Ultralytics predict(stream=True) over the clip; save = its default writer."""
    import cv2
    from ultralytics import YOLO

    model = YOLO(args.model, task="detect")
    cap = cv2.VideoCapture(args.clip)
    ok, first = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"{args.clip}: cannot read a frame")
    common = {"imgsz": args.imgsz, "device": "cpu", "verbose": False,
              "conf": args.conf}
    for _ in range(2):  # loads the model and warms it up
        model.predict(first, **common)
    wall0, cpu0 = time.perf_counter(), _cpu()
    frames = 0
    for _ in model.predict(args.clip, stream=True, save=args.video,
                           project=args.out_dir, name="ul", exist_ok=True, **common):
        frames += 1
    return {"frames": frames, "seconds": time.perf_counter() - wall0,
            "cpu_seconds": _cpu() - cpu0}


def child_ours(args: argparse.Namespace) -> dict[str, Any]:
    """Our pipeline (threads per stage) with the chosen backend."""
    sys.path.insert(0, str(ROOT))
    from engines.build import build_detector, runtime_info
    from pipeline.build import build_pipeline
    from pipeline.config import PipelineConfig
    from pipeline.sinks import OutputConfig

    if args.backend.startswith("openvino"):
        from engines.backends.openvino import OpenVINOBackend

        backend: Any = OpenVINOBackend(
            args.model, threads=args.threads,
            precision="f32" if args.backend == "openvino-f32" else None)
    else:
        from engines.backends.onnxruntime import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(args.model, threads=args.threads,
                                     spin=args.backend == "onnxruntime-spin")
    detector = build_detector(backend, family="yolo", conf=args.conf)
    precision = runtime_info(detector).split()[-1]
    detector.warmup()
    config = PipelineConfig(batch=args.batch, progress=False, outputs=OutputConfig(
        out_dir=Path(args.out_dir), video=args.video, jsonl=False))
    wall0, cpu0 = time.perf_counter(), _cpu()
    metrics = build_pipeline([args.clip], detector, config).run()
    seconds = time.perf_counter() - wall0
    frames = sum(c.written for c in metrics.sources.values())
    return {"frames": frames, "seconds": seconds, "cpu_seconds": _cpu() - cpu0,
            "precision": precision}


# -- parent --------------------------------------------------------------------
def make_openvino_folder(python: str, onnx_path: Path, out: Path, imgsz: int) -> Path:
    """``NAME_openvino_model/NAME.xml`` + ``metadata.yaml``, as Ultralytics loads
    it, converted in the reference environment (its openvino and onnx)."""
    folder = out / f"{onnx_path.stem}_openvino_model"
    script = f"""
import ast, onnx, openvino as ov, yaml
props = {{p.key: p.value for p in onnx.load({str(onnx_path)!r}).metadata_props}}
names = ast.literal_eval(props.get("names", "{{0: 'object'}}"))
model = ov.convert_model({str(onnx_path)!r})
xml = {str(folder / (onnx_path.stem + ".xml"))!r}
ov.save_model(model, xml, compress_to_fp16=False)
meta = {{"task": "detect", "stride": int(props.get("stride", 32)),
        "imgsz": [{imgsz}, {imgsz}], "names": names, "batch": 1}}
open({str(folder / "metadata.yaml")!r}, "w").write(yaml.safe_dump(meta))
"""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-c", script], check=True)
    return folder


def reference_has(python: str, modules: list[str]) -> bool:
    code = "import " + ", ".join(modules)
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def run_child(python: str, kind: str, model: Path, args: argparse.Namespace,
              video: bool, backend: str = "") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vs-ul-") as out_dir:
        cmd = [python, str(Path(__file__).resolve()), "--child", kind,
               "--model", str(model), "--clip", str(args.clip), "--out-dir", out_dir,
               "--imgsz", str(args.imgsz), "--conf", str(args.conf)]
        if backend:
            cmd += ["--backend", backend]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        cmd += ["--batch", str(args.batch)]
        if video:
            cmd.append("--video")
        env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
        if proc.returncode or not lines:
            raise RuntimeError(f"{kind} {backend} on {model.name} failed "
                               f"(exit {proc.returncode}): {proc.stderr[-2000:]}")
        result = json.loads(lines[-1][len(RESULT):])
        written = sorted(Path(out_dir).rglob("*.mp4")) + sorted(
            Path(out_dir).rglob("*.avi"))
        result["video_bytes"] = sum(p.stat().st_size for p in written)
        return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="fp32 ONNX (static)")
    p.add_argument("--int8", type=Path, default=None,
                   help="QDQ int8 ONNX of the same model (python -m training quantize)")
    p.add_argument("--clip", required=True)
    p.add_argument("--reference-python", default=None,
                   help="python of the environment with ultralytics")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--imgsz", type=int, default=416)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch", type=int, default=4,
                   help="our pipeline's --batch (default: run_stream.py's)")
    p.add_argument("--only", nargs="*", default=None, help="configurations to run")
    p.add_argument("--json", type=Path, default=None)
    # child mode
    p.add_argument("--child", choices=["ultralytics", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--backend", default="onnxruntime", help=argparse.SUPPRESS)
    p.add_argument("--out-dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--video", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        body = child_ultralytics if args.child == "ultralytics" else child_ours
        args.model, args.clip = str(args.model), str(args.clip)
        print(RESULT + json.dumps(body(args)), flush=True)
        return 0

    ours = sys.executable
    configs: dict[str, tuple[str, str, Path, str]] = {}  # name -> python, kind, model
    work = Path(tempfile.mkdtemp(prefix="vs-ul-models-"))
    ref = args.reference_python
    if ref and reference_has(ref, ["ultralytics"]):
        configs["ul-onnx"] = (ref, "ultralytics", args.model, "")
        if reference_has(ref, ["ultralytics", "openvino"]):
            folder = make_openvino_folder(ref, args.model.resolve(), work, args.imgsz)
            configs["ul-openvino"] = (ref, "ultralytics", folder, "")
    else:
        print("ultralytics is not importable in --reference-python: ours only")
    configs["ours-ort"] = (ours, "ours", args.model, "onnxruntime")
    configs["ours-ort-spin"] = (ours, "ours", args.model, "onnxruntime-spin")
    configs["ours-ov"] = (ours, "ours", args.model, "openvino")
    configs["ours-ov-f32"] = (ours, "ours", args.model, "openvino-f32")
    if args.int8:
        configs["ours-int8-ort"] = (ours, "ours", args.int8, "onnxruntime")
        configs["ours-int8-spin"] = (ours, "ours", args.int8, "onnxruntime-spin")
        configs["ours-int8-ov"] = (ours, "ours", args.int8, "openvino")
    if args.only:
        configs = {k: v for k, v in configs.items() if k in args.only}

    runs: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for name, (python, kind, model, backend) in configs.items():
            for video in (True, False):
                result = run_child(python, kind, model, args, video, backend)
                runs.setdefault((name, video), []).append(result)
                print(f"round {r + 1} {name:<17} video {'on ' if video else 'off'} "
                      f"{result['frames']} frames {result['seconds']:.2f} s "
                      f"{result['frames'] / result['seconds']:.1f} FPS "
                      f"{result['cpu_seconds'] / result['frames']:.4f} CPU s/frame",
                      flush=True)

    rows = []
    for (name, video), results in runs.items():
        fps = [x["frames"] / x["seconds"] for x in results]
        rows.append({"config": name, "video": video, "fps": statistics.median(fps),
                     "fps_min": min(fps), "fps_max": max(fps),
                     "cpu_s_per_frame": statistics.median(
                         x["cpu_seconds"] / x["frames"] for x in results),
                     "frames": results[0]["frames"],
                     "precision": results[0].get("precision", ""),
                     "video_mb": results[0]["video_bytes"] / 1e6})
    base = {v: next((x["fps"] for x in rows if x["config"] == "ul-onnx"
                     and x["video"] == v), None) for v in (True, False)}
    best_ul = {v: next((x["fps"] for x in rows if x["config"] == "ul-openvino"
                        and x["video"] == v), None) for v in (True, False)}
    print(f"\n{args.clip}: median of {args.rounds} interleaved rounds, "
          f"{os.cpu_count()} cores")
    print(f"{'config':<18}{'video':<7}{'prec':<6}{'FPS':>7}{'range':>13}"
          f"{'CPU s/frame':>13}{'vs ul-onnx':>12}{'vs ul-ov':>10}{'MB':>7}")
    for row in rows:
        v = row["video"]
        ratio = f"{row['fps'] / base[v]:.2f}x" if base[v] else "-"
        ratio_ov = f"{row['fps'] / best_ul[v]:.2f}x" if best_ul[v] else "-"
        print(f"{row['config']:<18}{'on' if v else 'off':<7}{row['precision']:<6}"
              f"{row['fps']:>7.1f}{row['fps_min']:>7.1f}-{row['fps_max']:<5.1f}"
              f"{row['cpu_s_per_frame']:>13.4f}{ratio:>12}{ratio_ov:>10}"
              f"{row['video_mb']:>7.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
