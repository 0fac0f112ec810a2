"""Decoding through PyAV (``--decode pyav``, and NVDEC with ``--decode nvdec``):
the same frames, counts and timestamps as OpenCV's path, the same file-only
protocol whitelist, and the choice logged. NVDEC runs only where a CUDA device
is; elsewhere its test skips and ``auto`` keeps OpenCV."""

from __future__ import annotations

import http.server
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV (av) not installed: pip install av")

import pipeline.av_capture as av_capture
from pipeline.av_capture import AvCapture, cuda_decode_available
from pipeline.sources import SourceConfig, SourceError, make_source
from tests.conftest import write_video


def read_all(spec: str, decode: str) -> tuple[list[np.ndarray], list[float], float]:
    with make_source(spec, SourceConfig(decode=decode)) as source:
        frames = list(source.frames())
        return [f.image for f in frames], [f.timestamp for f in frames], source.fps


def test_pyav_decodes_what_opencv_decodes(small_video: Path) -> None:
    images_cv, times_cv, fps_cv = read_all(str(small_video), "cpu")
    images_av, times_av, fps_av = read_all(str(small_video), "pyav")
    assert len(images_av) == len(images_cv) == 30
    assert fps_av == fps_cv == pytest.approx(10.0)
    assert times_av == pytest.approx(times_cv, abs=1e-3)
    for a, b in zip(images_av, images_cv, strict=True):
        assert a.shape == b.shape
        # two YUV->BGR conversions may round differently, never more
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3


def test_pyav_path_keeps_the_file_only_whitelist(tmp_path: Path) -> None:
    hits: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fake = tmp_path / "holiday.m3u8"
        fake.write_text("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\n"
                        f"http://127.0.0.1:{server.server_address[1]}/leak/seg0.ts\n"
                        "#EXT-X-ENDLIST\n")
        with pytest.raises(SourceError, match=r"holiday\.m3u8"):
            make_source(str(fake), SourceConfig(decode="pyav")).open()
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []


def test_pyav_capture_reports_why_it_failed(tmp_path: Path) -> None:
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(b"\x00" * 4096)
    cap = AvCapture(str(bad), {"protocol_whitelist": "file"})
    assert not cap.isOpened() and cap.error
    assert cap.read() == (False, None)


def test_auto_uses_opencv_without_cuda(small_video: Path, monkeypatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(av_capture, "cuda_decode_available", lambda: False)
    monkeypatch.setattr("pipeline.sources.video.cuda_decode_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="pipeline.sources"):
        with make_source(str(small_video)) as source:
            assert source.decoder == "cpu"
    assert "decoder cpu" in caplog.text
    with pytest.raises(SourceError, match="NVDEC decoding requested"):
        make_source(str(small_video), SourceConfig(decode="nvdec")).open()


def test_decode_choice_is_validated() -> None:
    with pytest.raises(ValueError, match="auto, cpu, pyav, nvdec"):
        SourceConfig(decode="vaapi")


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_decode_available(),
                    reason="no CUDA device/driver: NVDEC decoding not available here")
def test_nvdec_decodes_h264_like_the_cpu(tmp_path: Path) -> None:
    from pipeline.video_writer import AvVideoWriter

    clip = tmp_path / "h264.mp4"
    writer = AvVideoWriter(clip, 25.0, (320, 240))
    for i, image in enumerate(read_all(str(write_video(
            tmp_path / "src.mp4", frames=40, size=(320, 240))), "cpu")[0]):
        writer.write(image, i / 25)
    writer.close()
    images_gpu, times_gpu, _ = read_all(str(clip), "nvdec")
    images_cpu, times_cpu, _ = read_all(str(clip), "pyav")
    assert len(images_gpu) == len(images_cpu) == 40
    assert times_gpu == pytest.approx(times_cpu, abs=1e-3)
    for a, b in zip(images_gpu, images_cpu, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3
