#!/usr/bin/env python3
"""streamdet: run a detector over videos, webcams, streams or image folders.

Commands:
  run        one pipeline over one or more sources (the default: a command line
             that starts with an option is a run)
  batch      many video files, one pipeline per file, summary.csv
  benchmark  decode-only and inference-only ceilings, a plain single-threaded
             loop and the pipeline on one source, side by side (this replaces
             the former --benchmark flag)
  serve      the live view over a pipeline that runs until stopped, with no
             source or some; sources join and leave while it runs

Examples:
  streamdet                                       # HOG people, sample clip
  streamdet --source 0 --model yolo --show        # webcam, shipped YOLO, window
  streamdet run --source rtsp://cam/stream --model model.onnx --tracker bytetrack
  streamdet --source a.mp4 --source b.mp4 --batch 4 --metrics m.json
  streamdet --model model.engine --device cuda    # TensorRT engine
  streamdet benchmark --model yolo                # ceilings vs loop vs pipeline
  streamdet batch videos/ --workers 2 --model yolo  # many files, summary.csv
  streamdet batch --help                          # each command's own options
  streamdet --config cams.yaml --model yolo       # many cameras, docs/config.md

`python run_stream.py ...` is the same command without installing the package.
Outputs go to --out (default ./output): SOURCE.mp4 (annotated, H.264 in fragmented
MP4: playable after a kill), SOURCE.jsonl (one record per frame) and, with --mot,
SOURCE.mot.txt; with --clip-on, clips/SOURCE_TIME_EVENT.mp4 and .jpg per event.
--serve shows the live annotated streams and metrics in a browser;
--rtsp-out pushes the annotated stream to an RTSP server. Ctrl-C stops cleanly and
finalises every output; a second Ctrl-C forces exit.

Exit status: 0 done; 2 bad input (one line naming it: an option value, a model,
a source, an output); 1 an internal error (with its traceback) or a source that
failed mid-run; 130 / 143 stopped by Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from core.errors import InputError

if TYPE_CHECKING:
    from engines.base import Detector
    from engines.build import DetectorOptions
    from pipeline.analytics.stage import AnalyticsConfig
    from pipeline.camconfig import CameraConfig, SourceEntry
    from pipeline.clips import ClipConfig
    from pipeline.events import EventsConfig
    from pipeline.runner import PipelineConfig
    from pipeline.server_config import ServerAuth
    from pipeline.sinks import RecordConfig

ROOT = Path(__file__).resolve().parent
SAMPLE = ROOT / "samples" / "vtest.mp4"
WEBHOOK_SECRET_ENV = "STREAMDET_WEBHOOK_SECRET"

log = logging.getLogger("streamdet")


def add_source_args(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("sources")
    src.add_argument("--max-frames", type=int, default=0, metavar="N",
                     help="stop each source after N frames read (0 = all)")
    src.add_argument("--stride", type=int, default=1, metavar="N",
                     help="process every Nth frame (the others are counted as skipped)")
    src.add_argument("--realtime", action="store_true",
                     help="pace files at their native FPS and treat them as live "
                          "(drop oldest frames when behind), as a camera would")
    src.add_argument("--timeout", type=float, default=5.0, metavar="S",
                     help="open/read timeout for network streams (default 5)")
    src.add_argument("--reconnect", type=int, default=5, metavar="N",
                     help="reconnect attempts after a stream stalls (default 5; "
                          "serve retries for as long as it runs)")
    src.add_argument("--rtsp-transport", choices=["tcp", "udp"], default="tcp",
                     help="RTSP transport (default tcp: survives NATs, firewalls "
                          "and lossy links; udp: lower latency on a clean LAN)")
    src.add_argument("--decode", choices=["auto", "cpu", "pyav", "nvdec"],
                     default="auto",
                     help="video decoder: auto (NVDEC on an NVIDIA GPU, else "
                          "OpenCV's FFmpeg), cpu (OpenCV), pyav (FFmpeg's libraries "
                          "on the CPU), nvdec (default: auto; the choice is logged)")


def class_list(text: str) -> tuple[str, ...]:
    """``--classes 0,2,person``: ids or names, comma- or space-separated."""
    items = tuple(t for t in text.replace(",", " ").split() if t)
    if not items:
        raise argparse.ArgumentTypeError("expected class ids or names")
    return items


def image_size(text: str) -> tuple[int, int]:
    """``--imgsz 640`` or ``--imgsz 384,640`` -> (height, width)."""
    from core.image import parse_imgsz

    try:
        return parse_imgsz(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_model_args(p: argparse.ArgumentParser) -> None:
    from engines.build import BACKENDS, FAMILIES, SHIPPED, SUFFIX_BACKENDS

    mdl = p.add_argument_group("model")
    mdl.add_argument("--model", "-m", default="hog",
                     help=f"a shipped model ({', '.join(SHIPPED)}) or a "
                          f"{' / '.join(SUFFIX_BACKENDS)} file (default: hog)")
    mdl.add_argument("--family", choices=sorted(FAMILIES),
                     help="model family when the file carries no metadata")
    mdl.add_argument("--backend", choices=sorted(BACKENDS),
                     help="runtime that runs the network (default: by file suffix; "
                          "tensorrt on an .onnx uses ONNX Runtime's TensorRT provider)")
    mdl.add_argument("--device", default="cpu",
                     help="hardware: cpu, cuda or cuda:N (default: cpu)")
    mdl.add_argument("--conf", type=float, help="score threshold (family default)")
    mdl.add_argument("--iou", type=float, help="NMS IoU threshold (family default)")
    mdl.add_argument("--max-det", type=int, metavar="N",
                     help="most boxes per frame (family default)")
    mdl.add_argument("--classes", type=class_list, metavar="LIST",
                     help="keep only these class ids or names, e.g. 0,2 or person")
    mdl.add_argument("--threads", type=int, default=None,
                     help="CPU threads for the network (default: all cores)")
    mdl.add_argument("--imgsz", type=image_size, metavar="N|H,W",
                     help="network input size for dynamic-shape exports (a fixed-"
                          "size model refuses another size)")


def detect_every(text: str) -> int | str:
    """``--detect-every``: an integer >= 1 or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'auto', "
                                         f"got {text!r}")
    return int(text)


