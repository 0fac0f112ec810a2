"""Recordings that rotate: segments named by start time, each playable (after a
kill too), JSON Lines split with them, the oldest deleted by the retention rule."""

from __future__ import annotations

import calendar
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV (av) not installed: pip install av")

from pipeline.build import build_pipeline  # noqa: E402
from pipeline.camconfig import ConfigError, parse_source_entry  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.recording import apply_retention, segment_stem, segments  # noqa: E402
from pipeline.sinks import EncoderConfig, OutputConfig, RecordConfig  # noqa: E402
from pipeline.sources import FrameSource, SourceConfig  # noqa: E402
from run_stream import main  # noqa: E402
from tests.conftest import ROOT, StubDetector, write_video  # noqa: E402

FPS = 10.0
NAME = re.compile(r"cam_\d{8}T\d{6}Z\.mp4")


def moving(n: int, start: float = 0.0) -> list[tuple[np.ndarray, float]]:
    out = []
    for i in range(n):
        image = np.full((96, 128, 3), 30, np.uint8)
        x = (i * 3) % 100
        image[20:40, x: x + 20] = (0, 200, 255)
        out.append((image, start + i / FPS))
    return out


def decoded(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def record(tmp_path: Path, frames: list, config: RecordConfig) -> Path:
    cfg = PipelineConfig(progress=False, outputs=OutputConfig(
        out_dir=tmp_path, record=config, encoder=EncoderConfig(codec="libx264")))
    source = FrameSource(frames, name="cam", fps=FPS, config=SourceConfig())
    build_pipeline([source], StubDetector(), cfg).run()
    return tmp_path / "cam"


def test_six_seconds_in_two_second_segments(tmp_path: Path) -> None:
    folder = record(tmp_path, moving(60), RecordConfig(segment_s=2.0))
    found = segments(folder, "cam")
    assert len(found) == 3 and all(NAME.fullmatch(p.name) for p in found)
    assert not (tmp_path / "cam.mp4").exists()  # no unrotated file beside them
    counts = [decoded(p) for p in found]
    assert counts == [20, 20, 20]
    # The names are 2 s apart, as the segments' start times are.
    stamps = [calendar.timegm(time.strptime(p.stem[4:], "%Y%m%dT%H%M%SZ"))
              for p in found]
    assert [b - a for a, b in itertools.pairwise(stamps)] == [2, 2]
    # Each segment's JSON Lines hold exactly its frames, in order.
    frames_seen: list[int] = []
    for path, count in zip(found, counts, strict=True):
        lines = path.with_suffix(".jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert len(records) == count
        frames_seen += [r["frame"] for r in records]
    assert frames_seen == list(range(60))


def test_keep_gb_deletes_the_oldest_and_keeps_the_newest(tmp_path: Path) -> None:
    folder = record(tmp_path, moving(60), RecordConfig(segment_s=2.0, keep_gb=1e-9))
    [kept] = segments(folder, "cam")
    assert decoded(kept) == 20
    assert kept.with_suffix(".jsonl").exists()
    assert sorted(p.suffix for p in folder.iterdir()) == [".jsonl", ".mp4"]


def test_keep_days_deletes_only_segments_older_than_that(tmp_path: Path) -> None:
    now = 1_900_000_000.0
    names = [segment_stem("cam", now - age) for age in (3 * 86400, 86400, 60)]
    for stem in names:
        for suffix in (".mp4", ".jsonl"):
            (tmp_path / f"{stem}{suffix}").write_bytes(b"x")
    for stem, age in zip(names, (3 * 86400, 86400, 60), strict=True):
        os.utime(tmp_path / f"{stem}.mp4", (now - age, now - age))
    (tmp_path / "other_20000101T000000Z.mp4").write_bytes(b"x")  # not cam's
    (tmp_path / "cam_2_20000101T000000Z.mp4").write_bytes(b"x")  # nor this
    deleted = apply_retention(tmp_path, "cam", RecordConfig(2.0, keep_days=2.0),
                              now=now)
    assert [p.stem for p in deleted] == names[:1]
    assert [p.stem for p in segments(tmp_path, "cam")] == names[1:]
    assert not (tmp_path / f"{names[0]}.jsonl").exists()
    assert (tmp_path / "other_20000101T000000Z.mp4").exists()
    assert (tmp_path / "cam_2_20000101T000000Z.mp4").exists()
    # The open segment is never deleted, however old.
    deleted = apply_retention(tmp_path, "cam", RecordConfig(2.0, keep_days=0.5),
                              keep=tmp_path / f"{names[1]}.mp4", now=now)
    assert deleted == []


KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.sinks import EncoderConfig, OutputConfig, RecordConfig
from pipeline.sources import FrameSource, SourceConfig
from tests.pipeline.test_recording import moving
from tests.conftest import StubDetector

def paced():
    for item in moving(100000):
        time.sleep(0.1)
        yield item

cfg = PipelineConfig(progress=False, outputs=OutputConfig(
    out_dir=Path({out!r}), record=RecordConfig(segment_s=2.0),
    encoder=EncoderConfig(codec="libx264")))
build_pipeline([FrameSource(paced(), name="cam", fps=10.0, config=SourceConfig())],
               StubDetector(), cfg).run()
"""


def test_sigkill_mid_segment_leaves_every_segment_playable(tmp_path: Path) -> None:
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(root=str(ROOT), out=str(tmp_path)))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = tmp_path / "cam"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = segments(folder, "cam") if folder.exists() else []
            # two closed segments, the third a second and a half in (its JSON
            # Lines file opens just after its video file)
            log = found[2].with_suffix(".jsonl") if len(found) == 3 else None
            if log is not None and log.exists() and len(
                    log.read_text().splitlines()) >= 15:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.1)
        assert proc.poll() is None  # still writing: the kill comes mid-segment
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -9
    found = segments(folder, "cam")
    assert len(found) == 3
    assert [decoded(p) for p in found[:2]] == [20, 20]
    assert decoded(found[2]) >= 10  # up to its last complete 1-second fragment


@pytest.mark.parametrize("kwargs, message", [
    ({"segment_s": 0.5}, "segment_s must be >= 1"),
    ({"segment_s": float("nan")}, "segment_s must be"),
    ({"segment_s": 60, "keep_gb": 0.0}, "keep_gb must be > 0"),
    ({"segment_s": 60, "keep_gb": 1.0, "keep_days": 1.0}, "not both"),
])
def test_bad_record_config_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RecordConfig(**kwargs)


def test_the_camera_file_record_section(tmp_path: Path) -> None:
    entry = parse_source_entry({"name": "cam", "url": "rtsp://h/s",
                                "record": {"segment_s": 20, "keep_gb": 5}})
    assert entry.record == RecordConfig(segment_s=20.0, keep_gb=5.0)
    with pytest.raises(ConfigError, match=r"^source\.record: give keep_days or "):
        parse_source_entry({"name": "cam", "url": "rtsp://h/s", "record": {
            "segment_s": 20, "keep_gb": 5, "keep_days": 1}})
    with pytest.raises(ConfigError, match=r"^source\.record: segment_s must be"):
        parse_source_entry({"name": "cam", "url": "rtsp://h/s",
                            "record": {"segment_s": 0.2}})


def test_a_camera_file_record_rotates_its_source_only(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", frames=45, size=(128, 96), fps=FPS)
    entry = parse_source_entry({"name": "cam", "url": str(clip),
                                "record": {"segment_s": 2}})
    out = tmp_path / "out"
    cfg = PipelineConfig(progress=False, outputs=OutputConfig(
        out_dir=out, encoder=EncoderConfig(codec="libx264")))
    build_pipeline([entry, str(clip)], StubDetector(), cfg).run()
    assert [decoded(p) for p in segments(out / "cam", "cam")] == [20, 20, 5]
    assert decoded(out / "clip.mp4") == 45  # the other source: one file
    assert len((out / "clip.jsonl").read_text().splitlines()) == 45


@pytest.mark.parametrize("argv, message", [
    (["--keep-gb", "1"], "--keep-gb needs --segment-s"),
    (["--segment-s", "0"], "segment_s must be >= 1"),
    (["--segment-s", "10", "--keep-gb", "1", "--keep-days", "2"], "not both"),
])
def test_bad_record_flags_exit_2(argv: list[str], message: str, caplog,
                                 tmp_path: Path) -> None:
    code = main(["--source", str(tmp_path / "none.mp4"), "--model", "hog",
                 "--out", str(tmp_path), *argv])
    assert code == 2
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert message in error.getMessage() and "\n" not in error.getMessage()
