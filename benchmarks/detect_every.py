"""--detect-every N: processed frame rate on a live-paced clip, and what the
tracker's predictions between detections cost in identity accuracy.

Speed: a clip paced as a live camera (``realtime``) faster than the detector,
with ByteTrack, for each N: frames processed per second (the others dropped).
Accuracy, on the same frames without drops (file mode), for each N:
IDF1/HOTA of the tracks against the N = 1 tracks, and, on a generated clip
with ground truth, against the ground truth.

    python -m benchmarks.detect_every --model yolo-people --fps 60 --seconds 15
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2

from engines.build import load_detector
from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig, read_frames
from training.evaluate_tracking import evaluate, read_mot

ROOT = Path(__file__).resolve().parents[1]


def paced_copy(video: Path, out: Path, fps: float) -> Path:
    """``video``'s frames re-timed to ``fps`` (so realtime pacing runs at it)."""
    writer = None
    for frame in read_frames(video):
        if writer is None:
            h, w = frame.image.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (w, h))
        writer.write(frame.image)
    assert writer is not None, f"{video}: no frames"
    writer.release()
    return out


def run(video: Path, detector, every: int, out: Path, live: bool, seconds: float,
        fps: float) -> tuple[float, Path]:
    """(processed frames per second, MOT file) of one run."""
    sources = SourceConfig(realtime=live, loop=live,
                           max_frames=int(seconds * fps) if live else 0)
    config = PipelineConfig(tracker="bytetrack", detect_every=every, sources=sources,
                            outputs=OutputConfig(out_dir=out, video=False,
                                                 jsonl=False, mot=True),
                            progress=False)
    started = time.perf_counter()
    metrics = build_pipeline([str(video)], detector, config).run()
    elapsed = time.perf_counter() - started
    processed = sum(c.processed for c in metrics.sources.values())
    return processed / elapsed, next(out.glob("*.mot.txt"))


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="yolo-people")
    p.add_argument("--video", type=Path, default=ROOT / "samples" / "vtest.mp4")
    p.add_argument("--fps", type=float, default=60.0, help="live pacing of the clip")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--every", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--gt-model", default="yolo",
                   help="model for the generated clip with ground truth")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="detect-every-") as tmp:
        root = Path(tmp)
        clip = paced_copy(args.video, root / "paced.mp4", args.fps)
        from training.data.generate import generate_video

        gen = root / "gen.mp4"
        gt_path = generate_video(gen, n_frames=300, fps=30.0, seed=7)
        gt = read_mot(gt_path)
        rows = []
        with load_detector(args.model, threads=args.threads) as det, \
                load_detector(args.gt_model, threads=args.threads) as gt_det:
            reference = None
            for every in args.every:
                rate, _ = run(clip, det, every, root / f"live{every}", True,
                              args.seconds, args.fps)
                _, mot = run(clip, det, every, root / f"file{every}", False, 0, 0)
                tracks = read_mot(mot)
                reference = tracks if reference is None else reference
                vs_ref = evaluate({"s": reference}, {"s": tracks})["COMBINED"]
                _, gmot = run(gen, gt_det, every, root / f"gen{every}", False, 0, 0)
                vs_gt = evaluate({"s": gt}, {"s": read_mot(gmot)})["COMBINED"]
                rows.append((every, rate, vs_ref, vs_gt))
    base = rows[0][1]
    print(f"{args.model} on {args.video.name} paced at {args.fps:g} fps for "
          f"{args.seconds:g} s (ByteTrack); IDF1/HOTA vs the N=1 tracks on the same "
          f"clip unpaced, and vs ground truth on a generated clip ({args.gt_model})")
    print(f"{'N':>3}{'proc FPS':>10}{'x N=1':>7}{'IDF1 vs N=1':>13}{'HOTA vs N=1':>13}"
          f"{'IDF1 vs GT':>12}{'HOTA vs GT':>12}")
    for every, rate, vs_ref, vs_gt in rows:
        print(f"{every:>3}{rate:>10.1f}{rate / base:>7.2f}{vs_ref['IDF1']:>13.3f}"
              f"{vs_ref['HOTA']:>13.3f}{vs_gt['IDF1']:>12.3f}{vs_gt['HOTA']:>12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
