"""Each stage object alone, with plain queues: the runner only wires these."""

from __future__ import annotations

import queue
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from core.types import Detections, Frame, Result
from pipeline.metrics import Metrics
from pipeline.overlay import Overlay, OverlayConfig
from pipeline.scheduler import BatchInfer, Preprocess, get_batch
from pipeline.sinks import Sink
from pipeline.sources import make_source
from pipeline.stages import (
    Capture,
    Draw,
    EndOfStream,
    RunState,
    StageThread,
    Track,
    Write,
    relay,
)
from pipeline.tracking import make_tracker
from tests.conftest import StubDetector, make_detections, write_video


def frame(index: int = 0, source: str = "s") -> Frame:
    return Frame(source, index, index / 10, np.zeros((120, 160, 3), np.uint8), 1.0)


class ListSink(Sink):
    def __init__(self) -> None:
        self.results: list[Result] = []
        self.closed = False

    def write(self, result: Result) -> None:
        self.results.append(result)

    def close(self) -> None:
        self.closed = True


def test_capture_counts_and_closes(tmp_path):
    video = write_video(tmp_path / "v.mp4", frames=12)
    metrics = Metrics()
    source = make_source(str(video))
    source.open()
    frames = list(Capture(source, metrics).frames())
    assert [f.index for f in frames] == list(range(12))
    assert metrics.source(source.source_id).read == 12
    assert len(metrics.latencies["capture"]) == 12


def test_preprocess_then_batch_infer_route_results_by_frame():
    metrics, detector = Metrics(), StubDetector(max_batch=4)
    pending = [Preprocess(detector, metrics)(frame(i, f"s{i % 2}")) for i in range(3)]
    results = BatchInfer(detector, metrics)(pending)
    assert [(r.frame.source_id, r.frame.index) for r in results] == [
        ("s0", 0), ("s1", 1), ("s0", 2)]
    assert detector.batch_sizes == [3]
    assert metrics.source("s0").processed == 2
    assert set(results[0].timings) == {"preprocess", "infer"}


def test_batch_infer_applies_classes():
    class Many(StubDetector):
        def infer(self, batch):
            return [Detections([[0, 0, 5, 5], [1, 1, 6, 6], [2, 2, 9, 9]],
                               [0.2, 0.9, 0.5], [0, 1, 1]) for _ in batch]

    detector = Many()
    detector.classes = frozenset({1})
    metrics = Metrics()
    [result] = BatchInfer(detector, metrics)([Preprocess(detector, metrics)(frame())])
    assert result.detections.class_ids.tolist() == [1, 1]
    assert result.detections.scores.tolist() == [pytest.approx(0.9),
                                                 pytest.approx(0.5)]


def test_track_and_draw_return_new_results():
    metrics = Metrics()
    original = Result(frame(), make_detections([[10, 10, 40, 40]]), {"infer": 0.01})
    tracked = Track(make_tracker("bytetrack", frame_rate=10), metrics)(original)
    assert tracked is not original and (original.detections.track_ids == -1).all()
    assert tracked.detections.track_ids.tolist() == [1]
    drawn = Draw(Overlay(["thing"], OverlayConfig()), metrics)(tracked)
    assert drawn.image is not None and drawn.image is not drawn.frame.image
    assert drawn.frame.image.max() == 0  # the frame's own pixels are untouched
    assert {"infer", "track", "overlay"} <= set(drawn.timings)
    assert Track(None, metrics)(original) is original
    with pytest.raises(FrozenInstanceError):
        drawn.detections = Detections.empty()  # type: ignore[misc]


def test_write_counts_and_close_finalises_every_sink():
    metrics, sinks = Metrics(), [ListSink(), ListSink()]
    written = []
    write = Write(sinks, metrics, lambda: written.append(1))
    write(Result(frame(), Detections.empty()))
    assert metrics.source("s").written == 1 and written == [1]
    assert all(len(s.results) == 1 for s in sinks)
    write.close()
    assert all(s.closed for s in sinks)


def test_relay_applies_work_and_forwards_end_of_stream():
    state = RunState()
    inbox, outbox = queue.Queue(), queue.Queue()
    for i in range(3):
        inbox.put(Result(frame(i), Detections.empty()))
    inbox.put(EndOfStream("s"))
    seen = []

    def work(result: Result) -> Result:
        seen.append(result.frame.index)
        return result

    thread = StageThread("test", lambda t: relay(t, inbox, outbox, work), state, "s")
    thread.start()
    thread.join(5)
    assert seen == [0, 1, 2] and state.error is None
    items = [outbox.get_nowait() for _ in range(4)]
    assert isinstance(items[-1], EndOfStream)


def test_get_batch_stops_at_max_items_and_keeps_end_markers():
    q: queue.Queue = queue.Queue()
    for i in range(1, 6):
        q.put(i)
    assert get_batch(q, 0, 3, 0.5) == [0, 1, 2]
    q2: queue.Queue = queue.Queue()
    q2.put(EndOfStream("a"))
    items = get_batch(q2, 7, 4, 0.01)
    assert items[0] == 7 and isinstance(items[1], EndOfStream)
