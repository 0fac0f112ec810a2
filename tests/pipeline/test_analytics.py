"""Lines, zones and events on generated tracks whose true crossings, stays and
occupancy are known by construction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.events import EVENT_KINDS, Event
from core.types import Detections
from pipeline.analytics import (
    LineCounter,
    Zone,
    anchor_points,
    parse_line_spec,
    parse_points,
    parse_zone_spec,
    points_in_polygon,
)

SIZE = (640, 480)  # (width, height)
# A vertical segment from (320, 100) down to (320, 380): moving right to left
# is `in` (the A->B arrow turned clockwise on screen points left).
LINE = [[320, 100], [320, 380]]
SQUARE = [[100, 100], [300, 100], [300, 300], [100, 300]]


def dets(rows: list[tuple[int, int, float, float]]) -> Detections:
    """Boxes 20×40 px whose bottom centre is (x, y): rows of (track, class, x, y)."""
    if not rows:
        return Detections.empty()
    arr = np.asarray(rows, dtype=np.float64)
    x, y = arr[:, 2], arr[:, 3]
    xyxy = np.stack([x - 10, y - 40, x + 10, y], axis=1)
    return Detections(xyxy, np.full(len(arr), 0.9), arr[:, 1], arr[:, 0])


def feed(obj, frames, times):
    """Run ``obj.update`` over per-frame rows; return every event."""
    events = []
    for i, (rows, t) in enumerate(zip(frames, times, strict=True)):
        events += obj.update(dets(rows), t, SIZE, frame=i)
    return events


def walk(track, cls, start, end, n):
    """n positions from start to end (both included) for one track."""
    xs = np.linspace(start[0], end[0], n)
    ys = np.linspace(start[1], end[1], n)
    return [[(track, cls, x, y)] for x, y in zip(xs, ys, strict=True)]


def merge(*tracks):
    n = max(len(t) for t in tracks)
    return [[row for t in tracks if i < len(t) for row in t[i]] for i in range(n)]


# ---------------------------------------------------------------- lines


def test_clean_crossings_counted_exactly_both_ways():
    frames = merge(
        walk(1, 0, (500, 200), (100, 200), 40),  # right to left: in
        walk(2, 0, (450, 300), (150, 250), 30),  # in
        walk(3, 0, (100, 150), (500, 150), 50),  # left to right: out
        walk(4, 1, (600, 370), (50, 110), 60),  # class 1, in, diagonal
        walk(5, 1, (100, 50), (500, 50), 40),  # above the segment: nothing
    )
    counter = LineCounter(LINE, "door", class_names=["person", "car"], source="cam")
    events = feed(counter, frames, np.arange(len(frames)) / 10)
    assert counter.counts == {(0, "in"): 2, (0, "out"): 1, (1, "in"): 1}
    assert counter.count("in") == 3 and counter.count(class_id=0) == 3
    assert sorted(e.track_id for e in events) == [1, 2, 3, 4]
    by_track = {e.track_id: e for e in events}
    assert by_track[3].direction == "out" and by_track[4].class_name == "car"
    assert {e.event for e in events} == {"line_cross"}
    assert {e.line for e in events} == {"door"} and {e.source for e in events} == {
        "cam"
    }


def test_direction_convention_for_a_line_drawn_left_to_right():
    counter = LineCounter([[0.1, 0.5], [0.9, 0.5]])
    feed(counter, walk(1, 0, (320, 100), (320, 400), 30), np.arange(30) / 10)
    assert counter.counts == {(0, "in"): 1}  # moving down the image


def test_going_back_counts_out_after_in_only_when_it_really_crosses_back():
    there = walk(1, 0, (420, 200), (200, 200), 20)
    back = walk(1, 0, (200, 200), (420, 200), 20)
    counter = LineCounter(LINE)
    feed(counter, there + back, np.arange(40) / 10)
    assert counter.counts == {(0, "in"): 1, (0, "out"): 1}

    # Turning back just past the line, inside the hysteresis band: nothing.
    margin = counter.geometry(SIZE)[2]
    near = walk(2, 0, (420, 200), (320 - margin / 2, 200), 20)
    away = walk(2, 0, (320 - margin / 2, 200), (420, 200), 20)
    counter.reset()
    feed(counter, near + away, np.arange(40) / 10)
    assert counter.counts == {}


def test_anchor_jittering_on_the_line_counts_at_most_once():
    rng = np.random.default_rng(3)
    counter = LineCounter(LINE)
    margin = counter.geometry(SIZE)[2]
    # Approach from the right, then stand on the line with jitter just under
    # the margin for 300 frames, then stay.
    approach = walk(1, 0, (420, 240), (320, 240), 20)
    jitter = [
        [(1, 0, 320 + dx, 240 + dy)]
        for dx, dy in rng.uniform(-0.95 * margin, 0.95 * margin, (300, 2))
    ]
    events = feed(counter, approach + jitter, np.arange(320) / 30)
    assert len(events) <= 1 and counter.count() == len(events)
    assert counter.count() == 0  # never clearly on the left

    # A real crossing followed by jitter on the line: exactly one.
    counter.reset()
    across = walk(1, 0, (420, 240), (200, 240), 20)
    settle = walk(1, 0, (200, 240), (320, 240), 10)
    feed(counter, across + settle + jitter, np.arange(330) / 30)
    assert counter.counts == {(0, "in"): 1}


def test_untracked_boxes_never_count():
    frames = walk(-1, 0, (500, 200), (100, 200), 40)
    frames = merge(frames, walk(-1, 0, (100, 250), (500, 250), 40))
    counter = LineCounter(LINE)
    assert feed(counter, frames, np.arange(40) / 10) == []
    assert counter.counts == {}


@pytest.mark.parametrize("predicted", [False, True])
def test_a_crossing_during_a_detection_gap_counts_once(predicted):
    path = walk(7, 0, (500, 200), (100, 200), 41)
    # Frames 15..25 straddle the line (x from 350 to 250): no detection there,
    # or the tracker's predicted boxes (slightly off) instead.
    frames = []
    for i, rows in enumerate(path):
        if 15 <= i <= 25:
            if predicted:
                (tid, cls, x, y) = rows[0]
                frames.append([(tid, cls, x + 3, y - 2)])
            else:
                frames.append([])
        else:
            frames.append(rows)
    counter = LineCounter(LINE)
    events = feed(counter, frames, np.arange(41) / 10)
    assert counter.counts == {(0, "in"): 1} and len(events) == 1


def test_crossing_the_extension_beyond_the_ends_does_not_count():
    counter = LineCounter(LINE)  # y from 100 to 380
    below = walk(1, 0, (500, 420), (100, 420), 40)  # crosses x=320 at y=420
    above = walk(2, 0, (100, 60), (500, 60), 40)
    # Round the bottom end: down on the right, across below, up on the left.
    around = (
        walk(3, 0, (400, 300), (400, 430), 15)
        + walk(3, 0, (400, 430), (240, 430), 15)
        + walk(3, 0, (240, 430), (240, 300), 15)
    )
    # Touching the end's extension exactly one pixel past B.
    graze = walk(4, 0, (500, 381), (100, 381), 40)
    frames = merge(below, above, around, graze)
    assert feed(counter, frames, np.arange(len(frames)) / 10) == []
    assert counter.counts == {}


def test_same_counts_at_every_frame_rate():
    paths = merge(
        walk(1, 0, (600, 200), (50, 200), 90),
        walk(2, 0, (50, 260), (600, 260), 90),
    )
    results = []
    for stride in (1, 3, 7):
        counter = LineCounter(LINE)
        feed(counter, paths[::stride], (np.arange(90) / 30)[::stride])
        results.append(counter.counts)
    assert results == [{(0, "in"): 1, (0, "out"): 1}] * 3


def test_class_filter_by_name():
    frames = merge(
        walk(1, 0, (500, 200), (100, 200), 30), walk(2, 2, (500, 250), (100, 250), 30)
    )
    counter = LineCounter(LINE, classes=["bike"], class_names=["person", "car", "bike"])
    feed(counter, frames, np.arange(30) / 10)
    assert counter.counts == {(2, "in"): 1}
    with pytest.raises(ValueError, match="'bus'"):
        LineCounter(LINE, classes=["bus"], class_names=["person"])


def test_forgotten_tracks_are_dropped_and_do_not_count():
    counter = LineCounter(LINE, forget_after_s=1.0)
    feed(counter, walk(1, 0, (500, 200), (400, 200), 5), np.arange(5) / 10)
    counter.update(Detections.empty(), 2.0, SIZE)  # 1.6 s later: forgotten
    assert len(counter._tracks) == 0
    counter.update(dets([(1, 0, 100, 200)]), 2.1, SIZE)
    assert counter.counts == {}

    # Many short tracks over a long run keep the state small.
    for i in range(300):
        counter.update(dets([(100 + i, 0, 500, 200)]), 3 + i * 0.1, SIZE)
    assert len(counter._tracks) <= 11


def test_line_reset_and_clock_going_back():
    counter = LineCounter(LINE)
    feed(counter, walk(1, 0, (500, 200), (100, 200), 20), np.arange(20) / 10)
    assert counter.count() == 1
    with pytest.raises(ValueError, match=r"0\.5.*before"):
        counter.update(Detections.empty(), 0.5, SIZE)
    counter.reset()
    assert counter.counts == {}
    counter.update(Detections.empty(), 0.0, SIZE)  # a fresh clock is fine now


def test_line_rejects_bad_arguments():
    with pytest.raises(ValueError, match="takes 2 points"):
        LineCounter([[0, 0], [10, 10], [20, 20]])
    with pytest.raises(ValueError, match="anchor 'top'"):
        LineCounter(LINE, anchor="top")
    with pytest.raises(ValueError, match="margin"):
        LineCounter(LINE, margin=-1)
    with pytest.raises(ValueError, match="same point"):
        LineCounter([[5, 5], [5, 5]]).update(Detections.empty(), 0.0, SIZE)
    with pytest.raises(ValueError, match="name 'a b'"):
        LineCounter(LINE, "a b")


# ---------------------------------------------------------------- zones


def test_edge_flicker_gives_one_enter_and_one_exit():
    rng = np.random.default_rng(0)
    zone = Zone(SQUARE, "desk", inertia=3)
    # Walk in, stand on the right edge (x = 300) for 200 frames with the anchor
    # flipping in and out at random (never 3 times out in a row), walk out.
    inside = walk(1, 0, (50, 200), (290, 200), 25)
    flips = []
    out_run = 0
    for _ in range(200):
        out = rng.random() < 0.5 and out_run < 2
        out_run = out_run + 1 if out else 0
        flips.append([(1, 0, 302 if out else 298, 200)])
    leave = walk(1, 0, (310, 200), (500, 200), 20)
    frames = inside + flips + leave
    events = feed(zone, frames, np.arange(len(frames)) / 10)
    assert [e.event for e in events] == ["zone_enter", "zone_exit"]


def test_inertia_updates_are_needed_in_a_row():
    zone = Zone(SQUARE, inertia=3)
    seq = [250, 250, 50, 250, 250, 50, 250, 250, 250]  # x of the anchor
    events = feed(zone, [[(1, 0, x, 200)] for x in seq], np.arange(len(seq)))
    assert [(e.event, e.frame) for e in events] == [("zone_enter", 8)]
    assert zone.dwell == {1: 2.0}  # counted from frame 6, the run's first


def _stay_frames(times: np.ndarray) -> list:
    """A track walking at 50 px/s from x = 0 through the square (x 100..300)
    and beyond: inside for exactly 4 s, from t = 2 to t = 6."""
    return [[(1, 0, 50.0 * t, 200)] for t in times]


@pytest.mark.parametrize(
    "times",
    [
        np.arange(0, 10, 0.1),  # 10 fps
        np.arange(0, 10, 0.3),  # every 3rd frame
        np.cumsum(np.random.default_rng(1).uniform(0.02, 0.3, 60)),  # irregular
    ],
    ids=["10fps", "stride3", "irregular"],
)
def test_dwell_is_in_timestamps_and_exact_to_a_frame_period(times):
    zone = Zone(SQUARE, inertia=2)
    events = feed(zone, _stay_frames(times), times)
    exits = [e for e in events if e.event == "zone_exit"]
    assert len(exits) == 1
    period = np.diff(times).max()
    assert abs(exits[0].dwell_s - 4.0) <= period + 1e-9


def test_one_loiter_event_per_track_and_zone():
    zone = Zone(SQUARE, "desk", loiter_s=2.0, inertia=2, class_names=["person"])
    frames = [[(1, 0, 200, 200), (2, 0, 250, 250)]] * 60  # 6 s standing still
    frames += [[(2, 0, 250, 250)]] * 5
    frames += [[(1, 0, 200, 200), (2, 0, 250, 250)]] * 10  # 1 back after a gap
    events = feed(zone, frames, np.arange(len(frames)) / 10)
    loiters = [e for e in events if e.event == "loiter"]
    assert sorted(e.track_id for e in loiters) == [1, 2]
    assert all(abs(e.dwell_s - 2.0) < 1e-9 for e in loiters)
    assert loiters[0].class_name == "person" and loiters[0].zone == "desk"
    assert loiters[0].timestamp == pytest.approx(2.0)


def test_occupancy_counts_untracked_but_events_need_a_track():
    zone = Zone(SQUARE, inertia=1, classes=[0, 1])
    rows = [(-1, 0, 200, 200), (-1, 1, 150, 150), (5, 0, 250, 250), (6, 1, 500, 200)]
    rows += [(7, 2, 200, 200)]  # class filtered out
    events = zone.update(dets(rows), 0.0, SIZE)
    assert zone.occupancy == {0: 2, 1: 1}
    assert [(e.event, e.track_id) for e in events] == [("zone_enter", 5)]
    zone.update(Detections.empty(), 0.1, SIZE)
    assert zone.occupancy == {}


def test_vanished_track_is_exited_after_the_timeout():
    zone = Zone(SQUARE, inertia=2, exit_after_s=1.0)
    seen = [[(3, 0, 200, 200)]] * 20  # 0.0 .. 1.9 s
    events = feed(zone, seen + [[]] * 10, np.arange(30) / 10)  # unseen to 2.9 s
    assert [e.event for e in events] == ["zone_enter"]
    assert zone.dwell == {3: pytest.approx(2.9)}  # may still be there, unseen
    events = zone.update(Detections.empty(), 3.0, SIZE)  # unseen for > 1 s
    # Inside from 0.0 s, first update without it at 2.0 s: a 2 s stay.
    assert [(e.event, e.dwell_s) for e in events] == [("zone_exit", pytest.approx(2.0))]
    assert zone.dwell == {}
    assert zone.update(Detections.empty(), 9.0, SIZE) == []


def test_zone_reset_and_fractional_points():
    zone = Zone([0.25, 0.25, 0.75, 0.25, 0.75, 0.75, 0.25, 0.75], inertia=1)
    assert zone.polygon(SIZE).tolist() == [
        [160, 120],
        [480, 120],
        [480, 360],
        [160, 360],
    ]
    zone.update(dets([(1, 0, 320, 240)]), 0.0, SIZE)
    assert zone.dwell == {1: 0.0}
    zone.reset()
    assert zone.dwell == {} and zone.occupancy == {}


def test_zone_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least 3 points"):
        Zone([[0, 0], [10, 10]])
    with pytest.raises(ValueError, match="crosses itself"):
        Zone([[0, 0], [100, 100], [100, 0], [0, 100]])
    with pytest.raises(ValueError, match="no area"):
        Zone([[0, 0], [50, 50], [100, 100]])
    with pytest.raises(ValueError, match="inertia must be an int >= 1, got 0"):
        Zone(SQUARE, inertia=0)
    with pytest.raises(ValueError, match="loiter_s"):
        Zone(SQUARE, loiter_s=-5)


# ---------------------------------------------------------------- geometry


def test_points_fraction_pixel_rule():
    assert parse_points([[0.5, 0.1], [0.5, 0.9]]).fractional
    px = parse_points([[0, 100], [640, 1]])  # 0 and 1 are fine as pixels
    assert not px.fractional and px.to_pixels(SIZE).tolist() == [[0, 100], [640, 1]]
    assert parse_points([0.5, 0.5, 1, 0]).to_pixels(SIZE).tolist() == [
        [320, 240],
        [640, 0],
    ]
    with pytest.raises(ValueError, match=r"0\.5 is a fraction .* 100 is a pixel"):
        parse_points([[0.5, 100], [640, 200]])
    with pytest.raises(ValueError, match="-3"):
        parse_points([[0, -3], [5, 5]])
    with pytest.raises(ValueError, match="odd count"):
        parse_points([1, 2, 3])


def test_anchors():
    xyxy = np.array([[10, 20, 30, 60], [0, 0, 4, 2]], np.float32)
    assert anchor_points(xyxy, "bottom").tolist() == [[20, 60], [2, 2]]
    assert anchor_points(xyxy, "center").tolist() == [[20, 40], [2, 1]]
    assert anchor_points(np.zeros((0, 4)), "center").shape == (0, 2)


def test_points_in_a_concave_polygon():
    ell = np.array([[0, 0], [100, 0], [100, 40], [40, 40], [40, 100], [0, 100]], float)
    pts = [[20, 20], [80, 20], [20, 80], [80, 80], [150, 20], [-5, 50]]
    assert points_in_polygon(np.array(pts), ell).tolist() == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_cli_shorthand_parses():
    line = parse_line_spec("0.5,0.1,0.5,0.9:entrance")
    assert line.name == "entrance" and line.points.xy.tolist() == [
        [0.5, 0.1],
        [0.5, 0.9],
    ]
    assert parse_line_spec("10,20,300,20", default_name="line2").name == "line2"
    zone = parse_zone_spec(" 10,10, 200,10, 200,200, 10,200 :desk")
    assert zone.name == "desk" and len(zone.points) == 4 and not zone.points.fractional


@pytest.mark.parametrize(
    ("parser", "spec", "message"),
    [
        (parse_line_spec, "0.5,0.1,0.5", r"--line '0\.5,0\.1,0\.5': expected .*got 3"),
        (parse_line_spec, "0.5,0.1,0.5,0.9,1,1", "got 6"),
        (parse_line_spec, "0.5,abc,0.5,0.9", "'abc' is not a number"),
        (parse_line_spec, "0.5,0.1,0.5,0.9:", "empty name"),
        (parse_line_spec, "0.5,0.1,0.5,0.9:my door", "name 'my door'"),
        (parse_line_spec, "0.5,10,300,10", r"0\.5 is a fraction"),
        (parse_line_spec, "", "empty value"),
        (parse_zone_spec, "0,0,1,1:z", r"at least 6 numbers\), got 4"),
        (parse_zone_spec, "0,0,1,1,0.5", "even count"),
        (parse_zone_spec, "10,10,200,0.25,200,200", r"0\.25 is a fraction"),
    ],
)
def test_cli_shorthand_errors_are_one_line(parser, spec, message):
    with pytest.raises(ValueError, match=message) as info:
        parser(spec)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- events


def test_event_validation_and_json():
    e = Event(
        event="line_cross",
        line="door",
        direction="in",
        track_id=np.int32(4),
        class_id=np.int32(0),
        frame=np.int64(12),
        timestamp=np.float64(1.5),
        source="cam",
    )
    d = json.loads(e.to_json())
    assert d["track_id"] == 4 and d["frame"] == 12 and "zone" not in d
    assert "clip" not in d and "dwell_s" not in d and len(d["event_id"]) == 32
    assert Event.from_dict(d) == e
    assert Event(event="source_up").event_id != Event(event="source_up").event_id
    assert e.with_paths(clip="clips/a.mp4").to_dict()["clip"] == "clips/a.mp4"
    assert len(EVENT_KINDS) == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event": "explode"}, "unknown event 'explode'"),
        ({"event": "line_cross", "line": "a", "direction": "up"}, "'up'"),
        ({"event": "line_cross", "direction": "in"}, "needs 'line'"),
        ({"event": "zone_exit"}, "needs 'zone'"),
        ({"event": "loiter", "zone": "z", "dwell_s": -1}, "dwell_s"),
        ({"event": "source_up", "timestamp": float("nan")}, "finite"),
    ],
)
def test_event_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Event(**kwargs)


def test_event_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="colour"):
        Event.from_dict({"event": "source_up", "colour": "red"})


def test_points_are_a_private_read_only_copy():
    given = np.array([[10.0, 20.0], [300.0, 20.0]])
    points = parse_points(given)
    given[0, 0] = 99
    assert points.xy[0, 0] == 10
    with pytest.raises(ValueError):
        points.xy[0, 0] = 5
    assert points == parse_points([10, 20, 300, 20]) != parse_points([10, 20, 300, 21])
    assert parse_line_spec("1,2,300,4:a") == parse_line_spec("1,2,300,4:a")