def add_pipeline_args(p: argparse.ArgumentParser) -> None:
    run = p.add_argument_group("pipeline")
    run.add_argument("--batch", type=int, default=4,
                     help="most frames per inference call, batched across sources "
                          "and consecutive frames (default 4; on a CPU a model with "
                          "a fixed batch runs one request per thread at once)")
    run.add_argument("--max-wait-ms", type=float, default=5.0,
                     help="how long inference waits for a batch to fill")
    run.add_argument("--queue-size", type=int, default=8, help="bound of every queue")
    from pipeline.tracking import RECOMMENDED_TRACKER, TRACKER_CHOICES

    run.add_argument("--tracker", choices=TRACKER_CHOICES, default=None,
                     help="multi-object tracker (default: none; with --line or "
                          f"--zone: {RECOMMENDED_TRACKER})")
    run.add_argument("--detect-flow", action=argparse.BooleanOptionalAction,
                     default=True,
                     help="with --detect-every, move boxes by optical flow on the "
                          "frames between detections (--no-detect-flow: the "
                          "tracker's motion model only)")
    run.add_argument("--detect-every", type=detect_every, default=1, metavar="N",
                     help="run the detector on every Nth processed frame and let the "
                          "tracker predict the frames between (needs --tracker); "
                          "'auto' picks N to hold the source's frame rate")
    run.add_argument("--tracker-param", action="append", default=[],
                     metavar="NAME=VALUE",
                     help="tracker parameter, repeatable (e.g. cmc=sparse for a "
                          "moving camera); defaults are the best on "
                          "benchmarks/tracking_bench.py, see docs/tracking.md")


