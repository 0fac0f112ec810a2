"""The PyAV writer: H.264 in fragmented MP4 that survives SIGKILL, timestamps from
the source, other codecs by name; JSON Lines whole up to their last line."""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV (av) not installed: pip install av")

from pipeline.sinks import EncoderConfig, SinkError  # noqa: E402
from pipeline.video_writer import AvVideoWriter, nvenc_available  # noqa: E402
from tests.conftest import ROOT, write_video  # noqa: E402


def frames(n: int, size: tuple[int, int] = (160, 120)) -> list[np.ndarray]:
    out = []
    for i in range(n):
        image = np.full((size[1], size[0], 3), 30, np.uint8)
        x = (i * 5) % (size[0] - 20)
        image[20:40, x : x + 20] = (0, 200, 255)
        out.append(image)
    return out


def decode(path: Path) -> tuple[str, list[float], tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [f.time for f in container.decode(stream)]
        return stream.codec_context.name, times, (stream.width, stream.height)


def complete_fragment_samples(data: bytes) -> tuple[int, int]:
    """(fragments, samples) of the moof+mdat pairs that lie wholly in ``data``."""

    def boxes(buf: bytes):
        pos = 0
        while pos + 8 <= len(buf):
            size, kind = struct.unpack(">I4s", buf[pos : pos + 8])
            header = 8
            if size == 1:
                size, header = struct.unpack(">Q", buf[pos + 8 : pos + 16])[0], 16
            if size < header or pos + size > len(buf):
                return  # a box cut by the kill
            yield kind, buf[pos + header : pos + size]
            pos += size

    fragments = samples = 0
    pending = None
    for kind, body in boxes(data):
        if kind == b"moof":
            pending = sum(
                struct.unpack(">I", trun[4:8])[0]
                for k, traf in boxes(body) if k == b"traf"
                for k2, trun in boxes(traf) if k2 == b"trun"
            )
        elif kind == b"mdat" and pending is not None:
            fragments, samples, pending = fragments + 1, samples + pending, None
    return fragments, samples


def test_h264_fragmented_mp4_with_source_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    # a source with a gap (frames 10..14 missing) and its own clock at 10 FPS
    stamps = [i / 10 for i in range(30) if not 10 <= i < 15]
    writer = AvVideoWriter(path, 10.0, (160, 120), EncoderConfig(gop_s=1.0))
    for image, t in zip(frames(len(stamps)), stamps, strict=True):
        writer.write(image, 100.0 + t)  # relative to the first frame written
    writer.close()
    writer.close()  # twice is harmless
    codec, times, size = decode(path)
    assert codec == "h264" and size == (160, 120)
    assert times == pytest.approx(stamps, abs=1e-3)
    fragments, samples = complete_fragment_samples(path.read_bytes())
    assert samples == len(stamps)
    assert fragments >= 3  # a keyframe, so a fragment, every second


def test_no_b_frames_and_yuv420p(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    writer = AvVideoWriter(path, 25.0, (160, 120))
    for i, image in enumerate(frames(20)):
        writer.write(image, i / 25)
    writer.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.pix_fmt == "yuv420p"
        packets = [p for p in container.demux(stream) if p.size]
    assert all(p.pts == p.dts for p in packets)  # zerolatency: no reordering


def test_x264_runs_on_one_thread_up_to_1080p(tmp_path: Path) -> None:
    """Beside a detector that keeps the cores busy, encoder threads only add CPU;
    above 1080p FFmpeg picks the thread count, and an explicit one is kept."""
    def threads(size: tuple[int, int], config: EncoderConfig | None = None) -> int:
        writer = AvVideoWriter(tmp_path / "t.mp4", 25.0, size, config)
        try:
            return writer.stream.codec_context.thread_count
        finally:
            writer.close()

    assert threads((1920, 1080)) == 1
    assert threads((3840, 2160)) != 1
    assert threads((640, 480), EncoderConfig(threads=3)) == 3


def test_odd_size_and_resized_frames(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    writer = AvVideoWriter(path, 10.0, (161, 121))
    writer.write(frames(1, (161, 121))[0], 0.0)
    writer.write(frames(1, (320, 240))[0], 0.1)  # another size: resized, kept
    writer.close()
    _, times, size = decode(path)
    assert size == (160, 120) and len(times) == 2


@pytest.mark.parametrize("codec,name", [("mpeg4", "mpeg4"), ("libvpx-vp9", "vp9")])
def test_other_codecs_by_name(tmp_path: Path, codec: str, name: str) -> None:
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this FFmpeg build")
    path = tmp_path / f"{codec}.mp4"
    writer = AvVideoWriter(path, 10.0, (160, 120), EncoderConfig(codec))
    for i, image in enumerate(frames(12)):
        writer.write(image, i / 10)
    writer.close()
    got, times, _ = decode(path)
    assert got == name and len(times) == 12


def test_unknown_codec_is_refused_with_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"not in this FFmpeg build.*libx264"):
        AvVideoWriter(tmp_path / "x.mp4", 10.0, (160, 120), EncoderConfig("h266"))
    with pytest.raises(ValueError, match="audio codec"):
        AvVideoWriter(tmp_path / "x.mp4", 10.0, (160, 120), EncoderConfig("aac"))


def test_unwritable_target_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="missing"):
        AvVideoWriter(tmp_path / "missing" / "x.mp4", 10.0, (160, 120))


def test_rtsp_push_to_a_silent_server_fails_within_its_timeout() -> None:
    import socket

    from pipeline.video_writer import AvVideoSink

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"rtsp://user:pw-secret@127.0.0.1:{listener.getsockname()[1]}/in"
        started = time.monotonic()
        with pytest.raises(SinkError, match="cannot start writing") as err:
            AvVideoSink(url, 10.0, (160, 120), rtsp_timeout_s=1.0)
    assert time.monotonic() - started < 5
    assert "pw-secret" not in str(err.value)


def test_auto_codec_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline.video_writer"):
        writer = AvVideoWriter(tmp_path / "a.mp4", 10.0, (160, 120))
        writer.close()
    expected = "h264_nvenc" if nvenc_available() else "libx264"
    assert writer.codec == expected
    assert f"video encoder: {expected}" in caplog.text


@pytest.mark.gpu
@pytest.mark.skipif(not nvenc_available(),
                    reason="no NVIDIA GPU encoder (h264_nvenc does not open here)")
def test_nvenc_writes_h264(tmp_path: Path) -> None:
    path = tmp_path / "nv.mp4"
    writer = AvVideoWriter(path, 25.0, (320, 240), EncoderConfig("h264_nvenc"))
    for i, image in enumerate(frames(30, (320, 240))):
        writer.write(image, i / 25)
    writer.close()
    codec, times, _ = decode(path)
    assert codec == "h264" and len(times) == 30


def test_sigkill_mid_run_leaves_playable_h264_and_whole_jsonl(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", frames=300, size=(160, 120), fps=10.0)
    out = tmp_path / "out"
    # --realtime paces the clip at 10 FPS, so the run is mid-way when killed
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_stream.py"), "--source", str(clip),
         "--model", "hog", "--realtime", "--out", str(out), "--no-progress",
         "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    jsonl, mp4 = out / "clip.jsonl", out / "clip.mp4"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            lines = jsonl.read_bytes().count(b"\n") if jsonl.exists() else 0
            if lines >= 35:  # three 1-second fragments written and then some
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.kill()  # SIGKILL: no handler, no close, no flush
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -9
    data = mp4.read_bytes()
    fragments, samples = complete_fragment_samples(data)
    assert fragments >= 2, f"{len(data)} bytes, no complete fragment"
    codec, times, size = decode(mp4)
    assert codec == "h264" and size == (160, 120)
    assert len(times) >= samples
    lines = jsonl.read_text().split("\n")
    whole = lines if lines[-1] == "" else lines[:-1]  # the last may be cut
    records = [json.loads(line) for line in whole if line]
    assert len(records) >= 35
    assert [r["frame"] for r in records] == list(range(len(records)))
