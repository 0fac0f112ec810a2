"""The camera file's schema: typed sections, ``${ENV}`` expansion, one-line
errors naming the key path for every kind of mistake, ``parse_source_entry``
for one entry, and each source's own lines and zones in the builder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.analytics.geometry import ShapeSpec, parse_points
from pipeline.analytics.stage import AnalyticsConfig
from pipeline.build import build_pipeline
from pipeline.camconfig import (
    ConfigError,
    Defaults,
    SourceEntry,
    load_camera_config,
    parse_source_entry,
)
from pipeline.camconfig.reader import MAX_FILE_BYTES
from pipeline.clips import ClipConfig
from pipeline.config import PipelineConfig
from pipeline.sinks import OutputConfig
from pipeline.sources import FrameSource, SourceConfig
from tests.pipeline.test_analytics_stage import (
    FPS,
    LINE,
    ZONE,
    BlobDetector,
    scene_frames,
    write_scene_video,
)

ENV = {"CAM_PASS": "pw-Secret-1", "HOOK": "hook-Secret-2", "DIR": "/videos"}

FULL = """
defaults:
  model: yolo
  tracker: ocsort
  conf: 0.4
  classes: [person, 2]
  anchor: center
  inertia: 4
  loiter_s: 30
events:
  webhook: {url: "https://hooks.example/streamdet", secret: "${HOOK}"}
  mqtt: {url: "mqtts://broker:8883/cams", username: cams, password: "${CAM_PASS}"}
sources:
  - name: door
    url: "rtsp://admin:${CAM_PASS}@camera-1/stream"
    lines:
      - {name: entrance, points: [[0.5, 0.1], [0.5, 0.9]], anchor: bottom,
         classes: [person]}
      - {points: [[0, 0.5], [1, 0.5]]}
    zones:
      - {name: desk, points: [[0.1, 0.1], [0.4, 0.1], [0.4, 0.5], [0.1, 0.5]],
         loiter_s: 120, inertia: 3, classes: [person]}
    clips: {on: [line_cross, loiter], pre_s: 5, post_s: 5, max_s: 60}
  - name: yard-2
    url: "${DIR}/yard.mp4"
    anchor: bottom
    zones:
      - {points: [[10, 10], [400, 10], [400, 300]]}