def add_analytics_args(p: argparse.ArgumentParser) -> None:
    """Lines and zones: the one-source shorthand of the camera configuration."""
    from pipeline.analytics.zones import INERTIA

    ana = p.add_argument_group(
        "analytics", "values all in [0, 1] are fractions of the frame, otherwise "
        "pixels; events go to OUT/SOURCE.events.jsonl")
    ana.add_argument("--line", action="append", default=[],
                     metavar="X1,Y1,X2,Y2[:NAME]",
                     help="count tracked objects crossing this segment, in and out "
                          "(repeatable)")
    ana.add_argument("--zone", action="append", default=[],
                     metavar="X,Y,X,Y,X,Y[,...][:NAME]",
                     help="polygon: occupancy, enter/exit events, dwell time "
                          "(repeatable)")
    ana.add_argument("--anchor", choices=["center", "bottom"], default="bottom",
                     help="point of a box that counts: bottom centre (where a "
                          "person stands; default) or centre")
    ana.add_argument("--zone-inertia", type=int, default=INERTIA, metavar="N",
                     help=f"frames inside (outside) before an object has entered "
                          f"(exited) a zone (default {INERTIA})")
    ana.add_argument("--loiter", type=float, metavar="SECONDS",
                     help="one loiter event when a track stays this long in a zone")
    ana.add_argument("--line-classes", type=class_list, metavar="LIST",
                     help="lines count only these class ids or names")
    ana.add_argument("--zone-classes", type=class_list, metavar="LIST",
                     help="zones see only these class ids or names")
    ana.add_argument("--webhook", metavar="URL", default="",
                     help="also POST every event as JSON to this http(s) URL, "
                          f"signed (HMAC-SHA256) with ${WEBHOOK_SECRET_ENV} when set")
    ana.add_argument("--mqtt", metavar="URL", default="",
                     help="also publish every event to mqtt[s]://[user:pass@]host"
                          "[:port]/topic (as TOPIC/EVENT_KIND)")
    from pipeline.clips import CLIP_EVENTS

    ana.add_argument("--clip-on", type=event_list, metavar="EVENT[,EVENT]",
                     help="write OUT/clips/SOURCE_TIME_EVENT.mp4 (and .jpg, the "
                          "event's frame) for these events, cut from the encoded "
                          f"video with pre-roll ({', '.join(CLIP_EVENTS)})")
    ana.add_argument("--clip-pre", type=float, metavar="S",
                     help="seconds of video before the event (default 5; up to "
                          "one keyframe interval more)")
    ana.add_argument("--clip-post", type=float, metavar="S",
                     help="seconds after the clip's last event (default 5)")
    ana.add_argument("--clip-max-s", type=float, metavar="S",
                     help="longest clip; events past it start a new one "
                          "(default 60)")
    ana.add_argument("--clip-max-mb", type=float, metavar="MB",
                     help="size of OUT/clips past which the oldest clips are "
                          "deleted (default: no limit)")


def event_list(text: str) -> tuple[str, ...]:
    """``--clip-on line_cross,loiter``: event kinds, comma-separated."""
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected event kinds, e.g. line_cross")
    return items


def add_output_args(p: argparse.ArgumentParser) -> None:
    out = p.add_argument_group("outputs")
    out.add_argument("--out", "-o", type=Path, default=Path("output"),
                     help="output folder (default: ./output)")
    out.add_argument("--no-video", action="store_true", help="skip the annotated MP4")
    out.add_argument("--no-jsonl", action="store_true", help="skip the JSON Lines log")
    out.add_argument("--mot", action="store_true", help="write MOT-challenge CSV")
    out.add_argument("--save-txt", action="store_true",
                     help="YOLO-format labels per frame (Ultralytics' labels/ layout)")
    out.add_argument("--save-conf", action="store_true",
                     help="append each box's score to the --save-txt lines")
    out.add_argument("--hud", action=argparse.BooleanOptionalAction, default=True,
                     help="FPS/latency line burned into the annotated output")
    out.add_argument("--line-width", type=int, metavar="PX",
                     help="box line width (default: scaled with the frame)")
    out.add_argument("--font-scale", type=float, metavar="S",
                     help="label text scale (default: scaled with the frame)")
    out.add_argument("--codec", default="auto",
                     help="video encoder: auto (h264_nvenc on an NVIDIA GPU, else "
                          "libx264), libx264, h264_nvenc, mpeg4, libvpx-vp9, "
                          "libsvtav1 (default: auto; H.264 in fragmented MP4)")
    out.add_argument("--preset", default="ultrafast",
                     help="x264 preset (default ultrafast: least CPU; "
                          "superfast/veryfast write smaller files for more CPU)")
    out.add_argument("--segment-s", type=float, metavar="S",
                     help="write the MP4 and JSON Lines as OUT/SOURCE/SOURCE_"
                          "YYYYmmddTHHMMSSZ.mp4/.jsonl segments of S seconds "
                          "(default: one file each per source)")
    out.add_argument("--keep-days", type=float, metavar="DAYS",
                     help="with --segment-s: delete segments older than DAYS")
    out.add_argument("--keep-gb", type=float, metavar="GB",
                     help="with --segment-s: delete the oldest segments while a "
                          "source's total more than GB")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--log-level", default="INFO",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def rtsp_url(text: str) -> str:
    """``--rtsp-out``: an ``rtsp://`` or ``rtsps://`` URL (anything else would be
    taken for a file name by the writer); empty: no push."""
    if text and not text.lower().startswith(("rtsp://", "rtsps://")):
        raise argparse.ArgumentTypeError(
            f"expected rtsp://host:port/path, got {text!r}")
    return text


