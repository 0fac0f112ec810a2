"""A fault corpus generated here (not hand-picked files): every case ends in a
clear error naming the source, or is processed up to the damage and marked
partial; never a hang or a crash. In batch mode the other files carry on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.batch import BatchJob, run_batch
from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.sinks import OutputConfig
from pipeline.sources import SourceConfig, SourceError, make_source
from tests.conftest import StubDetector, write_video

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="ffmpeg not installed (CI installs it)")


def run(path: Path, tmp_path: Path, **source_kw) -> dict:
    cfg = PipelineConfig(sources=SourceConfig(**source_kw),
                         outputs=OutputConfig(out_dir=tmp_path / "out"), progress=False)
    metrics = build_pipeline([str(path)], StubDetector(), cfg).run()
    return vars(next(iter(metrics.sources.values())))


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True, timeout=60)


def test_mp4_cut_before_its_index_is_refused(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.mp4", frames=60)  # OpenCV writes moov last
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(SourceError, match=r"cut\.mp4: not a readable video"):
        make_source(str(cut)).open()


@needs_ffmpeg
def test_mp4_cut_mid_stream_is_processed_up_to_damage_and_marked_partial(
        tmp_path: Path) -> None:
    src = write_video(tmp_path / "src.mp4", frames=120)
    fast = tmp_path / "fast.mp4"  # index first, as streaming MP4s are written
    ffmpeg("-i", str(src), "-c:v", "mpeg4", "-q:v", "5", "-movflags", "+faststart",
           str(fast))
    cut = tmp_path / "cut_mid.mp4"
    cut.write_bytes(fast.read_bytes()[: int(fast.stat().st_size * 0.6)])
    counts = run(cut, tmp_path)
    assert 0 < counts["read"] < 120
    assert counts["read"] == counts["written"]
    assert counts["status"] == "partial" and "truncated or damaged" in counts["reason"]


def test_bytes_flipped_in_the_middle_do_not_crash(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.avi", frames=80)
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    middle = len(data) // 2
    for offset in rng.integers(middle - 4000, middle + 4000, 300):
        data[offset] ^= 0xFF
    bad = tmp_path / "flipped.avi"
    bad.write_bytes(bytes(data))
    counts = run(bad, tmp_path)
    assert counts["read"] > 0 and counts["read"] == counts["written"]
    assert counts["status"] in ("ok", "partial")


def test_unknown_codec_fourcc_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mjpg.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(5):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    data = path.read_bytes()
    assert data.count(b"MJPG") >= 1
    odd = tmp_path / "odd_codec.avi"
    odd.write_bytes(data.replace(b"MJPG", b"QQQQ").replace(b"mjpg", b"qqqq"))
    with pytest.raises(SourceError, match=r"odd_codec\.avi"):
        make_source(str(odd)).open()


@needs_ffmpeg
def test_audio_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "song.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(path))
    with pytest.raises(SourceError, match=r"song\.mp4"):
        make_source(str(path)).open()


def test_frames_beyond_pixel_limit_are_refused(tmp_path: Path) -> None:
    video = write_video(tmp_path / "big.mp4", frames=3, size=(320, 240))
    with pytest.raises(SourceError, match="exceeds the 10000 pixel limit"):
        make_source(str(video), SourceConfig(max_pixels=100 * 100)).open()
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "small.png"), np.zeros((50, 50, 3), np.uint8))
    cv2.imwrite(str(folder / "huge.png"), np.zeros((300, 300, 3), np.uint8))
    counts = run(folder, tmp_path, max_pixels=100 * 100)
    assert (counts["read"], counts["written"], counts["unreadable"]) == (1, 1, 1)


def test_awkward_names(tmp_path: Path) -> None:
    for name in ("with space.mp4", "ünïcødé 映像.mp4", "..evil...mp4"):
        video = write_video(tmp_path / name, frames=4)
        counts = run(video, tmp_path)
        assert counts["written"] == 4
    outputs = [p.name for p in (tmp_path / "out").iterdir()]
    assert all(".." not in n and "/" not in n for n in outputs)
    assert not list(tmp_path.parent.glob("evil*"))


def test_batch_carries_on_past_every_fault(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_video(folder / "a_good.mp4", frames=12)
    (folder / "b_empty.mp4").write_bytes(b"")
    (folder / "c_text.mp4").write_text("just text\n" * 100)
    (folder / "d_lfs.mp4").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64
        + "\nsize 42\n")
    good = write_video(tmp_path / "x.mp4", frames=40)
    (folder / "e_cut.mp4").write_bytes(good.read_bytes()[:2000])
    write_video(folder / "f_good.mp4", frames=7)
    job = BatchJob(detector={"model": "hog"}, pipeline=PipelineConfig(
        outputs=OutputConfig(out_dir=tmp_path / "out"), progress=False))
    reports = {Path(r.file).name: r for r in
               run_batch([str(folder)], job, progress=False)}
    assert len(reports) == 6
    assert reports["a_good.mp4"].written == 12 and reports["f_good.mp4"].written == 7
    for bad in ("b_empty.mp4", "c_text.mp4", "d_lfs.mp4", "e_cut.mp4"):
        assert reports[bad].status == "failed" and bad in reports[bad].reason
