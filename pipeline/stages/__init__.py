"""Pipeline stages: the thread/queue machinery and the work each per-source
stage does (inference itself is ``pipeline.scheduler``'s)."""

from pipeline.stages.machinery import (
    POLL_S,
    EndOfStream,
    RunState,
    StageError,
    StageThread,
    get,
    put,
    put_drop_oldest,
    relay,
    wait_for,
)
from pipeline.stages.work import Capture, Draw, Track, Write

__all__ = [
    "POLL_S",
    "Capture",
    "Draw",
    "EndOfStream",
    "RunState",
    "StageError",
    "StageThread",
    "Track",
    "Write",
    "get",
    "put",
    "put_drop_oldest",
    "relay",
    "wait_for",
]
