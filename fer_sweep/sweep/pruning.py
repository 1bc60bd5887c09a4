"""Pruning inside a job: the training loop reports each epoch's val accuracy to its Optuna trial and stops
when the study's pruner says so.

The job reaches its trial through the storage, never through the sweeper's memory, so this works the same with
the in-process launcher and with process launchers (joblib): the sweeper passes `+trial.number`, `+trial.study`
and `+trial.storage`, and keeps the pruner's recipe in the study's user attributes (pruners are not stored
by Optuna itself). With `+trial.heartbeat_interval`, the job also beats for its trial while it runs
(fer_sweep.sweep.heartbeat), so its trial is failed and retried elsewhere if the job is killed.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, Mapping, Optional

import optuna
from optuna.pruners import (BasePruner, HyperbandPruner, MedianPruner, NopPruner, PercentilePruner,
                            SuccessiveHalvingPruner)

from fer_sweep.engine.callbacks import Callback
from fer_sweep.sweep.heartbeat import Heartbeat
from fer_sweep.sweep.storage import open_storage

log = logging.getLogger(__name__)

PRUNERS = {"none": NopPruner, "median": MedianPruner, "percentile": PercentilePruner,
           "hyperband": HyperbandPruner, "successive_halving": SuccessiveHalvingPruner}
PRUNER_ATTR = "fer_sweep.pruner"  # study user attribute: {"name", "monitor", "options"}
# trial user attribute, set as its job starts: where its last.pt is. A retry inherits its failed trial's
# attributes, so the sweeper finds the run to continue (optuna_sweeper.trial_overrides).
JOB_DIR_ATTR = "fer_sweep.job_dir"


def build_pruner(name: str, options: Optional[Mapping[str, Any]] = None) -> BasePruner:
    """An Optuna pruner by its short name; `options` are its keyword arguments."""
    if name not in PRUNERS:
        raise ValueError(f"unknown pruner {name!r}: choose one of {', '.join(PRUNERS)}")
    options = dict(options or {})
    if name == "percentile":
        options.setdefault("percentile", 25.0)  # the one required argument: prune the bottom quarter
    return PRUNERS[name](**options)


class TrialPruning(Callback):
    """Reports `monitor` each epoch to one trial; when the pruner says so, sets `pruned` and stops the loop."""

    def __init__(self, trial: optuna.Trial, monitor: str = "val_acc", heartbeat: Optional[Heartbeat] = None):
        self.trial, self.monitor = trial, monitor
        self.pruned = False
        self.reports = len(trial.study.directions) == 1  # Optuna has no pruning for multi-objective studies
        self.heartbeat = heartbeat  # a daemon thread: stops when the trial is told, or with the process
        self.reported: Dict[int, float] = {}  # epoch -> value, kept in last.pt (engine/resume.py)

    def state_dict(self) -> Dict[str, Any]:
        return {"trial": self.trial.number, "pruned": self.pruned, "reported": dict(self.reported)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """A continued job: its own trial has the epochs reported already; a retry (another trial continuing a
        dead trial's last.pt) reports them now, so the pruner compares it on every epoch."""
        self.pruned = bool(state.get("pruned"))
        self.reported = {int(k): float(v) for k, v in (state.get("reported") or {}).items()}
        if not self.reports:
            return
        done = self.trial.study._storage.get_trial(self.trial._trial_id).intermediate_values
        for epoch, value in sorted(self.reported.items()):
            if epoch not in done:
                self.trial.report(value, step=epoch)

    @classmethod
    def from_config(cls, trial_cfg: Mapping[str, Any], job_dir: Optional[str] = None) -> "TrialPruning":
        """From the job's `trial` config node: load the study, give it the sweep's pruner, find the trial;
        with trial.heartbeat_interval, start beating for it; record the job's folder (JOB_DIR_ATTR)."""
        storage = open_storage(str(trial_cfg["storage"]))
        study = optuna.load_study(study_name=str(trial_cfg["study"]), storage=storage)
        recipe: Dict[str, Any] = study.user_attrs.get(PRUNER_ATTR) or {"name": "none"}
        study.pruner = build_pruner(recipe["name"], recipe.get("options"))
        study_id = storage.get_study_id_from_name(study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(trial_cfg["number"]))
        interval = trial_cfg.get("heartbeat_interval")
        heartbeat = Heartbeat(storage, [trial_id], interval, name="job-heartbeat").start() if interval else None
        if job_dir is not None:
            try:
                storage.set_trial_user_attr(trial_id, JOB_DIR_ATTR, str(job_dir))
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # failed as stale meanwhile: the job runs on, its result is told as superseded
        return cls(optuna.trial.Trial(study, trial_id), recipe.get("monitor", "val_acc"), heartbeat)

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        if self.monitor not in metrics:
            raise KeyError(f"pruner.monitor={self.monitor!r} is not an epoch metric; one of {sorted(metrics)}")
        value = metrics[self.monitor]
        if not self.reports or not math.isfinite(value):
            return False  # a non-finite loss ends the run as 'diverged' anyway
        self.trial.report(float(value), step=epoch)
        self.reported[epoch] = float(value)
        if self.trial.should_prune():
            log.info("trial %d pruned after epoch %d (%s %.4f)", self.trial.number, epoch, self.monitor, value)
            self.pruned = True
        return self.pruned
