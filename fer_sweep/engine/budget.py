"""Epochs from a wall-time budget (`trainer.time_budget_s`).

"The most accuracy in an hour" only holds on the machine at hand: resnet9's bf16 step takes 111 ms on a 2-core
CPU with AMX and 175 ms on one with AVX-512 bf16 alone. So the epoch count is measured, not guessed: before
training, a few optimisation steps and one validation pass on a throwaway copy of the model give the time of an
epoch, and the run takes as many epochs as fit in what is left of the budget (at most `trainer.epochs`). The
schedule (OneCycle's warm-up and anneal) is then built for that many epochs, as for any fixed count.

A shared CPU's speed drifts (on a 2-core Xeon the probe said 42 s an epoch and epochs took 38-61 s), so
`Deadline` watches the pace: after each epoch it plans as many epochs as fit at the pace of the last few, fewer
when the plan no longer fits, more (up to `trainer.epochs`) when at least two more fit, and re-fits the rest of
the schedule to the new plan. Small re-fits move OneCycle's lr by little: the plan changes by an epoch or two in
tens.
"""
from __future__ import annotations

import copy
import logging
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional

import torch
import torch.nn as nn

from fer_sweep.data.batches import Batches, normalize
from fer_sweep.engine.callbacks import Callback
from fer_sweep.engine.loop import evaluate, train_step
from fer_sweep.engine.precision import Precision
from fer_sweep.engine.targets import batch_targets
from fer_sweep.engine.techniques import tta_views
from fer_sweep.errors import ConfigError
from fer_sweep.optim import Schedule

SLACK = 0.97          # epochs vary by a few percent (the EPYC's 72 ran 41-50 s): plan on 97% of the time left
FINISH_S = 10.0       # history, checkpoint reload and plots after the last epoch
PACE_EPOCHS = 3       # Deadline's pace: the mean wall time of the last few epochs

log = logging.getLogger(__name__)


@dataclass
class EpochEstimate:
    step_s: float          # one optimisation step (augmentation included), the median of the probe's steps
    steps_per_epoch: int
    val_s: float           # one validation pass
    test_s: float          # the final test pass, with its test-time augmentation views

    @property
    def epoch_s(self) -> float:
        return self.steps_per_epoch * self.step_s + self.val_s


def estimate_epoch(model: nn.Module, make_optimizer: Callable[[Iterable], torch.optim.Optimizer], train: Batches,
                   val: Batches, test: Batches, precision: Precision, batch_size: int,
                   augment: Optional[Callable[..., torch.Tensor]] = None, tta: str = "none",
                   target_mode: str = "label", steps: int = 6, warmup: int = 2) -> EpochEstimate:
    """Time training steps and a validation pass on a copy of `model` (the model, its optimizer and the run's
    random streams are left as they were)."""
    probe = copy.deepcopy(model)
    optimizer = make_optimizer(probe.parameters())
    generator = torch.Generator().manual_seed(0)
    times = []
    for _, (images, labels) in zip(range(warmup + steps), train.batches(batch_size, shuffle=True,
                                                                          generator=generator)):
        tic = time.perf_counter()
        x = normalize(images)
        if augment is not None:
            x = augment(x, generator=generator)
        train_step(probe, x, batch_targets(labels, target_mode, generator), optimizer, precision,
                   target_mode=target_mode)
        if images.device.type == "cuda":
            torch.cuda.synchronize(images.device)  # CUDA runs asynchronously: time the work, not its launch
        times.append(time.perf_counter() - tic)
    tic = time.perf_counter()
    evaluate(probe, val, precision, batch_size=max(batch_size, 512))
    val_s = time.perf_counter() - tic
    views = len(tta_views(torch.zeros(1, 1, 48, 48), tta))
    return EpochEstimate(step_s=statistics.median(times[warmup:] or times), steps_per_epoch=train.num_batches(
        batch_size), val_s=val_s, test_s=val_s * views * len(test) / max(len(val), 1))


def epochs_within(budget_s: float, elapsed_s: float, estimate: EpochEstimate, cap: int) -> int:
    """The most whole epochs that fit in the budget after `elapsed_s` (data loading, the probe) and the final
    test pass; at most `cap`. Too small a budget for one epoch is the config's error."""
    left = budget_s - elapsed_s - estimate.test_s - FINISH_S
    epochs = math.floor(left * SLACK / estimate.epoch_s) if left > 0 else 0
    if epochs < 1:
        raise ConfigError(f"trainer.time_budget_s={budget_s:g}: an epoch takes about {estimate.epoch_s:.0f} s on "
                          f"this machine, and after loading the data ({elapsed_s:.0f} s so far) and reserving the "
                          f"test pass ({estimate.test_s:.0f} s) {max(left, 0):.0f} s are left: raise the budget "
                          "or set it to null and give trainer.epochs")
    return min(epochs, cap)


class Deadline(Callback):
    """Keeps a budgeted run's plan to what fits at the pace it runs: fewer epochs when they take longer than
    planned, more (up to `cap`) when they go faster, the schedule re-fitted to each new plan (see the module's
    docstring). `epochs` is the plan as it stands."""

    def __init__(self, budget_s: float, start: float, epochs: int, reserve_s: float, schedule: Schedule,
                 steps_per_epoch: int, cap: Optional[int] = None, clock: Callable[[], float] = time.perf_counter,
                 on_replan: Callable[[int], None] = lambda epochs: None):
        self.budget_s, self.start, self.epochs, self.reserve_s = budget_s, start, epochs, reserve_s
        self.schedule, self.steps_per_epoch, self.clock = schedule, steps_per_epoch, clock
        self.cap = epochs if cap is None else cap
        self.on_replan = on_replan  # told each new plan (the run's config keeps it: logs, checkpoint, result)
        self.ends: List[float] = []

    def on_train_start(self, num_batches: int) -> None:
        self.ends = [self.clock()]

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        now = self.clock()
        self.ends.append(now)
        recent = self.ends[-(PACE_EPOCHS + 1):]
        pace = max((recent[-1] - recent[0]) / (len(recent) - 1), 1e-6)
        left = self.budget_s - (now - self.start) - self.reserve_s
        fits = min(epoch + max(0, math.floor(left / pace)), self.cap)
        if fits < self.epochs or fits >= self.epochs + 2:  # more only with room for two: no flip-flopping plan
            log.info("time budget: epochs take ~%.1f s now, so %d epochs fit, not %d: the schedule is re-fitted",
                     pace, max(fits, epoch), self.epochs)
            self.epochs = max(fits, epoch)
            self.on_replan(self.epochs)
            if self.epochs > epoch:
                self.schedule.set_total_steps(self.epochs * self.steps_per_epoch)
        return epoch >= self.epochs
