"""One training loop for every detector family, as Ultralytics' ``BaseTrainer``.

The loop owns what every run shares, so the families cannot drift apart on it:
the budget (epochs, or minutes of wall clock) and the warm-up + cosine schedule
laid over it (``training.schedule``), bf16 autocast (``training.precision``),
reseeding at each epoch, the optimizer step with gradient clipping, the epoch
means of the losses, validation, ``last.pt``/``best.pt``, ``history.json`` and
resume. A family subclasses ``Trainer`` and supplies only what is its own through
the hooks: model and optimizer, data, loss, evaluation, extra state (an EMA).

A resumed run repeats the uninterrupted one: each epoch reseeds the loader's
shuffle, the family's augmentation (its dataset reads ``epoch``) and torch's
global generator (samplers inside a model), and the checkpoint holds the
optimizer state and the epoch, from which the step count the schedule follows is
recovered.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from core.meta import ModelMeta
from training.checkpoint import load_checkpoint, save_checkpoint
from training.precision import autocast, channels_last, resolve_precision, to_float
from training.schedule import Budget, warmup_cosine

log = logging.getLogger(__name__)

CLIP_NORM = 10.0  # gradient norm cap: one bad batch cannot wreck the weights
StepCallback = Callable[[int, float], None]  # (step index, total loss)
EpochCallback = Callable[[dict[str, Any]], None]  # the epoch's history record


@dataclass(frozen=True)
class LoopConfig:
    """What the loop takes from a family's config.

    ``lr`` is the peak learning rate: linear warm-up from ``lr * lr_start`` over
    ``warmup_steps`` (over ``warmup_fraction`` of a time budget), then a half
    cosine down to ``lr * lr_floor``. ``minutes > 0`` trains for that much wall
    clock, validation included, instead of ``epochs``. Validation runs every
    ``val_every`` epochs and after the last one. ``precision``: ``auto``, ``fp32``
    or ``bf16`` (``training.precision``).
    """

    out: Path
    epochs: int
    lr: float
    warmup_steps: int
    lr_start: float
    lr_floor: float
    minutes: float = 0.0
    warmup_fraction: float = 0.05
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"
    val_every: int = 1

    def __post_init__(self) -> None:
        if self.val_every < 1:
            raise ValueError(f"val_every must be >= 1, got {self.val_every}")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def read_history(ckpt: dict[str, Any]) -> list[dict[str, Any]]:
    """A checkpoint's history rows (older YOLO checkpoints stored them as JSON)."""
    history = ckpt.get("history", [])
    return json.loads(history) if isinstance(history, str) else list(history)


