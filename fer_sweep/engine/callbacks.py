"""Callbacks are how checkpointing, progress bars, logging and pruning reach the loop without it knowing them.

The loop calls, in order: on_train_start(num_batches); per batch on_batch_end(step, loss); per epoch
on_epoch_end(epoch, metrics) -> True to stop early; on_train_end(history).

A callback whose state a continued run needs (engine/resume.py) defines state_dict() -> dict and
load_state_dict(dict), and may name its entry in last.pt with `state_key` (default: its class name).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

log = logging.getLogger(__name__)


class Callback:
    def on_train_start(self, num_batches: int) -> None: ...

    def on_batch_end(self, step: int, loss: Optional[float]) -> None: ...

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        return False

    def on_train_end(self, history: Any) -> None: ...


class LogEpochs(Callback):
    """One log line per epoch, so runs in sweeps and files are readable without a progress bar."""

    def __init__(self, planned: Callable[[], int]):
        self.planned = planned  # the epochs planned, read every epoch: a time budget re-plans (engine/budget.py)

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        log.info("epoch %d/%d  lr %.2e  train loss %.4f acc %.4f  val loss %.4f acc %.4f  (%.1fs)", epoch,
                 self.planned(), metrics["lr"], metrics["train_loss"], metrics["train_acc"], metrics["val_loss"],
                 metrics["val_acc"], metrics["epoch_time_s"])
        return False


class ProgressBar(Callback):
    """A tqdm bar per epoch on a terminal; silent when stderr is not a TTY (logs, CI) and in a multirun's jobs
    (a sweep prints one progress line per job instead: fer_sweep/sweep/progress.py)."""

    def __init__(self, enabled: Optional[bool] = None):
        self.enabled = sys.stderr.isatty() and not in_multirun() if enabled is None else enabled
        self.bar = None
        self.num_batches = 0

    def on_train_start(self, num_batches: int) -> None:
        self.num_batches = num_batches

    def on_batch_end(self, step: int, loss: Optional[float]) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.num_batches, leave=False, unit="batch")
        self.bar.update(1)

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        return False


def in_multirun() -> bool:
    """Whether this runs as a job of a Hydra multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


CHECKPOINT_CHOICES = ("best_val", "last")  # trainer.checkpoint: which epoch's weights a run keeps


class BestCheckpoint(Callback):
    """Saves the model whenever val accuracy improves, with whatever `payload()` adds (config, classes...).

    keep="last" (trainer.checkpoint) saves every epoch instead: for runs whose val split is trained on
    (data.split=full), where the best-val epoch would be a choice made on training faces."""

    def __init__(self, model: torch.nn.Module, path: Path, payload: Callable[[], Dict[str, Any]],
                 monitor: str = "val_acc", keep: str = "best_val"):
        if keep not in CHECKPOINT_CHOICES:
            raise ValueError(f"keep={keep!r}; expected one of {CHECKPOINT_CHOICES}")
        self.model, self.path, self.payload, self.monitor, self.keep = model, Path(path), payload, monitor, keep
        self.best = float("-inf")
        self.best_epoch = 0

    def state_dict(self) -> Dict[str, Any]:  # the weights stay in best.pt
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        if self.keep == "last" or metrics[self.monitor] > self.best:
            self.best, self.best_epoch = metrics[self.monitor], epoch
            from fer_sweep.results import atomic_torch_save

            state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            atomic_torch_save({**self.payload(), "state_dict": state, "epoch": epoch,
                               self.monitor: float(metrics[self.monitor])}, self.path)
        return False


class EarlyStopping(Callback):
    """Stops the run after `patience` epochs in a row whose `monitor` (val accuracy) did not rise above the best
    so far by more than `min_delta` (trainer.early_stopping). `stopped` says whether it did."""

    def __init__(self, patience: int, min_delta: float = 0.0, monitor: str = "val_acc"):
        if int(patience) < 1:
            raise ValueError(f"patience={patience}: at least 1 epoch")
        self.patience, self.min_delta, self.monitor = int(patience), float(min_delta), monitor
        self.best = float("-inf")
        self.wait = 0
        self.stopped = False

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "stopped": self.stopped}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best, self.wait, self.stopped = float(state["best"]), int(state["wait"]), bool(state["stopped"])

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        value = float(metrics[self.monitor])
        if value - self.best > self.min_delta:
            self.best, self.wait = value, 0
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped = True
            log.info("stopped early at epoch %d: no val improvement of %g for %d epochs", epoch, self.min_delta,
                     self.patience)
        return self.stopped