def add_live_args(p: argparse.ArgumentParser, serve_default: str = "") -> None:
    live = p.add_argument_group("live outputs")
    live.add_argument("--rtsp-out", metavar="URL", default="", type=rtsp_url,
                     help="also push the annotated stream as H.264 to this RTSP "
                          "server (rtsp://host:port/path; several sources: "
                          "path/SOURCE)")
    live.add_argument("--serve", metavar="HOST:PORT", nargs="?", const="127.0.0.1:8080",
                     default=serve_default,
                     help="live view in the browser: annotated streams, metrics and "
                          "/metrics for Prometheus (default bind 127.0.0.1:8080)")
    live.add_argument("--auth-token", metavar="TOKEN", default=None,
                     help="bearer token of the --serve server (better: the "
                          "STREAMDET_AUTH_TOKEN environment variable, which "
                          "process lists do not show); required beyond loopback")
    live.add_argument("--tls-cert", metavar="PEM", type=Path, default=None,
                     help="certificate for HTTPS on the --serve server")
    live.add_argument("--tls-key", metavar="PEM", type=Path, default=None,
                     help="private key of --tls-cert")


def serve_auth(args: argparse.Namespace) -> ServerAuth:
    """The --serve server's token (--auth-token, else STREAMDET_AUTH_TOKEN) and
    TLS files."""
    from pipeline.server_config import auth_from_env

    return auth_from_env(getattr(args, "auth_token", None),
                         getattr(args, "tls_cert", None),
                         getattr(args, "tls_key", None))


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """Every parser of the CLI: whole option names only (``--line 3`` must not
    quietly become ``--line-width 3``)."""
    return argparse.ArgumentParser(
        prog=prog, description=description, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)


def add_source_option(p: argparse.ArgumentParser, several: bool,
                      default: str | None = None) -> None:
    default = default or str(SAMPLE.relative_to(ROOT))
    if several:
        p.add_argument("--source", "-s", action="append", metavar="SRC",
                       help="video file, webcam index (0), rtsp/http URL, image "
                            "folder, glob, or a .txt list of these; repeat for "
                            f"several (default: {default})")
    else:
        p.add_argument("--source", "-s", metavar="SRC",
                       help="video file, webcam index, URL or image folder to "
                            f"measure on (default: {default})")


def add_run_args(p: argparse.ArgumentParser, serve_default: str = "") -> None:
    """What ``run`` and ``serve`` take besides ``--source``."""
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="camera configuration (YAML, docs/config.md): sources with "
                        "their lines, zones and clips, event targets and defaults; "
                        "instead of --source/--line/--zone and their options")
    add_source_args(p)
    add_model_args(p)
    add_pipeline_args(p)
    add_analytics_args(p)
    add_output_args(p)
    add_live_args(p, serve_default)
    p.add_argument("--show", action="store_true", help="display a window (q quits)")
    p.add_argument("--metrics", type=Path, metavar="FILE",
                   help="write the run's metrics as JSON (when it ends)")


def build_parser() -> argparse.ArgumentParser:
    """``streamdet [run]``: one pipeline over one or more sources."""
    p = new_parser("streamdet [run]", __doc__ or "")
    add_source_option(p, several=True)
    add_run_args(p)
    return p


def build_serve_parser() -> argparse.ArgumentParser:
    """``streamdet serve``: the live view over a pipeline that waits for sources."""
    p = new_parser(
        "streamdet serve",
        "Serve the live view (annotated streams, metrics, /metrics) over a pipeline "
        "that runs until stopped (Ctrl-C / SIGTERM), with the sources given (none "
        "by default). Takes the options of `streamdet run`; --serve defaults to "
        "127.0.0.1:8080.")
    add_source_option(p, several=True, default="none")
    add_run_args(p, serve_default="127.0.0.1:8080")
    return p


def build_benchmark_parser() -> argparse.ArgumentParser:
    p = new_parser(
        "streamdet benchmark",
        "Measure, on one source and one model in one process: the decode-only and "
        "inference-only ceilings, a plain single-threaded loop and the pipeline, "
        "side by side, with CPU time per stage. Takes the source, model, pipeline "
        "and output options of `streamdet run`.")
    add_source_option(p, several=False)
    add_source_args(p)
    add_model_args(p)
    add_pipeline_args(p)
    add_output_args(p)
    p.add_argument("--metrics", type=Path, metavar="FILE",
                   help="write the benchmark report as JSON")
    return p


