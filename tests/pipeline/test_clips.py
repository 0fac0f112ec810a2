"""Clips on events: cut from the encoder's packets with pre-roll, extended while
events come, playable when cut short, the folder kept under its size, the
paths carried by the events, and the flags checked."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from core.events import Event
from pipeline.analytics.stage import AnalyticsConfig
from pipeline.build import build_pipeline
from pipeline.clips import ClipConfig, ClipRecorder, ClipStore
from pipeline.config import PipelineConfig
from pipeline.sinks import EncoderConfig, OutputConfig
from pipeline.sources import FrameSource, SourceConfig
from pipeline.video_writer import nvenc_available
from tests.conftest import StubDetector
from tests.pipeline.test_analytics_stage import BlobDetector

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT, FPS = 160, 96, 10.0
GOP_S = 1.0  # the writer's keyframe interval
LINE = "0.5,0,0.5,1:door"


def object_x(i: int, period: int) -> int:
    """Left edge of a 16 px square going right and back across the frame every
    ``period`` frames: it crosses the middle line twice per period."""
    phase = i % period
    half = period // 2
    step = (WIDTH - 24) / half
    return int(4 + step * (phase if phase < half else period - phase))


def scene(frames: int, period: int = 60) -> list[tuple[np.ndarray, float]]:
    out = []
    for i in range(frames):
        image = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
        x = object_x(i, period)
        image[40:56, x:x + 16] = (0, 220, 255)
        # A bar along the bottom, one column longer per frame: which frame a
        # clip starts with is read off its first image (red stays low: no blob).
        image[-8:, :int(WIDTH * i / frames) + 1] = (200, 120, 0)
        out.append((image, i / FPS))
    return out


def run(tmp_path: Path, clips: ClipConfig, frames: int = 120, period: int = 60,
        video: bool = True, codec: str = "libx264") -> None:
    cfg = PipelineConfig(
        analytics=AnalyticsConfig.of([LINE]), clips=clips, progress=False,
        outputs=OutputConfig(out_dir=tmp_path, video=video, jsonl=True,
                             encoder=EncoderConfig(codec=codec, gop_s=GOP_S)))
    source = FrameSource(scene(frames, period), name="cam", fps=FPS,
                         config=SourceConfig())
    build_pipeline([source], BlobDetector(), cfg).run()


def events(tmp_path: Path) -> list[Event]:
    lines = (tmp_path / "cam.events.jsonl").read_text().splitlines()
    return [Event.from_dict(json.loads(line)) for line in lines]


def frame_times(path: Path) -> list[float]:
    """Times of the frames that decode, up to the first broken packet (where a
    kill cut the file, a player stops as well)."""
    times = []
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            try:
                times += [float(f.time) for f in packet.decode()]
            except av.error.InvalidDataError:
                break
    return times


def first_frame_index(path: Path, frames: int) -> float:
    """Source index of a clip's first frame, read from the bar that ``scene``
    draws along the bottom (``WIDTH * i / frames`` + 1 columns from the left;
    the first gap ends it, so a line drawn across it further right is no bar)."""
    with av.open(str(path)) as container:
        image = next(container.decode(video=0)).to_ndarray(format="bgr24")
    bar = (image[-6:-2, :, 0] > 120).all(axis=0)
    columns = int(np.argmin(bar)) if not bar.all() else len(bar)
    return (columns - 1) * frames / WIDTH


NVENC_MARKS = [pytest.mark.gpu, pytest.mark.skipif(
    not nvenc_available(), reason="no NVIDIA GPU encoder (h264_nvenc)")]


@pytest.mark.parametrize("pre, codec", [(2.0, "libx264"), (0.5, "libx264"),
                                        pytest.param(2.0, "h264_nvenc",
                                                     marks=NVENC_MARKS)])
def test_a_crossing_gets_a_clip_with_pre_roll_and_post(tmp_path: Path,
                                                       pre: float, codec: str) -> None:
    # One crossing at ~2.9 s, keyframes every second: pre 2 s starts at 0 s,
    # pre 0.5 s at 2 s.
    run(tmp_path, ClipConfig(on=("line_cross",), pre_s=pre, post_s=1.5),
        frames=55, period=110, codec=codec)
    [event] = [e for e in events(tmp_path) if e.event == "line_cross"]
    assert event.clip and event.snapshot
    clip, snapshot = Path(event.clip), Path(event.snapshot)
    assert clip.parent == tmp_path / "clips" and clip.suffix == ".mp4"
    assert clip.name.startswith("cam_") and clip.name.endswith("_line_cross.mp4")
    assert snapshot.exists() and snapshot.with_suffix(".mp4") == clip
    assert snapshot.read_bytes()[:2] == b"\xff\xd8"
    times = frame_times(clip)
    assert times[0] == pytest.approx(0.0)  # the clip's own clock
    # The first frame is within pre + one keyframe interval before the event,
    # and not after pre before it (there was a keyframe there); one frame of
    # slack for reading the bar off a compressed frame.
    first = first_frame_index(clip, 55) / FPS
    t = event.timestamp
    assert t - pre - GOP_S - 0.1 <= first <= t - pre + 0.1
    # It runs to post after the event.
    assert first + times[-1] >= t + 1.5 - 0.1
    # The main recording is whole beside it.
    assert len(frame_times(tmp_path / "cam.mp4")) == 55


def test_events_during_a_clip_extend_it_up_to_max_then_a_new_one(
        tmp_path: Path) -> None:
    # Crossings every ~1.5 s for 12 s: one clip per max_s = 4 s.
    run(tmp_path, ClipConfig(on=("line_cross",), pre_s=1.0, post_s=2.0, max_s=4.0),
        frames=120, period=30)
    crossings = [e for e in events(tmp_path) if e.event == "line_cross"]
    assert len(crossings) >= 6
    clips = sorted({e.clip for e in crossings})
    assert 2 <= len(clips) < len(crossings)  # extended, and split at max_s
    for path in clips:
        duration = frame_times(Path(path))[-1]
        assert duration <= 4.0 + GOP_S + 1e-6
    # Each event has its own snapshot.
    assert len({e.snapshot for e in crossings}) == len(crossings)
    assert all(Path(e.snapshot).exists() for e in crossings)


def test_no_video_writes_no_main_mp4_but_clips(tmp_path: Path) -> None:
    run(tmp_path, ClipConfig(on=("line_cross",), pre_s=1.0, post_s=1.0),
        frames=50, period=100, video=False)
    assert not (tmp_path / "cam.mp4").exists()
    [event] = [e for e in events(tmp_path) if e.event == "line_cross"]
    assert len(frame_times(Path(event.clip))) >= 20


def test_events_of_other_kinds_get_no_clip(tmp_path: Path) -> None:
    run(tmp_path, ClipConfig(on=("zone_enter",)), frames=50, period=100)
    [event] = [e for e in events(tmp_path) if e.event == "line_cross"]
    assert event.clip is None and event.snapshot is None
    assert not list((tmp_path / "clips").iterdir())


def test_max_mb_deletes_the_oldest(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    for i, size in enumerate([400_000, 400_000, 400_000]):
        path = folder / f"old_{i}.mp4"
        path.write_bytes(b"\0" * size)
        t = time.time() - 100 + i
        os.utime(path, (t, t))
    store = ClipStore.open(folder, max_mb=1.0)
    store.opened(folder / "old_0.mp4")  # an open clip is never deleted
    store.prune()
    assert sorted(p.name for p in folder.iterdir()) == ["old_0.mp4", "old_2.mp4"]
    store.closed(folder / "old_0.mp4")
    assert sorted(p.name for p in folder.iterdir()) == ["old_0.mp4", "old_2.mp4"]
    (folder / "new.jpg").write_bytes(b"\0" * 300_000)
    store.prune()
    assert sorted(p.name for p in folder.iterdir()) == ["new.jpg", "old_2.mp4"]


def test_max_mb_in_a_run_keeps_the_folder_small(tmp_path: Path) -> None:
    run(tmp_path, ClipConfig(on=("line_cross",), pre_s=1.0, post_s=0.5,
                             max_s=2.0, max_mb=0.05),
        frames=120, period=30)
    crossings = [e for e in events(tmp_path) if e.event == "line_cross"]
    left = list((tmp_path / "clips").iterdir())
    made = {e.clip for e in crossings} | {e.snapshot for e in crossings}
    assert 0 < len(left) < len(made)
    assert sum(p.stat().st_size for p in left) <= 0.05 * 1024 * 1024 + max(
        p.stat().st_size for p in left)


def test_a_clip_cut_mid_file_still_decodes(tmp_path: Path) -> None:
    run(tmp_path, ClipConfig(on=("line_cross",), pre_s=2.0, post_s=3.0),
        frames=70, period=140)
    [event] = [e for e in events(tmp_path) if e.event == "line_cross"]
    data = Path(event.clip).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])  # what a kill mid-clip leaves
    whole, partial = frame_times(Path(event.clip)), frame_times(cut)
    assert len(whole) > len(partial) >= 10
    assert partial == whole[: len(partial)]


KILL_SCRIPT = """
import sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, {root!r})
from pipeline.analytics.stage import AnalyticsConfig
from pipeline.build import build_pipeline
from pipeline.clips import ClipConfig
from pipeline.config import PipelineConfig
from pipeline.sinks import EncoderConfig, OutputConfig
from pipeline.sources import FrameSource, SourceConfig
from pipeline.video_writer import nvenc_available
from tests.pipeline.test_analytics_stage import BlobDetector
from tests.pipeline.test_clips import scene

