"""The Python API: a detector on one image, pipelines iterated or called back,
the caller's own frames, sources joining and leaving a running pipeline."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import streamdet
from pipeline.sources import SourceError
from tests.conftest import StubDetector, decoded_frames, write_video


def test_a_detector_runs_on_one_image():
    detector = streamdet.load_detector("yolo")
    image = np.full((240, 320, 3), 90, np.uint8)
    image[60:180, 100:220] = (20, 180, 250)
    one = detector(image)
    [batch] = detector.detect([image])
    assert isinstance(one, streamdet.Detections)
    np.testing.assert_allclose(one.xyxy, batch.xyxy, atol=1e-4)
    assert (one.track_ids == -1).all()
    detector.close()


def test_stream_yields_every_frame_in_order_with_tracks_and_timings(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames=24, fps=12.0)
    with streamdet.open_pipeline(clip, StubDetector(max_batch=4),
                                 tracker="bytetrack") as pipe:
        results = list(pipe.stream())
    assert [r.frame.index for r in results] == list(range(24))
    assert [r.frame.timestamp for r in results] == pytest.approx(
        [i / 12 for i in range(24)], abs=1e-3)
    assert all(r.detections.track_ids.tolist() == [1] for r in results[1:])
    assert {"infer", "track"} <= set(results[5].timings)
    counts = pipe.metrics.sources["clip"]
    assert counts.read == counts.processed == counts.written == 24
    assert not list(tmp_path.glob("output*"))  # no files unless asked


def test_breaking_out_stops_and_releases_the_source_within_two_seconds(tmp_path):
    clip = write_video(tmp_path / "long.mp4", frames=400)
    pipe = streamdet.open_pipeline(clip, StubDetector(delay=0.005))
    for result in pipe.stream():
        if result.frame.index == 5:
            started = time.perf_counter()
            break
    assert time.perf_counter() - started < 2.0
    assert not pipe.running
    [source] = pipe.pipeline.sources
    assert source._closed.is_set()  # released
    counts = pipe.metrics.sources["long"]
    assert 6 <= counts.written < 400 and counts.processed == counts.written


def test_callbacks_see_every_result_on_the_sink_thread(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames=30)
    seen: list[tuple[int, str]] = []
    pipe = streamdet.open_pipeline(clip, StubDetector(), on_result=lambda r: (
        seen.append((r.frame.index, threading.current_thread().name))))
    metrics = pipe.run()
    assert [i for i, _ in seen] == list(range(30))
    assert {name for _, name in seen} == {"sink:clip"}
    assert metrics.sources["clip"].written == 30


def test_a_failing_callback_fails_the_run_with_its_stage_named(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames=30)
    pipe = streamdet.open_pipeline(clip, StubDetector())

    @pipe.on_result
    def broken(result):
        raise KeyError("callback bug")

    with pytest.raises(streamdet.PipelineError, match=r"stage .sink.*callback bug"):
        pipe.run()


def test_the_callers_own_frames_with_their_timestamps():
    def frames():
        for i in range(20):
            image = np.zeros((120, 160, 3), np.uint8)
            image[10:30, 4 * i:4 * i + 20] = 255
            yield image, 100.0 + i * 0.04  # 25 fps, the caller's clock

    source = streamdet.FrameSource(frames(), name="robot", fps=25)
    with streamdet.open_pipeline(source, StubDetector(), tracker="ocsort") as pipe:
        results = list(pipe.stream())
    assert [r.frame.source_id for r in results] == ["robot"] * 20
    assert results[-1].frame.timestamp == pytest.approx(100.76)
    assert results[3].frame.image.shape == (120, 160, 3)


def test_frame_source_refuses_what_is_not_an_image():
    source = streamdet.FrameSource(iter(["not an image"]), name="bad")
    with pytest.raises(SourceError, match="bad: frame 0 is not an image"):
        source.open()
    with pytest.raises(SourceError, match="empty: no frames"):
        streamdet.FrameSource(iter([]), name="empty").open()


def test_detector_options_with_a_built_detector_are_refused():
    with pytest.raises(ValueError, match="conf"):
        streamdet.open_pipeline("x.mp4", StubDetector(), conf=0.5)


def test_sources_join_and_leave_a_running_pipeline(tmp_path):
    """A camera added while another runs starts giving results; removing the
    first finalises its outputs; the other is untouched and reads to its end."""
    out = tmp_path / "out"
    first = streamdet.FrameSource(
        (np.full((96, 128, 3), i % 250, np.uint8) for i in range(10_000)),
        name="cam", fps=50)
    clip = write_video(tmp_path / "clip.mp4", frames=60)
    outputs = streamdet.OutputConfig(out_dir=out, video=True, jsonl=True)
    pipe = streamdet.open_pipeline(first, StubDetector(delay=0.002),
                                   tracker="bytetrack", outputs=outputs)
    seen: dict[str, int] = {}
    joined = False
    for result in pipe.stream():
        sid = result.frame.source_id
        seen[sid] = seen.get(sid, 0) + 1
        if not joined and seen["cam"] == 10:
            assert pipe.add_source(clip) == "clip"
            joined = True
        if seen.get("clip") == 5:
            pipe.remove_source("cam")
    assert [s.source_id for s in pipe.pipeline.sources] == ["clip"]
    counts = pipe.metrics.sources
    assert seen["clip"] == counts["clip"].written == 60
    assert counts["cam"].read == counts["cam"].written == seen["cam"] < 10_000
    lines = (out / "cam.jsonl").read_text().splitlines()
    assert len(lines) == seen["cam"] and json.loads(lines[-1])["frame"] >= 0
    assert decoded_frames(out / "cam.mp4") == seen["cam"]
    assert decoded_frames(out / "clip.mp4") == 60


def test_a_server_pipeline_runs_with_no_source_until_stopped(tmp_path):
    pipe = streamdet.open_pipeline([], StubDetector(), keep_alive=True).start()
    time.sleep(0.3)
    assert pipe.running
    name = pipe.add_source(write_video(tmp_path / "late.mp4", frames=12))
    deadline = time.monotonic() + 5
    while pipe.metrics.sources[name].written < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pipe.metrics.sources[name].written == 12
    assert pipe.running  # still waiting for cameras
    with pytest.raises(ValueError, match="already"):
        pipe.pipeline.add_source(pipe.pipeline.sources[0])
    started = time.perf_counter()
    pipe.close()
    assert not pipe.running and time.perf_counter() - started < 2.0


def test_a_source_added_after_the_run_ended_is_refused(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames=5)
    pipe = streamdet.open_pipeline(clip, StubDetector())
    pipe.run()
    with pytest.raises(RuntimeError, match=r"finished|stopping"):
        pipe.add_source(write_video(tmp_path / "other.mp4", frames=5))


def test_the_sample_video_ships_with_the_package():
    assert Path(streamdet.SAMPLE_VIDEO).is_file()


@pytest.mark.parametrize("name", sorted(streamdet.TRACKERS))
def test_trackers_work_alone_in_a_callers_loop(name):
    """A box moving right keeps one id frame after frame, with the caller's
    timestamps (here 20 fps, one frame missing)."""
    tracker = streamdet.make_tracker(name, frame_rate=20)
    ids = []
    for i in [0, 1, 2, 3, 5, 6, 7, 8]:
        x = 10.0 + 4 * i
        dets = streamdet.Detections([[x, 20, x + 30, 80]], [0.9], [0])
        ids.append(tracker.update(dets, timestamp=i / 20).track_ids.tolist())
    assert ids[-1] != [] and ids[-1][0] >= 1
    assert all(i == ids[-1] for i in ids[3:])


def test_lines_and_zones_from_python_with_on_event():
    from tests.pipeline.test_analytics_stage import (
        FPS,
        LINE,
        ZONE,
        BlobDetector,
        scene_frames,
    )

    source = streamdet.FrameSource(scene_frames(), name="cam", fps=FPS)
    zone = streamdet.Zone([[0.6, 0], [0.9, 0], [0.9, 1], [0.6, 1]], "desk",
                          loiter_s=1.0)
    seen: list[tuple[str, str]] = []
    with streamdet.open_pipeline(source, BlobDetector(), lines=[LINE],
                                 zones=[zone]) as pipe:
        assert pipe.pipeline.config.tracker == streamdet.RECOMMENDED_TRACKER

        @pipe.on_event
        def collect(event: streamdet.Event) -> None:
            seen.append((event.event, threading.current_thread().name))

        results = list(pipe.stream())
    assert [kind for kind, _ in seen] == ["line_cross", "zone_enter", "loiter",
                                          "zone_exit", "line_cross"]
    assert all(thread.startswith("analytics") for _, thread in seen)
    last = results[-1].scene
    assert last.crossings("door", "in") == last.crossings("door", "out") == 1
    assert results[30].scene.occupancy("desk") == 1
    assert zone.occupancy == {}  # a template: each source counts in its own copy
    # The same through an AnalyticsConfig, and a tracker that cannot count
    config = streamdet.AnalyticsConfig.of(zones=[ZONE])
    with pytest.raises(ValueError, match="--tracker none"):
        streamdet.open_pipeline(source, BlobDetector(), analytics=config,
                                tracker="none")
