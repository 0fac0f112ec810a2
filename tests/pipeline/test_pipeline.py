from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.build import build_pipeline
from pipeline.config import PipelineConfig
from pipeline.runner import PipelineError
from pipeline.sinks import OutputConfig, SinkError
from pipeline.sources import SourceConfig, SourceError
from tests.conftest import StubDetector, decoded_frames, write_video


def config(tmp_path: Path, **kw) -> PipelineConfig:
    outputs = kw.pop("outputs", OutputConfig(out_dir=tmp_path / "out", mot=True))
    return PipelineConfig(outputs=outputs, progress=False, **kw)


def test_end_to_end_hog_on_sample(tmp_path: Path, sample_video: Path) -> None:
    from engines.hog import HogDetector

    cfg = config(tmp_path, sources=SourceConfig(max_frames=12))
    metrics = build_pipeline([str(sample_video)], HogDetector(), cfg).run()
    counts = metrics.sources["vtest"]
    assert counts.read == counts.processed == counts.written == 12
    out = tmp_path / "out"
    assert decoded_frames(out / "vtest.mp4") == 12
    cap = cv2.VideoCapture(str(out / "vtest.mp4"))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        768,
        576,
    )
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    lines = (out / "vtest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["frame"] for r in records] == list(range(12))
    assert sum(len(r["detections"]) for r in records) > 0  # HOG finds pedestrians
    assert all(
        r["detections"][0]["class"] == "person" for r in records if r["detections"]
    )
    summary = metrics.summary()
    assert summary["fps"] > 0 and "infer" in summary["stages_ms"]


def test_file_source_never_drops_even_when_slow(
    tmp_path: Path, small_video: Path
) -> None:
    detector = StubDetector(delay=0.01)
    cfg = config(tmp_path, queue_size=1)
    metrics = build_pipeline([str(small_video)], detector, cfg).run()
    counts = next(iter(metrics.sources.values()))
    assert counts.read == counts.written == 30 and counts.dropped == 0
    mot = (tmp_path / "out" / "small_clip.mot.txt").read_text().splitlines()
    assert len(mot) == 30 and mot[0].startswith("1,-1,")
    assert len(mot[0].split(",")) == 10


def test_live_source_drops_oldest_and_counts(tmp_path: Path) -> None:
    video = write_video(tmp_path / "live.mp4", frames=40, fps=100.0)
    detector = StubDetector(delay=0.05)  # 20 FPS against a 100 FPS "camera"
    cfg = config(tmp_path, queue_size=2, sources=SourceConfig(realtime=True))
    metrics = build_pipeline([str(video)], detector, cfg).run()
    c = metrics.sources["live"]
    assert c.read == 40
    assert c.dropped > 0
    assert c.written + c.dropped == c.read  # every frame accounted for
    assert decoded_frames(tmp_path / "out" / "live.mp4") == c.written


def test_stride_skips_are_counted(tmp_path: Path, small_video: Path) -> None:
    cfg = config(tmp_path, sources=SourceConfig(stride=3))
    metrics = build_pipeline([str(small_video)], StubDetector(), cfg).run()
    c = next(iter(metrics.sources.values()))
    assert (c.read, c.skipped, c.written) == (30, 20, 10)
    frames = [
        json.loads(line)["frame"]
        for line in (tmp_path / "out" / "small_clip.jsonl").read_text().splitlines()
    ]
    assert frames == list(range(0, 30, 3))


def test_several_sources_batched_and_routed(tmp_path: Path) -> None:
    videos = [str(write_video(tmp_path / f"v{i}.mp4", frames=20 + i)) for i in range(3)]
    detector = StubDetector(delay=0.02, max_batch=4)
    cfg = config(tmp_path, batch=4, max_wait_ms=20)
    metrics = build_pipeline(videos, detector, cfg).run()
    for i in range(3):
        assert metrics.sources[f"v{i}"].written == 20 + i
        frames = [
            json.loads(line)["frame"]
            for line in (tmp_path / "out" / f"v{i}.jsonl").read_text().splitlines()
        ]
        assert frames == list(range(20 + i))  # in order, own frames only
    assert max(detector.batch_sizes) > 1


class SquareFinder(StubDetector):
    """Boxes the moving square of ``write_video`` (so a result names its frame);
    every other call is slow, so overlapping calls finish out of order."""

    def _infer(self, batch, call: int):
        self.delay = 0.03 if call % 2 else 0.002
        return super()._infer(batch, call)

    def box(self, image: np.ndarray):
        from tests.conftest import make_detections

        x = int(np.flatnonzero(image[30, :, 2] > 200)[0])
        return make_detections([[x, 20, x + 20, 40]])


def test_model_calls_overlap_on_files_and_results_keep_their_frames(
        tmp_path: Path) -> None:
    videos = [str(write_video(tmp_path / f"v{i}.mp4", frames=24 + i)) for i in range(2)]
    detector = SquareFinder(max_batch=2, in_flight=2)
    metrics = build_pipeline(videos, detector, config(tmp_path, batch=2)).run()
    assert detector.most_at_once == 2
    for i in range(2):
        assert metrics.sources[f"v{i}"].written == 24 + i
        records = [json.loads(line) for line in
                   (tmp_path / "out" / f"v{i}.jsonl").read_text().splitlines()]
        assert [r["frame"] for r in records] == list(range(24 + i))
        assert [r["detections"][0]["xyxy"][0] for r in records] == [
            (f * 4) % 140 for f in range(24 + i)]


def test_live_sources_keep_one_model_call_at_a_time(tmp_path: Path) -> None:
    video = write_video(tmp_path / "live.mp4", frames=30, fps=100.0)
    detector = SquareFinder(max_batch=2, in_flight=2)
    cfg = config(tmp_path, batch=2, sources=SourceConfig(realtime=True))
    metrics = build_pipeline([str(video)], detector, cfg).run()
    assert metrics.sources["live"].written > 0 and detector.most_at_once == 1


def test_dead_source_does_not_stop_the_others(
    tmp_path: Path, small_video: Path
) -> None:
    missing = tmp_path / "missing.mp4"
    metrics = build_pipeline(
        [str(small_video), str(missing)], StubDetector(), config(tmp_path)
    ).run()
    assert metrics.sources["small_clip"].written == 30
    assert metrics.sources["missing"].status == "failed"
    assert "file not found" in metrics.sources["missing"].reason


def test_all_sources_failing_raises_named_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"missing\.mp4: file not found"):
        build_pipeline(
            [str(tmp_path / "missing.mp4")], StubDetector(), config(tmp_path)
        ).run()


