"""Pipeline stages: the thread/queue machinery and the work each stage does."""

from pipeline.stages.machinery import (
    POLL_S,
    EndOfStream,
    LatestFrames,
    RunState,
    StageError,
    StageThread,
    get,
    get_batch,
    put,
    put_drop_oldest,
    relay,
    wait_for,
)
from pipeline.stages.work import (
    BatchInfer,
    Capture,
    DetectSchedule,
    Draw,
    Pending,
    Preprocess,
    Track,
    Write,
)

__all__ = [
    "POLL_S",
    "BatchInfer",
    "Capture",
    "DetectSchedule",
    "Draw",
    "EndOfStream",
    "LatestFrames",
    "Pending",
    "Preprocess",
    "RunState",
    "StageError",
    "StageThread",
    "Track",
    "Write",
    "get",
    "get_batch",
    "put",
    "put_drop_oldest",
    "relay",
    "wait_for",
]