class Slow(BlobDetector):
    def box(self, image):
        time.sleep(0.05)
        return super().box(image)

# The crossing at ~3 s, then noise (large packets) for a minute: killed mid-clip.
rng = np.random.default_rng(0)
frames = scene(60, 120) + [(rng.integers(0, 60, (96, 160, 3), np.uint8),
                            6.0 + i / 10) for i in range(1200)]
cfg = PipelineConfig(analytics=AnalyticsConfig.of(["0.5,0,0.5,1:door"]),
                     clips=ClipConfig(on=("line_cross",), pre_s=1.0, post_s=600.0,
                                      max_s=900.0),
                     progress=False,
                     outputs=OutputConfig(out_dir=Path({out!r}), video=False,
                                          encoder=EncoderConfig(codec="libx264")))
build_pipeline([FrameSource(frames, name="cam", fps=10.0, config=SourceConfig())],
               Slow(), cfg).run()
"""


def test_a_clip_decodes_after_sigkill(tmp_path: Path) -> None:
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(root=str(ROOT), out=str(tmp_path)))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        clips: list[Path] = []
        while time.monotonic() < deadline:
            clips = list((tmp_path / "clips").glob("*.mp4"))
            if clips and clips[0].stat().st_size > 20_000:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        assert clips, "no clip started"
        assert proc.poll() is None  # still writing: the kill comes mid-clip
    finally:
        proc.kill()
        proc.wait()
    [event] = [e for e in events(tmp_path) if e.event == "line_cross"]
    assert Path(event.clip) == clips[0]
    assert len(frame_times(clips[0])) >= 20


def test_the_recorder_plans_paths_before_frames_arrive(tmp_path: Path) -> None:
    store = ClipStore.open(tmp_path)
    recorder = ClipRecorder(ClipConfig(on=("loiter",), pre_s=1, post_s=2, max_s=5),
                            "cam", store)
    def loiter(t: float, track: int) -> Event:
        return Event(event="loiter", source="cam", frame=int(t * 10), timestamp=t,
                     zone="desk", track_id=track, dwell_s=1.0, wall_time=1e9)
    a, b, c = (recorder.plan(loiter(t, n)) for n, t in enumerate([3.0, 4.5, 9.0]))
    assert a.clip == b.clip != c.clip  # b within post of a; c after the clip
    assert len({a.snapshot, b.snapshot, c.snapshot}) == 3  # one instant, apart
    assert Path(a.clip).name == "cam_20010909T014640.000Z_loiter.mp4"
    other = recorder.plan(Event(event="zone_enter", zone="desk", timestamp=1.0))
    assert other.clip is None


@pytest.mark.parametrize("kwargs, message", [
    ({"on": ("crossing",)}, "--clip-on 'crossing'"),
    ({"on": ("loiter",), "pre_s": -1.0}, "--clip-pre"),
    ({"on": ("loiter",), "post_s": float("nan")}, "--clip-post"),
    ({"on": ("loiter",), "max_s": 3.0, "pre_s": 5.0}, "--clip-max-s"),
    ({"on": ("loiter",), "max_mb": 0.0}, "--clip-max-mb"),
])
def test_bad_clip_config_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClipConfig(**kwargs)


def test_clip_events_given_as_text_are_split() -> None:
    assert ClipConfig(on="loiter, line_cross,loiter").on == ("loiter", "line_cross")
    assert not ClipConfig(on="").enabled


def test_clips_need_lines_or_zones(small_video) -> None:
    """Checked where the sources' own lines and zones are known too."""
    config = PipelineConfig(clips=ClipConfig(on=("loiter",)), progress=False)
    with pytest.raises(ValueError, match="--clip-on loiter needs"):
        build_pipeline([str(small_video)], StubDetector(), config)