def build_batch_parser() -> argparse.ArgumentParser:
    p = new_parser(
        "streamdet batch",
        "Process many video files, one pipeline per file, and write "
        "summary.csv / summary.json (file, status, frames read / "
        "processed / written, FPS, attempts). A file finished with the "
        "same model and settings is skipped on the next run unless "
        "--force; outputs appear when a file is complete.")
    p.add_argument("inputs", nargs="+",
                   help="video files, folders of videos, globs or .txt lists")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes on this machine (default 1)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run on a Ray cluster: 'auto', 'ray://host:port', or 'local' "
                        "to start one here")
    p.add_argument("--cpus-per-task", type=float, default=1.0,
                   help="CPUs each Ray task declares (default 1)")
    p.add_argument("--gpus-per-task", type=float, default=0.0,
                   help="GPUs each Ray task declares (default 0)")
    p.add_argument("--retries", type=int, default=3,
                   help="Ray: run a file again this many times when its worker or "
                        "node dies (a file that fails is not retried; default 3)")
    p.add_argument("--force", action="store_true", help="redo finished files")
    add_source_args(p)
    add_model_args(p)
    add_pipeline_args(p)
    add_output_args(p)
    return p


def pipeline_config(args: argparse.Namespace,
                    camera: CameraConfig | None = None) -> PipelineConfig:
    """Typed configs from the parsed arguments, built once here; with a
    ``camera`` file, its sources' lines and zones choose the tracker and its
    ``events:`` the event targets."""
    from pipeline.analytics.stage import choose_tracker
    from pipeline.config import PipelineConfig
    from pipeline.overlay import OverlayConfig
    from pipeline.sinks import EncoderConfig, OutputConfig
    from pipeline.sources import SourceConfig
    from pipeline.tracking import make_tracker, parse_tracker_params

    analytics = analytics_config(args)
    if camera is not None:
        if camera.analytics_enabled and (args.tracker or "").lower() == "none":
            raise InputError(f"tracker none cannot be used with the lines and zones "
                             f"of {args.config}: they count tracked objects")
        tracker = choose_tracker(args.tracker, next(
            (s.analytics for s in camera.sources if s.analytics.enabled), analytics))
    else:
        tracker = choose_tracker(args.tracker, analytics)
    tracker_params = (parse_tracker_params(tracker, args.tracker_param)
                      if args.tracker_param else {})
    # The tracker's config checks the values: a bad one fails here, not mid-run.
    make_tracker(tracker, **tracker_params)
    return PipelineConfig(
        batch=args.batch, max_wait_ms=args.max_wait_ms, queue_size=args.queue_size,
        tracker=tracker, analytics=analytics, detect_every=args.detect_every,
        flow_refine=args.detect_flow, tracker_params=tracker_params,
        sources=SourceConfig(timeout_s=args.timeout,
                             reconnect_attempts=args.reconnect,
                             realtime=args.realtime, stride=args.stride,
                             max_frames=args.max_frames,
                             rtsp_transport=args.rtsp_transport,
                             decode=args.decode),
        outputs=OutputConfig(out_dir=args.out, video=not args.no_video,
                             jsonl=not args.no_jsonl, mot=args.mot,
                             show=getattr(args, "show", False), txt=args.save_txt,
                             txt_conf=args.save_conf,
                             encoder=EncoderConfig(codec=args.codec,
                                                   preset=args.preset),
                             rtsp_out=getattr(args, "rtsp_out", ""),
                             serve=getattr(args, "serve", ""),
                             record=record_config(args),
                             serve_auth=serve_auth(args)),
        overlay=OverlayConfig(hud=args.hud, line_width=args.line_width,
                              font_scale=args.font_scale),
        events=(events_config(args, analytics) if camera is None
                else camera_events(args, camera)),
        clips=clip_config(args) if camera is None else camera_clips(args, camera),
        progress=not args.no_progress)


def record_config(args: argparse.Namespace) -> RecordConfig | None:
    """``--segment-s`` and its retention (None: no rotation); a camera file's
    ``record:`` applies to its source instead."""
    from pipeline.sinks import RecordConfig

    if args.segment_s is None:
        for flag in ("keep_days", "keep_gb"):
            if getattr(args, flag) is not None:
                raise InputError(f"--{flag.replace('_', '-')} needs --segment-s")
        return None
    return RecordConfig(args.segment_s, args.keep_days, args.keep_gb)


