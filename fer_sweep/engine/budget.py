"""Epochs from a wall-time budget (`trainer.time_budget_s`).

"The most accuracy in an hour" only holds on the machine at hand: resnet9's bf16 step takes 111 ms on a 2-core
CPU with AMX and 175 ms on one with AVX-512 bf16 alone. So the epoch count is measured, not guessed: before
training, a few batches and one validation pass on a throwaway copy of the model give the time of an epoch, and
the run takes as many epochs as fit in what is left of the budget (at most `trainer.epochs`). The schedule
(OneCycle's warm-up and anneal) is then built for that many epochs, as for any fixed count.

The probe is the loop's own batch (engine/loop.py `train_batch`: augmentation, targets, the step, the EMA
update, the schedule step, the counts and `loss.item()`), on copies of the model, optimizer, schedule and EMA,
with its own generator, and every global random stream (python, numpy, torch CPU and CUDA) is put back after it:
a budgeted run trains the same random run as its fixed-epoch twin (dropout included).

A shared CPU's speed drifts (on a 2-core Xeon the probe said 42 s an epoch and epochs took 38-61 s), so
`Deadline` watches the pace and re-plans, but only when the plan is off by more than that noise:
- the pace is the mean wall time of the epochs since the pace last shifted (the probe's estimate counting as one
  epoch until then); the pace shifts when the median of the last 3 epochs is more than 15% off that mean, and the
  mean then restarts from those of the 3 epochs that are off (a real slowdown, not noise);
- fewer epochs at once when the plan needs more than the time left plus 5% (an overrun that early epochs'
  noise cannot explain; near the end the 5% is seconds): the plan becomes what fits with the first plan's margin
  (SLACK);
- more epochs (up to the cap) only 10 epochs or more after the previous re-plan, when at least two more fit
  with that margin, and then one fewer than fit, so that the last epochs' noise does not cut the grown plan back.
Simulated with epochs drawn uniformly within +-10% of 45 s in a 3600 s budget (2000 seeds), this re-fits the
schedule 0.9 times a run and never twice in ten epochs, and the last epoch ends within the budget's reserve; a
30% slowdown from epoch 5 shrinks the plan at epoch 6 or 7 (tests/test_budget.py replays such clocks).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional

import numpy as np
import torch
import torch.nn as nn

from fer_sweep.data.batches import Batches
from fer_sweep.engine.callbacks import Callback
from fer_sweep.engine.loop import EpochTotals, evaluate, train_batch
from fer_sweep.engine.precision import Precision
from fer_sweep.engine.techniques import EMA, tta_views
from fer_sweep.errors import ConfigError
from fer_sweep.optim import Schedule

SLACK = 0.97          # epochs vary by a few percent (the EPYC's 72 ran 41-50 s): plan on 97% of the time left
FINISH_S = 10.0       # history, checkpoint reload and plots after the last epoch
OVERRUN = 0.05        # Deadline shrinks the plan when it needs more than the time left plus this fraction
SHIFT = 0.15          # ... and the pace restarts when the last SHIFT_EPOCHS epochs' median is this far off it
SHIFT_EPOCHS = 3
SETTLE_EPOCHS = 10    # a plan grows only this many epochs after the previous re-plan

log = logging.getLogger(__name__)


@contextlib.contextmanager
def random_streams_kept(device: Optional[torch.device] = None) -> Iterator[None]:
    """Puts back python's, numpy's and torch's global random states (CPU, and CUDA on a CUDA device) after the
    block: what the probe draws (dropout) must not shift the run's own draws."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [device] if device is not None and device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@dataclass
class EpochEstimate:
    step_s: float          # one training batch, as the loop trains it: the median of the probe's batches
    steps_per_epoch: int
    val_s: float           # one validation pass
    test_s: float          # the final test pass, with its test-time augmentation views

    @property
    def epoch_s(self) -> float:
        return self.steps_per_epoch * self.step_s + self.val_s