@pytest.mark.parametrize("argv, message", [
    (["--clip-on", "line_cross"], "--clip-on line_cross needs"),
    (["--line", LINE, "--clip-on", "bogus"], "--clip-on 'bogus'"),
    (["--line", LINE, "--clip-on", "line_cross", "--clip-pre", "-2"], "--clip-pre"),
    (["--line", LINE, "--clip-on", "line_cross", "--clip-max-mb", "-1"],
     "--clip-max-mb"),
    (["--line", LINE, "--clip-pre", "3"], "--clip-pre needs --clip-on"),
])
def test_bad_clip_flags_exit_2_in_one_line(argv: list[str], message: str,
                                           tmp_path: Path, caplog) -> None:
    import run_stream

    with caplog.at_level(logging.ERROR):
        code = run_stream.main(["--out", str(tmp_path), "--max-frames", "1", *argv])
    assert code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]


def test_the_python_api_takes_clips_and_callbacks_get_the_paths(
        tmp_path: Path) -> None:
    import streamdet

    got: list[Event] = []
    source = FrameSource(scene(50, 100), name="cam", fps=FPS, config=SourceConfig())
    with streamdet.open_pipeline(
            source, BlobDetector(), lines=[LINE], on_event=got.append,
            clips=streamdet.ClipConfig(on=("line_cross",), pre_s=1.0, post_s=1.0),
            outputs=OutputConfig(out_dir=tmp_path, video=False,
                                 jsonl=False)) as pipe:
        pipe.run()
    [event] = [e for e in got if e.event == "line_cross"]
    assert event.clip and Path(event.clip).exists()
    assert event.snapshot and Path(event.snapshot).exists()
    assert not (tmp_path / "cam.mp4").exists()


def test_clip_flags_become_the_typed_config() -> None:
    import run_stream

    args = run_stream.build_parser().parse_args(
        ["--line", LINE, "--clip-on", "line_cross, loiter", "--clip-pre", "2",
         "--clip-post", "3", "--clip-max-s", "30", "--clip-max-mb", "50"])
    config, _ = run_stream.typed_configs(args)
    assert config.clips == ClipConfig(on=("line_cross", "loiter"), pre_s=2.0,
                                      post_s=3.0, max_s=30.0, max_mb=50.0)
    args = run_stream.build_parser().parse_args(["--line", LINE])
    assert not run_stream.typed_configs(args)[0].clips.enabled