CLIP_OPTIONS = {"clip_pre": "pre_s", "clip_post": "post_s", "clip_max_s": "max_s",
                "clip_max_mb": "max_mb"}


def clip_config(args: argparse.Namespace) -> ClipConfig:
    """``--clip-on`` and its options (commands without them get no clips); an
    option without ``--clip-on`` is an error rather than quietly unused."""
    from pipeline.clips import ClipConfig

    if not hasattr(args, "clip_on"):
        return ClipConfig()
    given = {field: getattr(args, name) for name, field in CLIP_OPTIONS.items()
             if getattr(args, name) is not None}
    if given and not args.clip_on:
        flag = "--" + next(n for n, f in CLIP_OPTIONS.items()
                           if f in given).replace("_", "-")
        raise InputError(f"{flag} needs --clip-on EVENT[,EVENT]")
    clips = ClipConfig(on=args.clip_on or (), **given)
    if clips.enabled and not (args.line or args.zone):
        raise InputError(f"--clip-on {','.join(clips.on)} needs the events of "
                         "--line or --zone")
    return clips


def camera_clips(args: argparse.Namespace, camera: CameraConfig) -> ClipConfig:
    """The camera file's ``clips:``. One clip setting serves a whole run, so
    the sources that set it must agree; the flags cannot add to the file."""
    from pipeline.clips import ClipConfig

    if getattr(args, "clip_on", None) or any(
            getattr(args, name, None) is not None for name in CLIP_OPTIONS):
        raise InputError(f"--clip-* options cannot be used with --config "
                         f"{args.config}: set clips: there")
    settings = {s.clips for s in camera.sources if s.clips is not None}
    if len(settings) > 1:
        raise InputError(f"{args.config}: sources set different clips: settings; "
                         "a run records clips one way for every source")
    return settings.pop() if settings else ClipConfig()


def events_config(args: argparse.Namespace, analytics: AnalyticsConfig
                  ) -> EventsConfig:
    """``--webhook`` / ``--mqtt``; the webhook's secret comes from the
    environment, so it stays off the command line (and out of ``ps``)."""
    from pipeline.events import EventsConfig

    webhook, mqtt = getattr(args, "webhook", ""), getattr(args, "mqtt", "")
    if (webhook or mqtt) and not analytics.enabled:
        raise InputError("--webhook and --mqtt send line and zone events: "
                         "add --line or --zone")
    secret = os.environ.get(WEBHOOK_SECRET_ENV, "") if webhook else ""
    return EventsConfig(webhook=webhook, webhook_secret=secret, mqtt=mqtt)


def camera_events(args: argparse.Namespace, camera: CameraConfig) -> EventsConfig:
    """A camera file's ``events:``, which need lines or zones to send."""
    events = camera.events
    if (events.webhook or events.mqtt) and not camera.analytics_enabled:
        raise InputError(f"{args.config}: events: sends line and zone events, but "
                         "no source has lines or zones")
    return events


def analytics_config(args: argparse.Namespace) -> AnalyticsConfig:
    """Lines and zones from ``--line``/``--zone`` and their options (commands
    without them get none)."""
    from pipeline.analytics.stage import AnalyticsConfig

    if not hasattr(args, "line"):
        return AnalyticsConfig()
    return AnalyticsConfig.of(
        args.line, args.zone, anchor=args.anchor, zone_inertia=args.zone_inertia,
        loiter_s=args.loiter, line_classes=args.line_classes,
        zone_classes=args.zone_classes)


def detector_options(args: argparse.Namespace) -> dict[str, Any]:
    """The common detector contract (``engines.build.DetectorOptions``): unset
    options stay None, so each family keeps its own defaults."""
    return {"conf": args.conf, "iou": args.iou, "max_det": args.max_det,
            "classes": args.classes, "threads": args.threads, "device": args.device,
            "backend": args.backend, "imgsz": args.imgsz}