"""


def load(tmp_path: Path, text: str, environ: dict | None = None):
    path = tmp_path / "cams.yaml"
    path.write_text(text)
    return load_camera_config(path, ENV if environ is None else environ)


def test_a_full_file_becomes_typed_sections(tmp_path) -> None:
    config = load(tmp_path, FULL)
    assert config.defaults == Defaults(model="yolo", tracker="ocsort", conf=0.4,
                                       classes=("person", 2), anchor="center",
                                       inertia=4, loiter_s=30.0)
    assert config.events.webhook == "https://hooks.example/streamdet"
    assert config.events.webhook_secret == "hook-Secret-2"
    # MQTT credentials folded into the URL, percent-escaped
    assert config.events.mqtt == "mqtts://cams:pw-Secret-1@broker:8883/cams"
    door, yard = config.sources
    assert (door.name, door.url) == ("door", "rtsp://admin:pw-Secret-1@camera-1/stream")
    assert yard.url == "/videos/yard.mp4"
    assert door.clips == ClipConfig(on=("line_cross", "loiter"), pre_s=5.0,
                                     post_s=5.0, max_s=60.0)
    assert yard.clips is None
    # the source's analytics: the defaults, overridden by the source, then by
    # each line and zone
    lines, zones = door.analytics.build("door", ["person", "car"])
    assert [(x.name, x.anchor) for x in lines] == [("entrance", "bottom"),
                                                    ("line", "center")]
    assert lines[0].classes.tolist() == [0] and lines[1].classes is None
    assert (zones[0].inertia, zones[0].loiter_s, zones[0].anchor) == (3, 120.0,
                                                                      "center")
    [zone] = yard.analytics.build("yard-2", [])[1]
    assert (zone.anchor, zone.inertia, zone.loiter_s) == ("bottom", 4, 30.0)
    assert not zone.points.fractional
    # secrets stay out of reprs
    assert "pw-Secret-1" not in repr(config) and "hook-Secret-2" not in repr(config)


def test_yaml_1_2_booleans_and_literal_dollars(tmp_path) -> None:
    config = load(tmp_path, "sources:\n  - name: NO\n    url: cost$$5/${DIR}/on.mp4\n"
                  "    clips: {on: [loiter]}\n")
    [source] = config.sources
    assert source.name == "NO" and source.url == "cost$5//videos/on.mp4"
    assert source.clips.on == ("loiter",)


BAD = [
    ("sources: [a\n", "line 2, column 1: not valid YAML"),
    ("", "the file is empty; it needs a sources: list"),
    ("- a\n", "the file: expected a mapping (key: value), got a list"),
    ("sources: []\nsourcs: 1\n", "sourcs: unknown key (allowed: defaults, events, "
                                 "sources)"),
    ("defaults: {}\n", "sources: missing (required)"),
    ("sources: []\n", "sources: empty; give at least one source"),
    ("sources: [a.mp4]\n", "sources[0]: expected a mapping (key: value), got a "
                           "string"),
    ("sources: [{url: a.mp4}]\n", "sources[0].name: missing (required)"),
    ("sources: [{name: a}]\n", "sources[0].url: missing (required)"),
    ("sources: [{name: a, url: ''}]\n", "sources[0].url: empty"),
    ("sources: [{name: a/b, url: a.mp4}]\n", "sources[0].name: 'a/b' must be"),
    ("sources: [{name: a.events, url: a.mp4}]\n", "sources[0].name: 'a.events' "
                                                  "must be"),
    ("sources: [{name: 7, url: a.mp4}]\n", "sources[0].name: expected a string, "
                                           "got a number"),
    ("sources: [{name: door, url: a}, {name: Door, url: b}]\n",
     "sources[1].name: 'Door' is also the name of sources[0]; names must be unique"),
    ("sources: [{name: a, url: a, lnies: []}]\n", "sources[0].lnies: unknown key"),
    ("sources: [{name: a, url: a, lines: {points: 1}}]\n",
     "sources[0].lines: expected a list, got a mapping"),
    ("sources: [{name: a, url: a}, {name: b, url: b, zones: [{points: "
     "[[0.5, 0], [640, 0], [640, 480]]}]}]\n",
     "sources[1].zones[0].points: 0.5 is a fraction of the frame but 640 is a "
     "pixel"),
    ("sources: [{name: a, url: a, lines: [{points: [[0, 0], [1, 1], [0, 1]]}]}]\n",
     "sources[0].lines[0].points: 3 entries; at most 2"),
    ("sources: [{name: a, url: a, lines: [{points: [[0, 0], 1]}]}]\n",
     "sources[0].lines[0].points[1]: expected [x, y], got a number"),
    ("sources: [{name: a, url: a, lines: [{points: [[0, 0], [1, 1, 1]]}]}]\n",
     "sources[0].lines[0].points[1]: expected [x, y], got a list of 3"),
    ("sources: [{name: a, url: a, lines: [{points: [['0.5', 0], [1, 1]]}]}]\n",
     "sources[0].lines[0].points[0][0]: expected a number, got a string"),
    ("sources: [{name: a, url: a, lines: [{points: [[0, 0], [1, 1]]}]}]\n"
     .replace("[0, 0]", "[-1, 0]"), "sources[0].lines[0].points[0][0]: -1 must be "
                                    "a number >= 0"),
    ("sources: [{name: a, url: a, lines: [{points: [[0.5, 0.5], [0.5, 0.5]]}]}]\n",
     "sources[0].lines[0].points: the two points are the same"),
    ("sources: [{name: a, url: a, lines: [{points: [[0, 0]]}]}]\n",
     "sources[0].lines[0].points: needs at least 2 points, got 1"),
    ("sources: [{name: a, url: a, zones: [{points: [[0, 0], [1, 1], [1, 0], "
     "[0, 1]]}]}]\n", "sources[0].zones[0].points: the polygon crosses itself"),
    ("sources: [{name: a, url: a, zones: [{points: [[0, 0], [0.5, 0.5], "
     "[1, 1]]}]}]\n", "sources[0].zones[0].points: the points enclose no area"),
    ("sources: [{name: a, url: a, zones: [{points: [[0, 0], [1, 1]]}]}]\n",
     "sources[0].zones[0].points: needs at least 3 points, got 2"),
    ("sources: [{name: a, url: a, zones: [{}]}]\n",
     "sources[0].zones[0].points: missing (required)"),
    ("sources: [{name: a, url: a, lines: [{points: [[0, 0], [1, 1]], "
     "loiter_s: 5}]}]\n", "sources[0].lines[0].loiter_s: unknown key (allowed: "
                          "anchor, classes, name, points)"),
    ("sources: [{name: a, url: a, lines: [{name: 'x y', points: [[0, 0], [1, 1]]}"
     "]}]\n", "sources[0].lines[0].name: must be up to 64 letters"),
    ("sources: [{name: a, url: a, lines: [{name: x, points: [[0, 0], [1, 1]]}, "
     "{name: x, points: [[0, 1], [1, 0]]}]}]\n",
     "sources[0].lines[1].name: 'x' is given twice in this source"),
    ("sources: [{name: a, url: a, anchor: top}]\n",
     "sources[0].anchor: 'top' is not one of center, bottom"),
    ("sources: [{name: a, url: a, zones: [{points: [[0, 0], [1, 0], [1, 1]], "
     "inertia: 0}]}]\n", "sources[0].zones[0].inertia: 0 must be an integer >= 1"),
    ("sources: [{name: a, url: a, inertia: yes}]\n",
     "sources[0].inertia: expected an integer, got a string"),
    ("sources: [{name: a, url: a, inertia: 2.5}]\n",
     "sources[0].inertia: expected an integer, got a number"),
    ("defaults: {loiter_s: 0}\nsources: [{name: a, url: a}]\n",
     "defaults.loiter_s: 0 must be a number > 0"),
    ("defaults: {loiter_s: .nan}\nsources: [{name: a, url: a}]\n",
     "defaults.loiter_s: nan must be a number > 0"),
    ("sources: [{name: a, url: a, zones: [{points: [[0, 0], [1, 0], [1, 1]], "
     "classes: []}]}]\n", "sources[0].zones[0].classes: empty; leave the key out"),
    ("sources: [{name: a, url: a, zones: [{points: [[0, 0], [1, 0], [1, 1]], "
     "classes: [true]}]}]\n", "sources[0].zones[0].classes[0]: expected an "
                              "integer, got true/false"),
    ("defaults: {tracker: deepsort}\nsources: [{name: a, url: a}]\n",
     "defaults.tracker: 'deepsort' is not one of"),
    ("defaults: {conf: 1.5}\nsources: [{name: a, url: a}]\n",
     "defaults.conf: 1.5 must be in [0, 1]"),
    ("defaults: {modle: yolo}\nsources: [{name: a, url: a}]\n",
     "defaults.modle: unknown key"),
    ("events: {webhook: {secret: x}}\nsources: [{name: a, url: a}]\n",
     "events.webhook.url: missing (required)"),
    ("events: {webhook: {url: 'ftp://h/x'}}\nsources: [{name: a, url: a}]\n",
     "events.webhook.url: webhook URL ftp://h/x is not supported; use http://, "
     "https://"),
    ("events: {webhook: {url: 'http://h/x', secret: ''}}\n"
     "sources: [{name: a, url: a}]\n", "events.webhook.secret: empty"),
    ("events: {mqtt: {url: 'mqtt://h/t', password: x}}\n"
     "sources: [{name: a, url: a}]\n",
     "events.mqtt.password: given without a username"),
    ("events: {smtp: {}}\nsources: [{name: a, url: a}]\n",
     "events.smtp: unknown key (allowed: mqtt, webhook)"),
    ("sources: [{name: a, url: a, clips: {on: [source_down]}}]\n",
     "sources[0].clips.on[0]: 'source_down' is not one of line_cross, zone_enter"),
    ("sources: [{name: a, url: a, clips: {pre_s: 3}}]\n",
     "sources[0].clips.on: missing (required)"),
    ("sources: [{name: a, url: a, clips: {on: [loiter], pre_s: 10, max_s: 12}}]\n",
     "sources[0].clips.max_s: 12 is shorter than pre_s + post_s (15)"),
    ("sources: [{name: a, url: a, clips: {on: [loiter], pre_s: -1}}]\n",
     "sources[0].clips.pre_s: -1 must be a number >= 0"),
    ("sources: [{name: a, url: a, record: {segment_s: 0.5, keep_days: 7}}]\n",
     "sources[0].record: segment_s must be >= 1 s, got 0.5"),
    ("sources: [{name: a, url: a, record: {segment_s: 60, keep_gb: -1}}]\n",
     "sources[0].record.keep_gb: "),
    ("sources: [{name: a, url: a, record: {segment_s: 60, keep_days: 7, "
     "keep_gb: 5}}]\n", "sources[0].record: give keep_days or keep_gb, not both"),
    ("sources: [{name: a, url: a, record: {keep_days: 7}}]\n",
     "sources[0].record.segment_s: missing (required)"),
    ("sources:\n  - name: a\n    name: b\n    url: a\n",
     "line 3: key 'name' is given twice in one mapping"),
    ("sources: [{name: a, url: '${NOPE}/a.mp4'}]\n",
     "sources[0].url: environment variable NOPE is not set"),
    ("sources: [{name: a, url: '${1X}'}]\n",
     "sources[0].url: '${' must start ${NAME}"),
    ("sources: [{name: a, url: 'x${DIR'}]\n", "sources[0].url: '${' must start"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_every_kind_of_bad_file_is_one_line_naming_the_key(tmp_path, text,
                                                            message) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    error = str(info.value)
    assert error.startswith(f"{tmp_path / 'cams.yaml'}: {message}"), error
    assert "\n" not in error


def test_aliases_cannot_blow_a_small_file_up(tmp_path) -> None:
    lol = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 8):
        lol += f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join(
            [f"*{chr(96 + i)}"] * 10) + "]\n"
    with pytest.raises(ConfigError, match="more than 100000 values"):
        load(tmp_path, lol + "sources: []\n")


def test_a_huge_or_missing_file_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match=f"larger than {MAX_FILE_BYTES} bytes"):
        load(tmp_path, "#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read it"):
        load_camera_config(tmp_path / "nope.yaml", {})


def test_errors_never_show_a_value_from_the_environment(tmp_path) -> None:
    cases = [
        "sources: [{name: '${CAM_PASS}!', url: a}]\n",  # a bad name from ${ENV}
        "events: {mqtt: {url: 'ftp://u:${CAM_PASS}@h/t'}}\n"
        "sources: [{name: a, url: a}]\n",
        "events: {webhook: {url: 'http://u:${HOOK}@h:0x/t'}}\n"
        "sources: [{name: a, url: a}]\n",
        "sources: [{name: a, url: a, clips: {on: ['${HOOK}']}}]\n",
    ]
    for text in cases:
        with pytest.raises(ConfigError) as info:
            load(tmp_path, text)
        assert "pw-Secret-1" not in str(info.value)
        assert "hook-Secret-2" not in str(info.value)


def test_parse_source_entry_checks_one_entry_without_expanding() -> None:
    entry = parse_source_entry(
        {"name": "cam1", "url": "rtsp://${CAM_PASS}@h/s",
         "lines": [{"points": [[0, 0.5], [1, 0.5]]}]},
        Defaults(anchor="center"))
    # A request body is not the operator's file: ${...} stays as written.
    assert entry.url == "rtsp://${CAM_PASS}@h/s"
    assert entry.analytics.anchor == "center"
    with pytest.raises(ConfigError, match=r"^source\.lines\[0\]\.points: needs at"):
        parse_source_entry({"name": "c", "url": "u", "lines": [{"points": [[0, 0]]}]})
    with pytest.raises(ConfigError, match=r"^sources\[3\]\.name: missing"):
        parse_source_entry({"url": "u"}, None, "sources[3]")


def test_shape_options_override_the_configs(tmp_path) -> None:
    points = parse_points([[0, 0], [1, 0], [1, 1]])
    config = AnalyticsConfig(
        lines=(ShapeSpec("l", parse_points([[0, 0], [1, 1]]), anchor="center",
                         classes=("car",)),),
        zones=(ShapeSpec("z", points, inertia=5, loiter_s=2.0),
               ShapeSpec("y", points)),
        anchor="bottom", zone_inertia=2, loiter_s=9.0, line_classes=("person",))
    [line], [z, y] = config.build("s", ["person", "car"])
    assert (line.anchor, line.classes.tolist()) == ("center", [1])
    assert (z.inertia, z.loiter_s, y.inertia, y.loiter_s) == (5, 2.0, 2, 9.0)


def frame_source(name: str, cfg: PipelineConfig) -> FrameSource:
    return FrameSource(scene_frames(), name=name, fps=FPS, config=cfg.sources)


def kinds(path: Path) -> list[str]:
    return [json.loads(x)["event"] for x in path.read_text().splitlines()]


def test_the_builder_gives_each_named_source_its_own_analytics(tmp_path) -> None:
    """``a`` runs the config's line; ``b`` its own zone; ``c`` (a camera
    file's entry) its own line and zone."""
    cfg = PipelineConfig(analytics=AnalyticsConfig.of([LINE]), progress=False,
                         sources=SourceConfig(),
                         outputs=OutputConfig(out_dir=tmp_path, video=False,
                                              jsonl=True))
    build_pipeline([frame_source("a", cfg), frame_source("b", cfg)], BlobDetector(),
                   cfg, source_analytics={"b": AnalyticsConfig.of(zones=[ZONE])}
                   ).run()
    assert kinds(tmp_path / "a.events.jsonl") == ["line_cross", "line_cross"]
    assert kinds(tmp_path / "b.events.jsonl") == ["zone_enter", "zone_exit"]


