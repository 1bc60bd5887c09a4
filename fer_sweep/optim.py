"""Optimizers and learning-rate schedules by name.

Schedules differ in when they step: OneCycle and cosine per batch, step per epoch, plateau per epoch on the
validation loss. `Schedule` hides that, so the loop calls `after_batch()` and `after_epoch(val_loss)` always.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

import torch
from torch.optim import lr_scheduler

from fer_sweep.errors import ConfigError
from fer_sweep.registry import Registry

OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")


@OPTIMIZERS.register("adam")
def adam(params: Iterable, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999)):
    """Adam with coupled L2 weight decay (as in the article's notebook)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


@OPTIMIZERS.register("adamw")
def adamw(params: Iterable, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999)):
    """AdamW: decoupled weight decay."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


@OPTIMIZERS.register("sgd")
def sgd(params: Iterable, lr: float, weight_decay: float = 0.0, momentum: float = 0.9, nesterov: bool = True):
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov)


def build_optimizer(cfg: Mapping[str, Any], params: Iterable, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """cfg is the `optimizer` config group: name, lr and the optimizer's own options."""
    options = {k: v for k, v in cfg.items() if k != "name"}
    options.setdefault("weight_decay", weight_decay)
    return _build(OPTIMIZERS, cfg["name"], "optimizer", params=params, **options)


class Schedule:
    """Wraps a torch scheduler and knows whether it steps per batch, per epoch, or on the val loss.

    `retarget(total_steps)`, for schedules shaped by the run's length, re-fits the rest of the schedule to a
    new length (a time budget that turns out shorter, engine/budget.py); the others ignore it. `plan` is what a
    schedule keeps outside its torch scheduler (the cosine's re-fitted length): state_dict() holds both, so a
    continued run (engine/resume.py) steps on exactly where it stopped."""

    def __init__(self, scheduler: Optional[Any] = None, per: str = "none",
                 retarget: Optional[Callable[[int], None]] = None, plan: Optional[Dict[str, Any]] = None):
        self.scheduler, self.per, self._retarget = scheduler, per, retarget
        self.plan = plan if plan is not None else {}

    def state_dict(self) -> Dict[str, Any]:
        """The torch scheduler's state (OneCycle's re-fitted phases and total steps included) and the plan."""
        return {"scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "plan": dict(self.plan)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.plan.update(state.get("plan") or {})

    def set_total_steps(self, total_steps: int) -> None:
        if self._retarget is not None:
            self._retarget(total_steps)

    def after_batch(self) -> None:
        if self.per == "batch":
            self.scheduler.step()

    def after_epoch(self, val_loss: float) -> None:
        if self.per == "epoch":
            self.scheduler.step()
        elif self.per == "metric":
            self.scheduler.step(val_loss)


@SCHEDULERS.register("none")
def no_schedule(optimizer, epochs: int, steps_per_epoch: int) -> Schedule:
    return Schedule()


@SCHEDULERS.register("onecycle")
def onecycle(optimizer, epochs: int, steps_per_epoch: int, pct_start: float = 0.3, div_factor: float = 25.0,
             final_div_factor: float = 1e4, anneal_strategy: str = "cos") -> Schedule:
    """OneCycleLR stepped per batch; max_lr is the optimizer's configured lr."""
    max_lr = [g["lr"] for g in optimizer.param_groups]
    scheduler = lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=pct_start,
        div_factor=div_factor, final_div_factor=final_div_factor, anneal_strategy=anneal_strategy)

    def retarget(total_steps: int) -> None:
        """The phases OneCycleLR would have had for total_steps (its two-phase layout); the step count stays."""
        scheduler.total_steps = total_steps
        warmup, anneal = scheduler._schedule_phases
        warmup["end_step"], anneal["end_step"] = float(pct_start * total_steps) - 1, total_steps - 1

    return Schedule(scheduler, "batch", retarget)


@SCHEDULERS.register("cosine")
def cosine(optimizer, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0.0,
           min_lr_ratio: float = 0.0) -> Schedule:
    """Linear warm-up for warmup_epochs, then cosine decay to min_lr_ratio * lr; stepped per batch."""
    plan = {"total": epochs * steps_per_epoch}
    warmup = int(warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, plan["total"] - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return Schedule(lr_scheduler.LambdaLR(optimizer, factor), "batch", lambda total: plan.update(total=total), plan)


@SCHEDULERS.register("step")
def step(optimizer, epochs: int, steps_per_epoch: int, step_size: int = 10, gamma: float = 0.1) -> Schedule:
    return Schedule(lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma), "epoch")


@SCHEDULERS.register("plateau")
def plateau(optimizer, epochs: int, steps_per_epoch: int, factor: float = 0.5, patience: int = 3,
            min_lr: float = 1e-6) -> Schedule:
    """Reduce the lr when the validation loss stops improving (Khaireddin & Chen's schedule)."""
    return Schedule(lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience,
                                                   min_lr=min_lr), "metric")


def build_schedule(cfg: Mapping[str, Any], optimizer, epochs: int, steps_per_epoch: int) -> Schedule:
    """cfg is the `scheduler` config group: name and the schedule's options."""
    options = {k: v for k, v in cfg.items() if k != "name"}
    return _build(SCHEDULERS, cfg["name"], "scheduler", optimizer=optimizer, epochs=epochs,
                  steps_per_epoch=steps_per_epoch, **options)


def _build(registry: Registry, name: str, group: str, **kwargs: Any):
    """registry.build, turning an unexpected option into a message that names the config key."""
    builder = registry.get(name)
    known = [p for p in inspect.signature(builder).parameters if p not in ("params", "optimizer")]
    unknown = [k for k in kwargs if k not in known and k not in ("params", "optimizer")]
    if unknown:
        raise ConfigError(f"{group}={name} has no option(s) {unknown}; it takes {known}")
    return builder(**kwargs)