def install_signal_handlers(on_stop: Any) -> dict[int, int]:
    """First SIGINT/SIGTERM: stop cleanly. Second: exit at once."""
    received: dict[int, int] = {}

    def handle(signum: int, _frame: FrameType | None) -> None:
        received[signum] = received.get(signum, 0) + 1
        if sum(received.values()) > 1:
            os._exit(128 + signum)
        log.warning(
            "%s received: stopping (again to force)", signal.Signals(signum).name
        )
        on_stop()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return received


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def typed_configs(
    args: argparse.Namespace, camera: CameraConfig | None = None,
) -> tuple[PipelineConfig, DetectorOptions]:
    """The pipeline and detector configs of a run or benchmark, checked once
    (``camera``: a camera file's, whose sources carry their own analytics)."""
    from engines.build import DetectorOptions

    if args.metrics is not None and not args.metrics.parent.is_dir():
        raise InputError(f"--metrics {args.metrics}: folder "
                         f"{args.metrics.parent} does not exist")
    try:
        return (pipeline_config(args, camera),
                DetectorOptions(**detector_options(args)))
    except ValueError as exc:  # an option value out of range: the user's to fix
        raise InputError(str(exc)) from exc


def open_detector(args: argparse.Namespace, options: DetectorOptions) -> Detector:
    """The model, loaded and checked before any source opens. Loading is where
    the model file and the options meet, so a ``ValueError`` here names the file
    or an option that does not fit it: bad input, as a ``ModelError`` is."""
    from engines.build import load_detector

    try:
        return load_detector(args.model, options, family=args.family)
    except (ValueError, FileNotFoundError) as exc:
        raise InputError(str(exc)) from exc


def run_main(argv: list[str]) -> int:
    """``streamdet [run] ...``: one pipeline over one or more sources."""
    parser = build_parser()
    if "--benchmark" in argv:
        parser.error("--benchmark is now a command: streamdet benchmark [OPTIONS]")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    from pipeline.sources import expand_sources

    camera = camera_config(args, argv, build_parser)
    if camera is not None:
        return run_pipeline(args, list(camera.sources), keep_alive=False,
                            camera=camera)
    specs = expand_sources(args.source or [str(SAMPLE)])
    if not specs:
        raise InputError(f"--source {' '.join(args.source)}: lists no source")
    return run_pipeline(args, specs, keep_alive=False)


def serve_main(argv: list[str]) -> int:
    """``streamdet serve ...``: the live view, with the sources given (none by
    default), running until stopped; sources join and leave through the API."""
    args = build_serve_parser().parse_args(argv)
    setup_logging(args.log_level)
    from pipeline.sources import expand_sources

    camera = camera_config(args, argv, build_serve_parser)
    if camera is not None:
        return run_pipeline(args, list(camera.sources), keep_alive=True,
                            camera=camera)
    return run_pipeline(args, expand_sources(args.source or []), keep_alive=True)


# Options a camera file replaces: the one-source shorthand (an error next to
# --config, naming the file's key instead) ...
SHORTHAND_KEYS = {
    "source": "sources[].url", "line": "sources[].lines",
    "zone": "sources[].zones", "anchor": "defaults.anchor",
    "zone_inertia": "defaults.inertia", "loiter": "defaults.loiter_s",
    "line_classes": "sources[].lines[].classes",
    "zone_classes": "sources[].zones[].classes",
    "webhook": "events.webhook", "mqtt": "events.mqtt",
}
# ... and the run-wide settings of defaults:, which a flag may give when the
# file does not (both is an error: one place for each setting).
DEFAULT_KEYS = ("model", "device", "tracker", "conf", "iou", "classes")


def given_options(build: Callable[[], argparse.ArgumentParser],
                  argv: list[str]) -> set[str]:
    """The destinations of the options written in ``argv`` (a default is not
    written: a fresh parser without defaults tells them apart)."""
    parser = build()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def camera_config(args: argparse.Namespace, argv: list[str],
                  build: Callable[[], argparse.ArgumentParser]
                  ) -> CameraConfig | None:
    """``--config FILE`` read and checked (None without it), its ``defaults:``
    put in ``args`` where the command line leaves them out."""
    from pipeline.camconfig import load_camera_config

    if args.config is None:
        return None
    given = given_options(build, argv)
    for dest, where in SHORTHAND_KEYS.items():
        if dest in given:
            flag = "--" + dest.replace("_", "-")
            raise InputError(f"{flag} cannot be used with --config: the file "
                             f"gives it ({where})")
    camera = load_camera_config(args.config)
    for dest in DEFAULT_KEYS:
        value = getattr(camera.defaults, dest)
        if value is None:
            continue
        if dest in given:
            raise InputError(f"--{dest} and defaults.{dest} in {args.config} both "
                             "set it; keep one")
        setattr(args, dest, value)
    log.info("%s: %d source(s): %s", args.config, len(camera.sources),
             ", ".join(s.name for s in camera.sources))
    return camera