def test_a_source_entry_keeps_its_name_and_analytics(tmp_path) -> None:
    video = write_scene_video(tmp_path / "clip.mp4")
    entry = SourceEntry("cam-7", str(video), AnalyticsConfig.of([LINE], [ZONE]))
    cfg = PipelineConfig(progress=False, tracker="bytetrack",
                         outputs=OutputConfig(out_dir=tmp_path / "out", video=False,
                                              jsonl=True))
    build_pipeline([entry], BlobDetector(), cfg).run()
    assert kinds(tmp_path / "out" / "cam-7.events.jsonl") == [
        "line_cross", "zone_enter", "zone_exit", "line_cross"]


def test_lines_of_a_source_need_a_tracker(tmp_path) -> None:
    cfg = PipelineConfig(progress=False, tracker="none")
    entry = SourceEntry("a", "a.mp4", AnalyticsConfig.of([LINE]))
    with pytest.raises(ValueError, match="tracker 'none' cannot be used with lines"):
        build_pipeline([entry], BlobDetector(), cfg)
    unknown = SourceEntry("a", "a.mp4", AnalyticsConfig.of(
        [LINE], line_classes=("person",)))
    with pytest.raises(ValueError, match="source a: line 'door': unknown class"):
        build_pipeline([unknown], BlobDetector(), PipelineConfig(progress=False))
