"""Training by time: the warm-up/cosine schedule laid over a budget, the stop
rule, and both trainers stopping on ``minutes`` with best.pt / last.pt kept."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from training.schedule import Budget, warmup_cosine


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_warmup_cosine_shape() -> None:
    assert warmup_cosine(0.0, 0.1, start=0.01) == pytest.approx(0.01)
    assert warmup_cosine(0.05, 0.1, start=0.0) == pytest.approx(0.5)
    assert warmup_cosine(0.1, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(0.55, 0.1, floor=0.0) == pytest.approx(0.5)  # cosine midpoint
    assert warmup_cosine(1.0, 0.1, floor=0.05) == pytest.approx(0.05)
    assert warmup_cosine(3.0, 0.1, floor=0.05) == pytest.approx(0.05)  # clamped
    after = [warmup_cosine(p / 20, 0.1) for p in range(2, 21)]
    assert all(a >= b for a, b in itertools.pairwise(after))
    with pytest.raises(ValueError, match="warmup"):
        warmup_cosine(0.5, 1.0)


def test_time_budget_progress_and_stop() -> None:
    clock = FakeClock()
    budget = Budget(epochs=3, steps_per_epoch=10, seconds=60.0, clock=clock)
    assert budget.timed and budget.progress(0) == 0.0 and not budget.spent(0)
    clock.now += 15
    assert budget.progress(999) == pytest.approx(0.25)  # steps do not matter
    clock.now += 45
    assert budget.spent(1) and budget.progress(1) == 1.0
    assert budget.warmup(200, 0.05) == 0.05  # a fraction of the budget


def test_resumed_budget_counts_time_already_spent() -> None:
    clock = FakeClock()
    budget = Budget(epochs=1, steps_per_epoch=1, seconds=100.0, already=40.0,
                    clock=clock)
    assert budget.progress(0) == pytest.approx(0.4)
    clock.now += 60
    assert budget.spent(0)


def test_epoch_budget_counts_steps() -> None:
    budget = Budget(epochs=4, steps_per_epoch=25)
    assert not budget.timed and budget.total_steps == 100
    assert budget.progress(50) == 0.5 and not budget.spent(99) and budget.spent(100)
    assert budget.warmup(10) == pytest.approx(0.1)
    assert budget.warmup(1000) == 0.5  # never more than half the run
    with pytest.raises(ValueError, match="budget"):
        Budget(1, 1, seconds=-1)


def assert_decays(history: list[dict], peak: float) -> None:
    """Epoch-end learning rates rise to near the peak, then only fall (timing on a
    loaded machine decides where the epochs end, not the shape)."""
    lrs = [r["lr"] for r in history]
    top = lrs.index(max(lrs))
    assert max(lrs) <= peak * (1 + 1e-6)
    assert all(a >= b for a, b in itertools.pairwise(lrs[top:]))
    assert lrs[-1] < peak


@pytest.mark.usefixtures("one_thread")
def test_yolo_trains_for_minutes(tmp_path: Path) -> None:
    from tests.training.test_yolo_train import write_easy_dataset
    from training.yolo.train import TrainConfig, train

    data = write_easy_dataset(tmp_path / "d", n_train=16, n_val=2, size=64)
    cfg = TrainConfig(data=str(data), imgsz=64, epochs=1, minutes=0.08, batch=8,
                      lr=1e-3, augment=False, val_every=1000, out=str(tmp_path / "r"))
    report = train(cfg)
    history = report["history"]
    assert len(history) > 1  # epochs=1 is ignored: the budget decides
    assert report["seconds"] >= 4.8  # stops only once the budget is spent
    assert_decays(history, cfg.lr)
    assert "map" in history[-1] and Path(report["best"]).is_file()
    assert Path(report["last"]).is_file()


@pytest.mark.usefixtures("one_thread")
def test_faster_rcnn_trains_for_minutes(tmp_path: Path) -> None:
    from tests.training.test_faster_rcnn import TINY
    from training.data.generate import generate_dataset
    from training.faster_rcnn.train import TrainConfig, train

    data = generate_dataset(tmp_path / "d", 4, 1, size=(64, 96), seed=3)
    cfg = TrainConfig(data=data, imgsz=(64, 96), epochs=1, minutes=0.1, batch=2,
                      lr=2e-3,
                      out=tmp_path / "r", hsv=0.0, model=TINY, anchors="kmeans")
    report = train(cfg)
    history = report["history"]
    assert history[-1]["seconds"] >= 6.0  # epochs=1 is ignored: the budget decides
    assert_decays(history, cfg.lr)
    assert report["best"].is_file() and report["last"].is_file()
    from engines.nets.faster_rcnn import DEFAULT_ANCHORS
    from training.checkpoint import load_checkpoint

    config = load_checkpoint(report["last"])["config"]
    assert config["anchor_sizes"] != DEFAULT_ANCHORS["mobilenet_v3"]  # fitted