def estimate_epoch(model: nn.Module, make_optimizer: Callable[[Iterable], torch.optim.Optimizer], train: Batches,
                   val: Batches, test: Batches, precision: Precision, batch_size: int,
                   augment: Optional[Callable[..., torch.Tensor]] = None, tta: str = "none",
                   target_mode: str = "label", steps: int = 6, warmup: int = 2,
                   make_schedule: Optional[Callable[[torch.optim.Optimizer], Schedule]] = None,
                   ema_decay: Optional[float] = None, options: Optional[Mapping[str, Any]] = None,
                   clock: Callable[[], float] = time.perf_counter) -> EpochEstimate:
    """Time the loop's batches (`train_batch`, with the run's `options`: clipping, smoothing, class weights,
    mixup/cutmix) and a validation pass on copies: the model, a fresh optimizer and schedule for the copy, and an
    EMA of it when the run keeps one. The model, the run's optimizer, schedule and EMA, and every random stream
    are left as they were."""
    with random_streams_kept(train.device):
        probe = copy.deepcopy(model)
        probe.train()
        optimizer = make_optimizer(probe.parameters())
        schedule = make_schedule(optimizer) if make_schedule is not None else Schedule()
        ema = EMA(probe, ema_decay) if ema_decay else None
        generator = torch.Generator().manual_seed(0)
        totals = EpochTotals(train.device)
        times = []
        for _, (images, labels) in zip(range(warmup + steps), train.batches(batch_size, shuffle=True,
                                                                              generator=generator)):
            tic = clock()
            train_batch(probe, images, labels, optimizer, schedule, precision, totals, augment=augment,
                        generator=generator, ema=ema, target_mode=target_mode, **dict(options or {}))
            if images.device.type == "cuda":
                torch.cuda.synchronize(images.device)  # CUDA runs asynchronously: time the work, not its launch
            times.append(clock() - tic)
        tic = clock()
        evaluate(ema.model if ema else probe, val, precision, batch_size=max(batch_size, 512))
        val_s = clock() - tic
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
    planned, more (up to `cap`) when they go faster, the schedule re-fitted to each new plan, by the rule of the
    module's docstring. `epochs` is the plan as it stands; the loop reads it (through `on_replan`, which keeps
    the run's config up to date) before each epoch, so the Deadline never stops the loop itself.

    `epoch_s` is the probe's estimate (the pace until epochs are timed), `machine` the kind of machine the run
    is on (precision.cpu_kind). `state_dict()` holds the plan, the epochs' times and the time the run has used, so a
    continued run keeps its plan; one continued on another kind of machine re-plans from its new probe."""

    def __init__(self, budget_s: float, start: float, epochs: int, reserve_s: float, schedule: Schedule,
                 steps_per_epoch: int, cap: Optional[int] = None, clock: Callable[[], float] = time.perf_counter,
                 on_replan: Callable[[int], None] = lambda epochs: None, epoch_s: Optional[float] = None,
                 machine: str = ""):
        self.budget_s, self.start, self.epochs, self.reserve_s = budget_s, start, epochs, reserve_s
        self.schedule, self.steps_per_epoch, self.clock = schedule, steps_per_epoch, clock
        self.cap = epochs if cap is None else cap
        self.on_replan = on_replan  # told each new plan (the run's config keeps it: logs, checkpoint, result)
        self.epoch_s, self.machine = epoch_s, machine
        self.times: List[float] = []  # each epoch's wall time, in order
        self.level = 0                # times[level:] are at the current pace (see `pace`)
        self.last_replan = 0          # the epoch of the last re-plan (0: the first plan)
        self.epoch = 0                # the last epoch seen
        self.spent_before_s = 0.0     # budget time that earlier attempts of a continued run used
        self.last_end = start
        self.refits = 0               # schedule re-fits so far (logs and tests)

    def elapsed(self, now: float) -> float:
        return self.spent_before_s + now - self.start

    def pace(self) -> float:
        """The expected epoch time: the mean of the epochs at the current level (the probe's estimate counts as
        one before the first shift). The level restarts when the median of the last SHIFT_EPOCHS epochs is SHIFT
        off the mean of the level's earlier epochs, from the first of them that is off the same way."""
        def level(times: List[float]) -> List[float]:
            return ([self.epoch_s] if self.level == 0 and self.epoch_s else []) + times

        earlier = level(self.times[self.level:-SHIFT_EPOCHS])
        recent = self.times[-SHIFT_EPOCHS:]
        if len(self.times) - self.level >= SHIFT_EPOCHS and len(earlier) >= SHIFT_EPOCHS:
            earlier, median = statistics.fmean(earlier), statistics.median(recent)
            if abs(median / earlier - 1) > SHIFT:
                off = [abs(t / earlier - 1) > SHIFT / 2 and (t > earlier) == (median > earlier) for t in recent]
                self.level = len(self.times) - SHIFT_EPOCHS + off.index(True)
        timed = level(self.times[self.level:])
        return max(statistics.fmean(timed) if timed else 0.0, 1e-6)

    def on_train_start(self, num_batches: int) -> None:
        self.last_end = self.clock()

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        now = self.clock()
        self.times.append(now - self.last_end)
        self.last_end, self.epoch = now, epoch
        pace = self.pace()
        left = self.budget_s - self.elapsed(now) - self.reserve_s
        fits = min(epoch + max(0, math.floor(left * SLACK / pace)), self.cap)
        if (self.epochs - epoch) * pace > left * (1 + OVERRUN):
            self.replan(max(fits, epoch), pace)
        elif epoch - self.last_replan >= SETTLE_EPOCHS and fits >= self.epochs + 2 and self.epochs < self.cap:
            self.replan(max(fits - 1, self.epochs + 1) if fits < self.cap else fits, pace)
        return False

    def replan(self, epochs: int, pace: float) -> None:
        log.info("time budget: epochs take ~%.1f s now, so %d epochs fit, not %d: the schedule is re-fitted",
                 pace, epochs, self.epochs)
        self.epochs, self.last_replan = epochs, self.epoch
        self.on_replan(epochs)
        if epochs > self.epoch:
            self.schedule.set_total_steps(epochs * self.steps_per_epoch)
            self.refits += 1

    def state_dict(self) -> Dict[str, Any]:
        return {"epochs": self.epochs, "times": list(self.times), "level": self.level,
                "last_replan": self.last_replan, "epoch": self.epoch, "epoch_s": self.epoch_s,
                "spent_s": self.elapsed(self.last_end), "machine": self.machine, "refits": self.refits}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the plan of `state` (an earlier attempt's state_dict): its epochs' times and the time it used
        count on (this attempt's time adds from its own start). On another kind of machine those times say
        nothing: the plan is made again from this attempt's probe, for the time the budget has left."""
        self.epoch, self.spent_before_s = int(state["epoch"]), float(state["spent_s"])
        self.epochs, self.refits = int(state["epochs"]), int(state.get("refits", 0))
        if state.get("machine") == self.machine:
            self.times, self.level = [float(t) for t in state["times"]], int(state["level"])
            self.last_replan, self.epoch_s = int(state["last_replan"]), state.get("epoch_s", self.epoch_s)
        else:
            log.info("continued on another machine kind (%s -> %s): re-planning the time budget",
                     state.get("machine") or "unknown", self.machine or "unknown")
            self.times, self.level, self.last_replan = [], 0, self.epoch
            pace = max(float(self.epoch_s or state.get("epoch_s") or 1e-6), 1e-6)
            left = self.budget_s - self.elapsed(self.clock()) - self.reserve_s
            fits = min(self.epoch + max(0, math.floor(left * SLACK / pace)), self.cap)
            if fits != self.epochs:
                self.replan(max(fits, self.epoch), pace)
        self.on_replan(self.epochs)
        if self.epochs > self.epoch:  # a schedule whose length lives outside its state_dict (cosine) follows too
            self.schedule.set_total_steps(self.epochs * self.steps_per_epoch)


def record_plan(checkpoint: Path, epochs: int) -> None:
    """Make the kept checkpoint's config say the plan that ran: its weights may have been saved before the
    Deadline's last re-plan (or its stop), with the plan of then. Rewritten atomically, and only when it differs."""
    if not checkpoint.is_file():
        return
    saved = torch.load(checkpoint, weights_only=True)
    trainer = (saved.get("config") or {}).get("trainer")
    if trainer is None or trainer.get("epochs") == epochs:
        return
    trainer["epochs"] = epochs
    from fer_sweep.results import atomic_torch_save

    atomic_torch_save(saved, checkpoint)