class Trainer:
    """The loop; a family subclass implements the hooks.

    ``setup`` must set ``model``, ``optimizer``, ``loader`` (one epoch of
    batches), ``shuffle`` (the torch generator the loader shuffles with),
    ``epoch_data`` (the dataset whose ``epoch`` attribute seeds augmentation),
    ``arch``, ``model_config`` and ``meta`` (what ``save_checkpoint`` stores).
    ``on_step`` and ``on_epoch`` observe a run (e.g. to record per-step losses);
    ``on_epoch`` is called once the epoch's checkpoints are written.
    """

    loss_names: tuple[str, ...] = ()
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: Any
    shuffle: torch.Generator
    epoch_data: Any
    arch: str
    model_config: dict[str, Any]
    meta: ModelMeta

    def __init__(self, loop: LoopConfig, *, on_step: StepCallback | None = None,
                 on_epoch: EpochCallback | None = None) -> None:
        self.loop = loop
        self.on_step, self.on_epoch = on_step, on_epoch
        self.precision = loop.precision  # resolved ("auto" -> fp32/bf16) by fit
        self.history: list[dict[str, Any]] = []
        self.best: float | None = None  # the best score so far

    def place(self, model: nn.Module) -> nn.Module:
        """``model`` on the run's device, channels-last (what setup builds with)."""
        return channels_last(model.to(self.loop.device))

    # ------------------------------------------------------------ family hooks

    def setup(self, ckpt: dict[str, Any] | None) -> None:
        """Build data, model and optimizer (``ckpt``: the run being resumed)."""
        raise NotImplementedError

    def prepare_batch(self, batch: Any) -> Any:
        """A loader batch moved to the device, as ``forward`` and ``loss`` take it."""
        return batch

    def forward(self, batch: Any) -> Any:
        """The model's outputs (run under autocast; cast back to float32 after)."""
        raise NotImplementedError

    def loss(self, outputs: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to back-propagate, its parts in ``loss_names`` order, detached)."""
        raise NotImplementedError

    def optimizer_stepped(self) -> None:
        """Called after each optimizer step (an EMA update goes here)."""

    def evaluate(self) -> dict[str, float]:
        """Validation metrics merged into the epoch's record ({} without val data)."""
        return {}

    def score(self, record: dict[str, Any]) -> float | None:
        """What ``best.pt`` maximises; None: this epoch cannot compete."""
        return record.get("map")

    def train_config(self) -> dict[str, Any]:
        """The family's config as builtins (``config.json``, checkpoints)."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Extra state a checkpoint holds for ``restore`` (e.g. EMA weights)."""
        return {}

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Load what ``state`` saved from a checkpoint being resumed."""

    # ------------------------------------------------------------ the loop

    def fit(self, resume: str | Path | None = None) -> dict[str, Any]:
        """Train; returns ``{"best", "last" (paths), "best_map", "best_map50",
        "epochs", "seconds", "history"}``; ``best_map`` is the best ``score``.

        History rows: ``epoch`` (0-based), ``steps``, ``lr`` (the last step's),
        ``precision``, ``loss`` ({name: epoch mean}), validation metrics when the
        epoch was validated, ``seconds`` since the run began (resumes included).
        """
        loop = self.loop
        if loop.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {loop.device!r} asked for but no CUDA GPU is "
                             "visible")
        seed_everything(loop.seed)
        ckpt = load_checkpoint(resume) if resume else None
        self.precision = resolve_precision(loop.precision, loop.device)
        self.setup(ckpt)
        self.history, self.best, start_epoch = [], None, 0
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.restore(ckpt)
            start_epoch = int(ckpt["epoch"]) + 1
            self.best = ckpt.get("best_map")
            self.history = read_history(ckpt)
            log.info("resumed %s at epoch %d", resume, start_epoch)
        already = float(self.history[-1].get("seconds", 0.0)) if self.history else 0.0
        budget = Budget(loop.epochs, len(self.loader), loop.minutes * 60, already)
        warmup = budget.warmup(loop.warmup_steps, loop.warmup_fraction)
        loop.out.mkdir(parents=True, exist_ok=True)
        (loop.out / "config.json").write_text(json.dumps(self.train_config(),
                                                         indent=2))
        span = f"{loop.minutes:g} min" if budget.timed else str(loop.epochs)
        step, epoch, validated = start_epoch * len(self.loader), start_epoch, True
        while not budget.spent(step):
            record = self._train_epoch(epoch, step, budget, warmup, span)
            if record is None:  # the budget ran out before this epoch's first step
                break
            step += record["steps"]
            validated = (epoch + 1) % loop.val_every == 0 or budget.spent(step)
            self._close_epoch(record, validated, budget, span)
            epoch += 1
        if self.history and not validated:  # time ran out between two epochs
            self._close_epoch(self.history.pop(), True, budget, span)
        best_record = max((r for r in self.history if "map" in r),
                          key=lambda r: r["map"], default={})
        return {"best": loop.out / "best.pt", "last": loop.out / "last.pt",
                "best_map": self.best, "best_map50": best_record.get("map50"),
                "epochs": epoch, "seconds": round(budget.elapsed(), 1),
                "history": self.history}

    def _train_epoch(self, epoch: int, step: int, budget: Budget, warmup: float,
                     span: str) -> dict[str, Any] | None:
        """One epoch's optimizer steps (fewer if the budget runs out); its record."""
        loop = self.loop
        self.model.train()
        self.epoch_data.epoch = epoch
        self.shuffle.manual_seed(loop.seed * 1000 + epoch)
        torch.manual_seed(loop.seed * 1000 + epoch)
        params = [p for p in self.model.parameters() if p.requires_grad]
        sums = [0.0] * len(self.loss_names)
        done, lr = 0, 0.0
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{span}", leave=False)
        for batch in bar:
            if budget.spent(step + done):
                break
            lr = loop.lr * warmup_cosine(budget.progress(step + done), warmup,
                                         start=loop.lr_start, floor=loop.lr_floor)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            batch = self.prepare_batch(batch)
            with autocast(loop.device, self.precision):
                outputs = to_float(self.forward(batch))
            loss, parts = self.loss(outputs, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, CLIP_NORM)
            self.optimizer.step()
            self.optimizer_stepped()
            values = parts.float().cpu().tolist()
            if not math.isfinite(sum(values)):
                raise FloatingPointError(f"loss became {sum(values)} at epoch "
                                         f"{epoch + 1}; lower --lr (now {loop.lr})")
            if self.on_step is not None:
                self.on_step(step + done, float(loss.detach()))
            sums = [s + v for s, v in zip(sums, values, strict=True)]
            done += 1
            bar.set_postfix({name.removeprefix("loss_")[:8]: f"{s / done:.3f}"
                             for name, s in zip(self.loss_names, sums, strict=True)})
        if done == 0:
            return None
        return {"epoch": epoch, "steps": done, "lr": lr, "precision": self.precision,
                "loss": {name: s / done
                         for name, s in zip(self.loss_names, sums, strict=True)}}

    def _close_epoch(self, record: dict[str, Any], validate: bool, budget: Budget,
                     span: str) -> None:
        """Validate (if asked), log, append to history, write the checkpoints."""
        if validate:
            record.update(self.evaluate())
        record["seconds"] = round(budget.elapsed(), 1)
        self.history.append(record)
        log.info("epoch %d/%s (%.0f s) losses %s%s", record["epoch"] + 1, span,
                 record["seconds"], {k: round(v, 4) for k, v in record["loss"].items()},
                 "".join(f" {k} {v:.4f}" for k, v in record.items()
                         if k.startswith("map")))
        score = self.score(record)
        improved = score is not None and (self.best is None or score > self.best)
        if improved:
            self.best = score
        self._save("last.pt", record["epoch"])
        if improved:
            self._save("best.pt", record["epoch"])
        (self.loop.out / "history.json").write_text(json.dumps(self.history, indent=2))
        if self.on_epoch is not None:
            self.on_epoch(record)

    def _save(self, name: str, epoch: int) -> None:
        save_checkpoint(self.loop.out / name, self.arch, self.model_config, self.meta,
                        self.model, optimizer=self.optimizer.state_dict(), epoch=epoch,
                        best_map=self.best, history=self.history,
                        train_config=self.train_config(), **self.state())