def run_pipeline(args: argparse.Namespace, specs: list[str] | list[SourceEntry],
                 keep_alive: bool, camera: CameraConfig | None = None) -> int:
    """Build and run one pipeline until its sources end (or, ``keep_alive``,
    until Ctrl-C / SIGTERM); print its table and write ``--metrics``."""
    from pipeline.build import build_pipeline
    from pipeline.runner import PipelineError

    stop_requested: list[bool] = []
    pipeline = None

    def stop() -> None:
        stop_requested.append(True)
        if pipeline is not None:
            pipeline.request_stop()

    received = install_signal_handlers(stop)
    config, options = typed_configs(args, camera)
    with open_detector(args, options) as detector:
        try:
            pipeline = build_pipeline(specs, detector, config, keep_alive=keep_alive)
        except ValueError as exc:  # e.g. a --line-classes name the model lacks
            raise InputError(str(exc)) from exc
        if stop_requested:
            pipeline.request_stop()
        try:
            metrics = pipeline.run()
        except PipelineError as exc:
            print(pipeline.metrics.table(), file=sys.stderr)
            if isinstance(exc.__cause__, InputError):
                raise InputError(str(exc)) from exc
            raise
    print(metrics.table())
    if args.metrics:
        metrics.write_json(args.metrics)
    if received:
        return 128 + next(iter(received))
    failed = [s for s, c in metrics.sources.items() if c.status == "failed"]
    return 1 if failed else 0


def benchmark_main(argv: list[str]) -> int:
    """``streamdet benchmark ...``: ceilings, plain loop and pipeline side by side."""
    args = build_benchmark_parser().parse_args(argv)
    setup_logging(args.log_level)
    from pipeline.benchmark import format_report, run_benchmark
    from pipeline.sources import expand_sources

    config, options = typed_configs(args)
    specs = expand_sources([args.source or str(SAMPLE)])
    if len(specs) > 1:
        log.info("benchmark: measuring %s, the first of %d sources", specs[0],
                 len(specs))
    with open_detector(args, options) as detector:
        report = run_benchmark(specs[0], detector, config)
    print(format_report(report))
    if args.metrics:
        args.metrics.write_text(json.dumps(report, indent=2))
    return 0


def batch_main(argv: list[str]) -> int:
    """``streamdet batch ...``: many files, N workers or Ray, one summary."""
    args = build_batch_parser().parse_args(argv)
    setup_logging(args.log_level)
    from pipeline.batch import BatchJob, default_threads, run_batch, summary_table

    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    try:
        job = BatchJob(
            detector={"model": args.model, "family": args.family,
                      **detector_options(args),
                      "threads": args.threads or default_threads(args.workers)},
            pipeline=pipeline_config(args), force=args.force)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    try:
        reports = run_batch(args.inputs, job, workers=args.workers,
                            ray_address=args.ray, cpus_per_task=args.cpus_per_task,
                            gpus_per_task=args.gpus_per_task,
                            progress=not args.no_progress, retries=args.retries)
    except KeyboardInterrupt:
        log.warning("interrupted; files finished so far are recorded as done")
        return 130
    print(summary_table(reports))
    print(f"summary: {args.out / 'summary.csv'}")
    return 1 if any(r.status == "failed" for r in reports) else 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "run": run_main,
    "batch": batch_main,
    "benchmark": benchmark_main,
    "serve": serve_main,
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command (``run`` when the first word is not one) and turn
    what escapes it into the exit status: bad input 2 with one line, anything
    else 1 with its traceback."""
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv[:1] and argv[0] in COMMANDS else "run"
    if argv[:1] == [command]:
        argv = argv[1:]
    try:
        return COMMANDS[command](argv)
    except InputError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130
    except Exception as exc:
        log.critical("internal error, not caused by the input (please report "
                     "it): %s: %s", type(exc).__name__, exc, exc_info=exc)
        return 1


def exit_now(code: int) -> None:
    """Exit without interpreter finalisation: after a stop, a daemon thread may
    still be inside a native call (a blocking read, a model run), and tearing the
    interpreter down under it can abort the process. Every output is already
    closed by now; only the standard streams need flushing."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def cli() -> None:
    """The ``streamdet`` command installed by ``pip install .``: ``main`` as a
    process, exiting without interpreter finalisation (see ``exit_now``)."""
    exit_now(main())


if __name__ == "__main__":
    cli()
