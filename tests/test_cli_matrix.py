"""Every model flag with every shipped model, in-process through ``main(argv)``:
a run, a one-line error (exit 2), or a logged "ignored"; never a traceback."""

from __future__ import annotations

import logging

import pytest

import run_stream
from engines.build import SHIPPED
from tests.conftest import write_video

FLAGS = {
    "conf": ["--conf", "0.3"],
    "iou": ["--iou", "0.5"],
    "threads": ["--threads", "1"],
    "device": ["--device", "cuda"],
    "backend": ["--backend", "torch"],
    "batch": ["--batch", "2"],
    "tracker": ["--tracker", "bytetrack"],
    "stride": ["--stride", "2"],
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("matrix") / "clip.mp4", frames=4,
                       size=(256, 192))


@pytest.mark.parametrize("flag", sorted(FLAGS))
@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_flag_with_model_runs_or_fails_in_one_line(model, flag, clip, tmp_path,
                                                   caplog):
    argv = ["--model", model, "--source", str(clip), "--max-frames", "2",
            "--out", str(tmp_path), "--no-progress", "--no-video", *FLAGS[flag]]
    with caplog.at_level(logging.INFO):
        rc = run_stream.main(argv)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert rc in (0, 2), caplog.text
    if rc == 0:
        assert errors == []
        jsonl = (tmp_path / "clip.jsonl").read_text().splitlines()
        assert len(jsonl) == (1 if flag == "stride" else 2)
    else:
        assert len(errors) == 1
        message = errors[0].getMessage()
        assert "\n" not in message and "Traceback" not in message
        assert any(word in message for word in (model, "cuda", "torch", "--"))
