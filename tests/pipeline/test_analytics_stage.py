"""Lines and zones inside the pipeline: the analytics stage between track and
overlay, its events file, its counts in ``Metrics``, ``/metrics`` and the
overlay, and the tracker chosen for it."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from core.events import Event
from core.types import Detections, Frame, Result, SceneCounts
from pipeline.analytics.geometry import parse_line_spec, parse_zone_spec
from pipeline.analytics.stage import AnalyticsConfig, Analyze, choose_tracker
from pipeline.build import LaneBuilder, build_pipeline
from pipeline.config import PipelineConfig
from pipeline.live_view import LiveView
from pipeline.metrics import Metrics
from pipeline.overlay import Overlay, OverlayConfig
from pipeline.sinks import OutputConfig
from pipeline.sources import FrameSource, SourceConfig
from pipeline.tracking import RECOMMENDED_TRACKER
from tests.conftest import StubDetector

WIDTH, HEIGHT, FPS = 200, 100, 10.0
FRAMES = 80
SIDE = 20  # the object is a SIDE x SIDE square, rows 40..60
# A vertical line through the middle (drawn top to bottom: right-to-left is
# "in") and a zone over the right part of the frame.
LINE = "0.5,0,0.5,1:door"
ZONE = "0.6,0,0.9,0,0.9,1,0.6,1:desk"


def object_x(i: int) -> int:
    """Left edge of the square in frame ``i``: 4 px a frame to the right for 40
    frames, then back. The bottom-centre anchor (x + 10) crosses the line at
    x = 100 going right (frame 20) and going left (frame 59); it is inside the
    zone (x >= 120) from frame 25 to frame 53 and outside again at frame 54."""
    return 10 + 4 * i if i < 40 else 166 - 4 * (i - 39)


TRUE_DWELL_S = (54 - 25) / FPS


def scene_frames() -> list[tuple[np.ndarray, float]]:
    frames = []
    for i in range(FRAMES):
        image = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
        x = object_x(i)
        image[40:40 + SIDE, x:x + SIDE] = (0, 220, 255)
        frames.append((image, i / FPS))
    return frames


def write_scene_video(path: Path) -> Path:
    """``scene_frames`` as an MP4 file, for runs that read a video."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS,
                             (WIDTH, HEIGHT))
    for image, _ in scene_frames():
        writer.write(image)
    writer.release()
    return path


class BlobDetector(StubDetector):
    """Puts one box where the bright object is (none on an empty frame)."""

    def box(self, image: np.ndarray) -> Detections:
        ys, xs = np.nonzero(image[..., 2] > 128)
        if not len(xs):
            return Detections.empty()
        return Detections([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]],
                          [0.9], [0])


def run(tmp_path: Path, analytics: AnalyticsConfig, **kw) -> Metrics:
    stride = kw.pop("stride", 1)
    cfg = PipelineConfig(
        analytics=analytics, progress=False,
        sources=SourceConfig(stride=stride),
        outputs=OutputConfig(out_dir=tmp_path, video=False, jsonl=True), **kw)
    source = FrameSource(scene_frames(), name="cam", fps=FPS,
                         config=cfg.sources)
    return build_pipeline([source], BlobDetector(), cfg).run()


def events(tmp_path: Path) -> list[Event]:
    lines = (tmp_path / "cam.events.jsonl").read_text().splitlines()
    return [Event.from_dict(json.loads(line)) for line in lines]


@pytest.mark.parametrize("detect_every", [1, 3])
def test_a_line_counts_each_crossing_once_and_writes_its_events(
        tmp_path: Path, detect_every: int) -> None:
    metrics = run(tmp_path, AnalyticsConfig.of([LINE]), detect_every=detect_every)
    crossings = [e for e in events(tmp_path) if e.event == "line_cross"]
    # Right through the line (out), then back (in): one event each, even when
    # the detector skipped the frames around the crossing.
    assert [(e.direction, e.line, e.source) for e in crossings] == [
        ("out", "door", "cam"), ("in", "door", "cam")]
    assert 19 <= crossings[0].frame <= 22 and 57 <= crossings[1].frame <= 61
    assert crossings[0].track_id == crossings[1].track_id >= 0
    assert crossings[0].class_name == "thing"
    summary = metrics.summary()
    assert summary["analytics"]["cam"]["lines"]["door"] == {
        "in": {"thing": 1}, "out": {"thing": 1}}
    assert "analytics" in summary["stages_ms"]
    assert "line cam/door: in 1 (thing 1), out 1 (thing 1)" in metrics.table()


@pytest.mark.parametrize("stride", [1, 2])
def test_a_zone_gives_enter_loiter_exit_with_dwell_from_timestamps(
        tmp_path: Path, stride: int) -> None:
    analytics = AnalyticsConfig.of(zones=[ZONE], loiter_s=1.0, zone_inertia=2)
    run(tmp_path, analytics, stride=stride)
    got = [e for e in events(tmp_path) if e.zone == "desk"]
    assert [e.event for e in got] == ["zone_enter", "loiter", "zone_exit"]
    enter, loiter, leave = got
    assert loiter.dwell_s == pytest.approx(1.0, abs=stride / FPS + 1e-6)
    # Seconds of the source's clock, the same at every stride to one period.
    assert leave.dwell_s == pytest.approx(TRUE_DWELL_S, abs=stride / FPS + 1e-6)
    assert enter.track_id == leave.track_id