@pytest.mark.parametrize(
    "stage", ["capture", "preprocess", "infer", "track", "overlay", "sink"]
)
def test_stage_failure_stops_everything_with_named_error(
    tmp_path: Path, small_video: Path, stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    detector = StubDetector(
        fail_prepare_at=5 if stage == "preprocess" else None,
        fail_infer_at=5 if stage == "infer" else None,
    )
    cfg = config(tmp_path)
    if stage == "capture":
        from pipeline.sources import VideoSource

        original = VideoSource._read
        calls = {"n": 0}

        def bad_read(self):
            calls["n"] += 1
            if calls["n"] > 5:
                raise OSError("injected read failure")
            return original(self)

        monkeypatch.setattr(VideoSource, "_read", bad_read)
    elif stage == "track":
        import pipeline.build as build

        class Broken:
            def update(self, dets, **kwargs):
                raise RuntimeError("injected track failure")

        monkeypatch.setattr(build, "make_tracker", lambda *a, **k: Broken())
        cfg = config(tmp_path, tracker="sort")
    elif stage == "overlay":
        from pipeline.overlay import Overlay

        monkeypatch.setattr(Overlay, "draw", lambda *a, **k: 1 / 0)
    elif stage == "sink":
        from pipeline.sinks import JsonlSink

        monkeypatch.setattr(JsonlSink, "write", lambda *a, **k: 1 / 0)
    started = time.perf_counter()
    with pytest.raises(PipelineError) as info:
        build_pipeline([str(small_video)], detector, cfg).run()
    assert time.perf_counter() - started < 2.0
    message = str(info.value)
    assert f"stage {stage!r}" in message
    assert "source 'small_clip' frame" in message
    assert "injected" in message or "ZeroDivisionError" in message


def test_request_stop_flushes_valid_outputs(tmp_path: Path) -> None:
    video = write_video(tmp_path / "long.mp4", frames=300)
    pipeline = build_pipeline([str(video)], StubDetector(delay=0.01), config(tmp_path))
    timer = threading.Timer(0.5, pipeline.request_stop)
    timer.start()
    started = time.perf_counter()
    metrics = pipeline.run()
    assert time.perf_counter() - started < 3.0
    c = metrics.sources["long"]
    assert 0 < c.written < 300
    assert decoded_frames(tmp_path / "out" / "long.mp4") == c.written
    lines = (tmp_path / "out" / "long.jsonl").read_text().splitlines()
    assert len(lines) == c.written and all(json.loads(line) for line in lines)


def test_image_folder_with_odd_images(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_gray.png"), np.full((60, 80), 128, np.uint8))
    cv2.imwrite(str(folder / "b_rgba.png"), np.full((60, 80, 4), 200, np.uint8))
    cv2.imwrite(str(folder / "c_16bit.png"), np.full((60, 80, 3), 60000, np.uint16))
    cv2.imwrite(str(folder / "d_tiny.png"), np.zeros((1, 1, 3), np.uint8))
    (folder / "e_broken.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    metrics = build_pipeline([str(folder)], StubDetector(), config(tmp_path)).run()
    c = metrics.sources["imgs"]
    assert (c.read, c.written, c.unreadable) == (4, 4, 1)
    written = sorted(p.name for p in (tmp_path / "out" / "imgs").iterdir())
    assert written == ["a_gray.png", "b_rgba.png", "c_16bit.png", "d_tiny.png"]


def test_frames_that_change_size_are_written(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, (w, h) in enumerate([(80, 60), (120, 90), (40, 30)]):
        cv2.imwrite(str(folder / f"{i}.png"), np.zeros((h, w, 3), np.uint8))
    metrics = build_pipeline([str(folder / "*.png")], StubDetector(),
                             config(tmp_path)).run()
    assert next(iter(metrics.sources.values())).written == 3


def test_unwritable_output_fails_at_start(tmp_path: Path, small_video: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = config(tmp_path, outputs=OutputConfig(out_dir=blocker / "sub"))
    detector = StubDetector()
    with pytest.raises(SinkError, match="cannot create output folder"):
        build_pipeline([str(small_video)], detector, cfg).run()
    assert detector.calls == 0  # nothing processed before the failure


def test_invalid_config_rejected() -> None:
    with pytest.raises(ValueError, match="batch must be >= 1, got 0"):
        PipelineConfig(batch=0)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        SourceConfig(stride=0)
