from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.sources import (
    ImageFolderSource,
    SourceConfig,
    SourceError,
    VideoSource,
    expand_sources,
    make_source,
    redact_url,
    safe_name,
    to_bgr8,
    unique_ids,
)
from tests.conftest import write_video


def test_video_source_frames_and_timestamps(small_video: Path) -> None:
    with make_source(str(small_video)) as src:
        assert isinstance(src, VideoSource) and not src.live
        frames = list(src.frames())
    assert [f.index for f in frames] == list(range(30))
    assert src.size == (160, 120) and src.fps == pytest.approx(10.0)
    stamps = np.array([f.timestamp for f in frames])
    np.testing.assert_allclose(stamps, np.arange(30) / 10.0, atol=1e-3)
    assert src.stats.read == 30


def test_max_frames_limits_reading(small_video: Path) -> None:
    with make_source(str(small_video), SourceConfig(max_frames=7)) as src:
        assert len(list(src.frames())) == 7


LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\noid sha256:"
    + "a" * 64
    + "\nsize 12345\n"
)


@pytest.mark.parametrize(
    "name,content,problem",
    [
        ("nope.mp4", None, "file not found"),
        ("empty.mp4", b"", "file is empty"),
        ("text.mp4", b"hello, not a video\n" * 50, "not a readable video"),
        ("lfs.mp4", LFS_POINTER.encode(), "not a readable video"),
    ],
)
def test_bad_video_files_fail_clearly(
    tmp_path: Path, name: str, content: bytes | None, problem: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    started = time.perf_counter()
    with pytest.raises(SourceError, match=problem) as info:
        make_source(str(path)).open()
    assert str(path) in str(info.value)
    assert time.perf_counter() - started < 5


def test_empty_folder_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no media here")
    with pytest.raises(SourceError, match="no images"):
        make_source(str(tmp_path)).open()


def test_truncated_video_marked_damaged(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.avi", frames=60)
    data = good.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with make_source(str(cut)) as src:
        frames = list(src.frames())
    assert 0 < len(frames) < 60


def test_unreachable_url_fails_within_timeout() -> None:
    src = make_source(
        "rtsp://user:secret@127.0.0.1:9/stream",
        SourceConfig(timeout_s=1.0, reconnect_attempts=0),
    )
    started = time.perf_counter()
    with pytest.raises(SourceError) as info:
        src.open()
    assert time.perf_counter() - started < 4.0
    assert "secret" not in str(info.value) and "127.0.0.1:9" in str(info.value)


def test_bad_webcam_index_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SourceError, match="cannot open webcam"):
        make_source("97").open()


def test_names_are_safe_and_credentials_hidden() -> None:
    assert (
        redact_url("rtsp://admin:pw@cam.local:554/live") == "rtsp://cam.local:554/live"
    )
    assert "pw" not in safe_name("rtsp://admin:pw@cam.local:554/live")
    assert safe_name("../../etc/passwd.mp4") == "passwd"
    assert "/" not in safe_name("dir/../évé nt ../x y.mp4")
    assert safe_name("0") == "webcam0"
    assert unique_ids(["a/x.mp4", "b/x.mp4"]) == ["x", "x_2"]


def test_list_file_expands(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("# cameras\na.mp4\n\nrtsp://h/s\n")
    assert expand_sources([str(listing), "c.mp4"]) == ["a.mp4", "rtsp://h/s", "c.mp4"]


def test_image_sources_kinds(tmp_path: Path) -> None:
    img = tmp_path / "one.png"
    cv2.imwrite(str(img), np.zeros((10, 12, 3), np.uint8))
    assert isinstance(make_source(str(img)), ImageFolderSource)
    with make_source(str(tmp_path / "*.png")) as src:
        assert len(list(src.frames())) == 1


def test_non_ascii_and_space_names(tmp_path: Path) -> None:
    video = write_video(tmp_path / "vidéo de test ü.mp4", frames=5)
    with make_source(str(video)) as src:
        assert len(list(src.frames())) == 5


def test_to_bgr8_converts_all_kinds() -> None:
    assert to_bgr8(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert to_bgr8(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    out = to_bgr8(np.full((4, 5, 3), 65535, np.uint16))
    assert out.dtype == np.uint8 and out.max() == 255