def test_occupancy_is_recorded_per_frame_and_falls_to_zero(tmp_path: Path) -> None:
    metrics = Metrics(class_names=["person", "car"])
    zone_spec = parse_zone_spec("0,0,0.5,0,0.5,1,0,1:left")
    [], [zone] = AnalyticsConfig(zones=(zone_spec,)).build("cam", ["person", "car"])
    analyze = Analyze("cam", [], [zone], lambda e: None, metrics)
    image = np.zeros((100, 200, 3), np.uint8)
    inside = Detections([[10, 10, 30, 50], [40, 10, 60, 50]], [0.9, 0.9], [0, 1],
                        [1, 2])
    result = analyze(Result(Frame("cam", 0, 0.0, image), inside))
    assert result.scene is not None and result.scene.occupancy("left") == 2
    assert metrics.summary()["analytics"]["cam"]["zones"]["left"] == {
        "person": 1, "car": 1}
    analyze(Result(Frame("cam", 1, 0.1, image), Detections.empty()))
    assert metrics.summary()["analytics"]["cam"]["zones"]["left"] == {
        "person": 0, "car": 0}


def test_counts_are_served_on_metrics_and_stats_json(tmp_path: Path) -> None:
    metrics = run(tmp_path, AnalyticsConfig.of([LINE], [ZONE]))
    with LiveView("127.0.0.1:0", metrics) as view:
        with urllib.request.urlopen(f"{view.url}/metrics", timeout=5) as r:
            text = r.read().decode()
        with urllib.request.urlopen(f"{view.url}/stats.json", timeout=5) as r:
            stats = json.loads(r.read())
    assert ('streamdet_line_crossings_total{class="thing",direction="in",'
            'line="door",source="cam"} 1.0') in text
    assert ('streamdet_zone_occupancy{class="thing",source="cam",zone="desk"} 0.0'
            in text)
    assert stats["analytics"]["cam"]["lines"]["door"]["out"] == {"thing": 1}


def test_lines_without_a_tracker_get_the_recommended_one(caplog) -> None:
    with caplog.at_level(logging.INFO):
        config = PipelineConfig(analytics=AnalyticsConfig.of([LINE]))
    assert config.tracker == RECOMMENDED_TRACKER
    assert f"recommended tracker {RECOMMENDED_TRACKER}" in caplog.text
    assert PipelineConfig().tracker == "none"
    assert PipelineConfig(tracker="sort",
                          analytics=AnalyticsConfig.of([LINE])).tracker == "sort"


def test_tracker_none_with_lines_is_refused_naming_both() -> None:
    with pytest.raises(ValueError, match=r"--tracker none .*--line/--zone"):
        choose_tracker("none", AnalyticsConfig.of(zones=[ZONE]))


def test_without_lines_or_zones_there_is_no_analytics_stage(tmp_path: Path) -> None:
    cfg = PipelineConfig(progress=False, outputs=OutputConfig(out_dir=tmp_path,
                                                              video=False))
    source = FrameSource(scene_frames()[:3], name="cam", fps=FPS)
    source.open()
    lane = LaneBuilder(BlobDetector(), cfg, Metrics())(source, lambda: None)
    assert lane.analyze is None and lane.analytics_in is None
    lane.write.close()
    assert not (tmp_path / "cam.events.jsonl").exists()


def test_unnamed_shapes_are_numbered_and_duplicate_names_refused() -> None:
    config = AnalyticsConfig.of(["0,0,1,1", "0,1,1,0", "0.5,0,0.5,1:line_2"])
    assert [s.name for s in config.lines] == ["line", "line_3", "line_2"]
    with pytest.raises(ValueError, match="'door' is given twice"):
        AnalyticsConfig.of([LINE, LINE])


def test_overlay_draws_lines_and_zones_with_their_counts() -> None:
    lines, zones = AnalyticsConfig.of([LINE], [ZONE]).shapes()
    overlay = Overlay(["thing"], OverlayConfig(hud=False), lines, zones)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    scene = SceneCounts({"door": {(0, "in"): 2, (0, "out"): 5}}, {"desk": {0: 1}})
    out = overlay.draw(image, Detections.empty(), scene=scene)
    assert out[80:95, 99:101].any()  # on the line, below its label
    assert out[50, 150].any()  # the zone's tint
    assert not out[50, 40].any()  # nowhere near either
    plain = Overlay(["thing"], OverlayConfig(hud=False), lines, zones).draw(
        image, Detections.empty(), scene=SceneCounts({"door": {}}, {"desk": {}}))
    assert not np.array_equal(out, plain)  # the counts are written


def test_a_line_class_name_the_model_lacks_fails_before_the_run(
        tmp_path: Path) -> None:
    cfg = PipelineConfig(analytics=AnalyticsConfig.of([LINE],
                                                      line_classes=("person",)))
    with pytest.raises(ValueError, match="unknown class 'person'"):
        build_pipeline([FrameSource([], name="cam")], BlobDetector(), cfg)


def test_a_shape_parsed_once_draws_where_it_counts() -> None:
    spec = parse_line_spec(LINE)
    lines, _ = AnalyticsConfig(lines=(spec,)).shapes()
    assert lines[0].points == spec.points
