"""How long a run trains and its learning-rate schedule, by epochs or by time.

A run is either a number of epochs or a wall-clock budget (``--minutes N``). Both
give a *progress* in [0, 1] after every optimizer step (steps done / total, or
seconds spent / budget), and the schedule is a function of that progress alone:
a linear warm-up over the first ``warmup`` of the run, then a half cosine down to
``floor``. So a 15-minute run warms up and decays over its 15 minutes, however
many steps the machine manages in them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

WARMUP_FRACTION = 0.05  # of a time budget: warm-up length when training by minutes


def warmup_cosine(progress: float, warmup: float, start: float = 0.01,
                  floor: float = 0.05) -> float:
    """Learning-rate factor at ``progress`` in [0, 1]: linear from ``start`` to 1
    over ``[0, warmup)``, then a half cosine from 1 to ``floor`` at 1."""
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup is a fraction of the run in [0, 1), got {warmup}")
    p = min(max(progress, 0.0), 1.0)
    if p < warmup:
        return start + (1 - start) * p / warmup
    t = (p - warmup) / (1 - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass
class Budget:
    """Stop rule and progress of a run.

    ``seconds > 0``: a wall-clock budget (``epochs`` is ignored); progress is
    (``already`` + seconds since construction) / ``seconds``. Otherwise progress
    is steps / (``epochs`` x ``steps_per_epoch``). ``already`` carries the time a
    resumed run had spent. ``clock`` is injectable for tests.
    """

    epochs: int
    steps_per_epoch: int
    seconds: float = 0.0
    already: float = 0.0
    clock: Callable[[], float] = time.perf_counter
    _start: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"a time budget must be >= 0 seconds, got {self.seconds}")
        if self.steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1, got "
                             f"{self.steps_per_epoch}")
        self._start = self.clock()

    @property
    def timed(self) -> bool:
        return self.seconds > 0

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def elapsed(self) -> float:
        """Seconds spent, counting those before a resume."""
        return self.already + self.clock() - self._start

    def progress(self, step: int) -> float:
        """Fraction of the run done after ``step`` optimizer steps, in [0, 1]."""
        if self.timed:
            return min(1.0, self.elapsed() / self.seconds)
        return min(1.0, step / max(1, self.total_steps))

    def spent(self, step: int) -> bool:
        """True once the run must stop (checked before each step)."""
        if self.timed:
            return self.elapsed() >= self.seconds
        return step >= self.total_steps

    def warmup(self, warmup_steps: int, fraction: float = WARMUP_FRACTION) -> float:
        """Warm-up as a fraction of the run: ``fraction`` of a time budget, or
        ``warmup_steps`` of the epochs' steps (at most half the run)."""
        if self.timed:
            return fraction
        return min(0.5, warmup_steps / max(1, self.total_steps))
