"""Optuna sweeps on Optuna >= 5 with ask/tell: `hydra/sweeper=optuna` (hydra-optuna-sweeper pins optuna<3).

What `sweep()` does, in order:
1. The search space: `hydra.sweeper.params`, then the command line (which wins), parsed by search_space.py.
2. The study: opened in its storage (default: a journal file in the sweep folder), or continued when one with
   that name is there already. n_trials counts the study's trials in total, so running again continues it.
3. Until the study's n_trials slots are all taken (rule below): fail stale trials (heartbeat.py), ask up to
   n_jobs trials, keep those the rule entitles; launch them together as Hydra jobs (overrides: fixed +
   sampled + `+trial.number/study/storage/heartbeat_interval`, with which the job reaches its trial); read
   each job's result.json and tell the study COMPLETE (with the objective values), PRUNED or FAIL, after
   storing the result's status, metrics and output_dir as trial user attributes (so
   `python -m fer_sweep.report --storage URL --study NAME` rebuilds results.csv from the study alone); add
   the trial's number, state and value(s) to that result.json.
4. best.yaml (best parameters and the command to rerun them; the Pareto front for several objectives),
   Optuna's plots, then finish_sweep: results.csv, report.md, the summary line and the exit rule shared with
   the grid sweeper (fer_sweep.sweep.finish), judged on the study: exit status 1 when no trial completed or
   more than max_failure_rate of n_trials failed (the point at which the sweep also stops asking).

The sweep folder's results.csv holds this command's trials and the study's earlier ones run in this folder
(the manifest, fer_sweep.sweep.aggregate), never job folders of another sweep.

Job folder = trial number, so two trials never share a folder, also when a study is continued.

Several sweep processes (on one host or many) with the same storage and study name share the study; the
n_trials rule makes their sum exact, also when they ask at the same moment:
- A *retry* is a trial with the system attribute `failed_trial` (Optuna's RetryHeartbeatStaleTrialCallback
  enqueues one, same parameters, when a trial's heartbeat stops); the trials it retries are *replaced*.
  Every other trial is *fresh*.
- The n_trials slots go to the fresh trials with the lowest numbers (trials already told surplus aside):
  a fresh trial runs only if fewer than n_trials such trials have a lower number. Numbers are handed out
  atomically by the storage, so every process reaches the same verdict. A fresh trial beyond the slots is
  *surplus* (its process lost the race for the last slot): it is told FAIL at once with user attribute
  `fer_sweep.surplus=True`, never runs, is never retried and is counted nowhere (no row in results.csv).
  A retry always runs: it takes over the slot of the trial it replaces.
- *Finished* = COMPLETE, PRUNED or FAIL, neither surplus nor replaced. A process asks while slots are free
  or retries are queued; then it waits while other workers' watched trials run (they may still go stale and
  need a retry here), and exits. When all have exited the study holds exactly n_trials finished trials
  (fewer only if max_failure_rate or the timeout stopped it). All processes of one study should use the same
  n_trials.
  Without heartbeats (heartbeat_interval: null) a killed worker's trial stays RUNNING and keeps its slot.
- A trial failed as stale while its job was in fact alive (it stalled longer than grace_period) ends with
  its job all the same, but the study says FAIL: its row says `superseded` (trial_superseded_by: the retry
  that took its slot) and counts nowhere, so rows and reports agree with the study; without a retry it says
  `failed`.
Each process draws with its sampler reseeded per trial (seed + trial number), so parallel workers don't
propose the same random points and one worker alone stays reproducible.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shlex
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import optuna
import yaml
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.samplers import (BaseSampler, CmaEsSampler, GPSampler, GridSampler, NSGAIISampler, QMCSampler,
                             RandomSampler, TPESampler)
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from fer_sweep import results
from fer_sweep.errors import ConfigError
from fer_sweep.app import NOT_HELD_OUT
from fer_sweep.extras import MissingExtra
from fer_sweep.sweep import progress, results_csv
from fer_sweep.sweep.aggregate import RESULTS_CSV, SUPERSEDED, TRAILING, Manifest, write_results_csv
from fer_sweep.sweep.finish import Tally, finish_sweep
from fer_sweep.engine.resume import LAST_FILE
from fer_sweep.sweep.launch import launch_batch, planned_dirs
from fer_sweep.sweep.heartbeat import Heartbeat, fail_stale_trials, grace_seconds, is_watched, retry_stale_trial
from fer_sweep.sweep.pruning import JOB_DIR_ATTR, PRUNER_ATTR, build_pruner
from fer_sweep.sweep.search_space import (create_distributions, describe, format_override, format_value,
                                          grid_values)
from fer_sweep.sweep.storage import open_storage, storage_url

log = logging.getLogger(__name__)

SAMPLERS: Dict[str, Callable[..., BaseSampler]] = {
    "tpe": TPESampler, "random": RandomSampler, "cmaes": CmaEsSampler, "gp": GPSampler, "qmc": QMCSampler,
    "nsgaii": NSGAIISampler}  # and "grid", built from the search space
BEST_FILE = "best.yaml"
SURPLUS_ATTR = "fer_sweep.surplus"  # trial user attribute of a trial asked beyond n_trials (see the module doc)
RETRY_ATTR = "failed_trial"  # system attribute of a retry (Optuna's): the number of the original trial
OBJECTIVES_ATTR = "fer_sweep.objectives"  # study user attribute: the result.json keys the values are
RESULT_ATTRS = [k for k in (*TRAILING, "choices", "job") if k != "output_dir"]  # result.json -> trial user attrs
WAIT_POLL_S = 10.0


class OptunaSweeper(Sweeper):
    """Hydra sweeper: a search over the overrides' search space, one Optuna trial per Hydra job."""

    def __init__(self, sampler: Any, direction: Any, storage: Optional[str], study_name: Optional[str],
                 n_trials: int, n_jobs: int, max_failure_rate: float, pruner: Any, params: Any,
                 heartbeat_interval: Optional[int] = None, grace_period: Optional[int] = None,
                 max_retry: Optional[int] = 2, timeout: Optional[float] = None):
        self.sampler = _plain(sampler) or {}
        self.directions = [str(d).lower() for d in ([direction] if isinstance(direction, str) else direction)]
        self.storage, self.study_name = storage, study_name
        self.n_trials, self.n_jobs = int(n_trials), parallel_jobs(int(n_jobs))
        self.max_failure_rate = float(max_failure_rate)
        self.pruner = {"name": "none", "monitor": "val_acc", "options": {}, **(_plain(pruner) or {})}
        self.params = _plain(params) or {}
        self.heartbeat_interval = int(heartbeat_interval) if heartbeat_interval else None
        self.grace_period = grace_seconds(self.heartbeat_interval, grace_period)
        self.max_retry = None if max_retry is None else int(max_retry)
        self.timeout = float(timeout) if timeout else None  # seconds: ask no new trial after this long
        self.retry = retry_stale_trial(self.max_retry)
        self.budget = self.n_trials  # the trial budget of the running sweep (trial_budget)
        self.study_storage: Optional[optuna.storages.BaseStorage] = None
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher = None
        self.objectives: List[str] = []
        self.url = ""
        self.manifest: Optional[Manifest] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> optuna.Study:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        overrides = [_param_override(k, v) for k, v in self.params.items()] + list(arguments)
        distributions, fixed = create_distributions(overrides, self.hydra_context.config_loader)
        if not distributions:
            raise ValueError("nothing to search: give hydra.sweeper.params or overrides such as "
                             "'optimizer.lr=tag(log, interval(1e-4, 1e-1))'")
        self.objectives = objective_names(self.config.objective)
        self.validate()
        try:
            self.refuse_trained_on_val(distributions, fixed)
        except ConfigError as exc:  # bad input: one line, exit 2, before any trial or file
            print(f"fer_sweep: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self.url = storage_url(self.storage, sweep_dir)
        try:
            study = self.open_study(self.study_name or sweep_dir.resolve().name, distributions)
        except MissingExtra as exc:  # one line, exit 2 (Hydra lets SystemExit through without a traceback)
            print(f"fer_sweep: error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        log.info("Optuna study %r in %s, %s, n_trials=%d; search space:\n%s", study.study_name, self.url,
                 "/".join(self.directions), self.n_trials, describe(distributions, fixed))

        self.manifest = Manifest(sweep_dir, study_dirs(sweep_dir, study))
        write_results_csv(sweep_dir)  # this study's rows in this folder; then each trial's row as it ends
        progress.start(sweep_dir, self.trial_budget(distributions),
                       [row.get("status", "") for row in results_csv.read_rows(sweep_dir / RESULTS_CSV) or []])
        stopped = self.run_trials(study, distributions, list(fixed.values()))
        if stopped:
            log.warning("Optuna sweep stopped early: %s", stopped)
        write_best(study, sweep_dir / BEST_FILE, self.objectives, self.url, self.budget)
        write_plots(study, sweep_dir, self.objectives)
        self.finish(sweep_dir, study)
        return study

    def validate(self) -> None:
        """Configuration mistakes fail before any job runs."""
        if any(d not in ("maximize", "minimize") for d in self.directions):
            raise ValueError(f"hydra.sweeper.direction: maximize, minimize or a list, not {self.directions}")
        if len(self.directions) != len(self.objectives):
            raise ValueError(f"objective {self.objectives} but direction {self.directions}: give as many of each, "
                             f"e.g. objective=[best_val_acc,params] hydra.sweeper.direction=[maximize,minimize]")
        build_pruner(self.pruner["name"], self.pruner.get("options"))
        if self.pruner["name"] != "none" and len(self.directions) > 1:
            raise ValueError("Optuna cannot prune multi-objective studies: use hydra.sweeper.pruner.name=none")
        if self.sampler.get("name", "tpe") not in [*SAMPLERS, "grid"]:
            raise ValueError(f"unknown sampler {self.sampler.get('name')!r}: one of {[*SAMPLERS, 'grid']}")

    def refuse_trained_on_val(self, distributions: Dict[str, BaseDistribution], fixed: Dict[str, str]) -> None:
        """data.split=full trains on the val split, so a study may not optimise or prune on val metrics then."""
        if "full" not in split_values(self.config, distributions, fixed):
            return
        used = [f"objective={name}" for name in self.objectives if name in NOT_HELD_OUT]
        monitor = str(self.pruner.get("monitor", ""))
        if self.pruner["name"] != "none" and monitor.startswith("val_"):
            used.append(f"hydra.sweeper.pruner.monitor={monitor}")
        if used:
            raise ConfigError(f"{' and '.join(used)} with data.split=full: that split trains on PublicTest, the val "
                              "split, so val metrics are not held out; search with data.split=seed or official")

    def open_study(self, name: str, distributions: Dict[str, BaseDistribution]) -> optuna.Study:
        """Create the study or continue it, with this run's sampler; keep the pruner's recipe for the jobs."""
        grace = int(math.ceil(self.grace_period)) if self.grace_period else None
        self.study_storage = open_storage(self.url, self.heartbeat_interval, grace, self.retry_entitled)
        study = optuna.create_study(storage=self.study_storage, study_name=name, directions=self.directions,
                                    load_if_exists=True)
        existing = [d.name.lower() for d in study.directions]
        if existing != self.directions:
            raise ValueError(f"study {name!r} in {self.url} has directions {existing}, not {self.directions}")
        study.sampler = TrialSeededSampler(lambda number: build_sampler(self.sampler, distributions, number))
        study.set_user_attr(PRUNER_ATTR, self.pruner)
        study.set_user_attr(OBJECTIVES_ATTR, self.objectives)
        return study

    def trial_budget(self, distributions: Dict[str, BaseDistribution]) -> int:
        """n_trials, but never more than a grid has points (Optuna's grid sampler can't stop an ask/tell loop)."""
        if self.sampler.get("name") != "grid":
            return self.n_trials
        return min(self.n_trials, math.prod(len(v) for v in grid_values(distributions).values()))

    def run_trials(self, study: optuna.Study, distributions: Dict[str, BaseDistribution],
                   fixed: List[str]) -> Optional[str]:
        """Ask, launch, tell until the study's n_trials slots are taken and no retry is queued (see the module
        doc); returns why it stopped early, if it did."""
        budget = self.budget = self.trial_budget(distributions)
        waited_for: List[int] = []
        start = time.monotonic()
        while True:
            if self.heartbeat_interval:  # a dead worker's RUNNING trial becomes FAIL and is queued again
                fail_stale_trials(study, self.study_storage, self.grace_period, self.retry_entitled)
            ledger = Ledger(study.get_trials(deepcopy=False), budget)
            todo = budget - ledger.slots_taken + len(ledger.waiting)
            if todo == 0:
                others = [t.number for t in ledger.running if is_watched(t)] if self.heartbeat_interval else []
                if not others:
                    return None
                if others != waited_for:
                    log.info("all %d trials are taken; waiting for trials %s of other workers (retried here "
                             "if their heartbeat stops for %.0fs)", budget, others, self.grace_period)
                    waited_for = others
                time.sleep(min(float(self.heartbeat_interval), WAIT_POLL_S))
                continue
            if self.timeout and time.monotonic() - start >= self.timeout:
                return (f"hydra.sweeper.timeout={self.timeout:g}s passed ({ledger.slots_taken} of {budget} trials "
                        f"taken); the same command continues the study")
            asked = self.ask(study, distributions, min(self.n_jobs, todo))
            with self.heartbeat(asked):  # beats at once, so a process killed from here on leaves no orphan
                for run in consecutive_runs(self.claim(study, asked, budget)):
                    self.run_batch(study, run, fixed)
            failed = len(Ledger(study.get_trials(deepcopy=False), budget).failed)
            if failed > self.max_failure_rate * budget:
                return f"{failed} failed trials: more than max_failure_rate={self.max_failure_rate} of {budget}"

    def retry_entitled(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """A trial just failed as stale is queued again, unless it was surplus (its process died between
        asking and telling it so)."""
        if Ledger(study.get_trials(deepcopy=False), self.budget).entitled(trial.number):
            self.retry(study, trial)

    def ask(self, study: optuna.Study, distributions: Dict[str, BaseDistribution], n: int) -> List[optuna.Trial]:
        """n trials: queued retries first (study.ask pops WAITING trials), else newly sampled ones."""
        with warnings.catch_warnings():  # Optuna expects heartbeats with study.optimize; we beat ourselves
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            return [study.ask(distributions) for _ in range(n)]

    def heartbeat(self, trials: Sequence[optuna.Trial]) -> Any:
        """This process beats for its trials from ask to tell, also while a launcher queues their jobs."""
        if not self.heartbeat_interval or not trials:
            return contextlib.nullcontext()
        return Heartbeat(self.study_storage, [t._trial_id for t in trials], self.heartbeat_interval,
                         name="sweeper-heartbeat")

    def claim(self, study: optuna.Study, trials: Sequence[optuna.Trial], budget: int) -> List[optuna.Trial]:
        """The asked trials this process may run (the n_trials rule); the others are told FAIL as surplus."""
        ledger = Ledger(study.get_trials(deepcopy=False), budget)
        claimed = []
        for trial in trials:
            if ledger.entitled(trial.number):
                claimed.append(trial)
                continue
            trial.set_user_attr(SURPLUS_ATTR, True)
            tell_study(study, trial, TrialState.FAIL, None)
            log.info("trial %d: surplus - other workers took the last of the %d trials meanwhile; not run",
                     trial.number, budget)
        return claimed

    def run_batch(self, study: optuna.Study, trials: List[optuna.Trial], fixed: List[str]) -> None:
        """Launch one job per trial (job number = trial number) and tell the study how each ended."""
        jobs = []
        for trial in trials:
            rerun = fixed + [format_override(name, value) for name, value in trial.params.items()]
            trial.set_user_attr("overrides", rerun)  # best.yaml's command, and the dashboard's record
            trial.set_user_attr("host", socket.gethostname())
            jobs.append(rerun + self.trial_overrides(study, trial, rerun))
            log.info("trial %d: %s", trial.number, " ".join(rerun[len(fixed):]))
        try:
            job_returns = launch_batch(self.launcher, jobs, trials[0].number, self.manifest,
                                       self.hydra_context, self.config)
        except BaseException as exc:  # the launcher itself broke: no trial of this batch may stay RUNNING
            interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))  # Ctrl-C, SIGTERM (app.main)
            for trial in trials:
                frozen = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                if interrupted and frozen.state == TrialState.FAIL:
                    requeue_interrupted(study, frozen)
            raise
        for trial, job_return in zip(trials, job_returns):
            self.tell(study, trial, job_return)

    def trial_overrides(self, study: optuna.Study, trial: optuna.Trial, rerun: Sequence[str] = ()) -> List[str]:
        """How a job reaches its trial through the storage (see fer_sweep.sweep.pruning); not in config_hash.
        A retry also gets the folder of the trial it retries (`+trial.resume_from`) when that folder holds a
        last.pt: the job continues that run (fer_sweep.engine.resume)."""
        overrides = [f"+trial.number={trial.number}", f"+trial.study={format_value(study.study_name)}",
                     f"+trial.storage={format_value(self.url)}"]
        if self.heartbeat_interval:
            overrides.append(f"+trial.heartbeat_interval={self.heartbeat_interval}")
        frozen = study._storage.get_trial(trial._trial_id)
        retried = frozen.system_attrs.get("retry_history") or []
        if retried:  # the failed trial's job folder: as its job recorded it, else where this sweep would put it
            folder = frozen.user_attrs.get(JOB_DIR_ATTR)
            if not folder:
                planned = planned_dirs(self.hydra_context, self.config, [list(rerun) + overrides], retried[-1])
                folder = str(planned[0]) if planned else None
            if folder and (Path(folder) / LAST_FILE).is_file():
                overrides.append(f"+trial.resume_from={format_value(str(folder))}")
        return overrides

    def tell(self, study: optuna.Study, trial: optuna.Trial, job_return: JobReturn) -> None:
        """The job's result.json -> the trial's state and values; then the trial's row goes into that file."""
        out = Path(job_return.hydra_cfg.hydra.runtime.output_dir) if job_return.hydra_cfg is not None else None
        result = results.read_result(out) if out is not None else None
        if job_return.status == JobStatus.FAILED:
            state, values = TrialState.FAIL, None
        else:
            state, values = outcome(result, self.objectives)
        attrs = {key: result[key] for key in RESULT_ATTRS if (result or {}).get(key) is not None}
        if out is not None:
            attrs["output_dir"] = str(out)
        if state == TrialState.FAIL and "status" not in attrs:
            attrs["status"] = "failed"
        try:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
        except UpdateFinishedTrialError:  # failed as stale by another worker while it ran: overruled below
            pass
        frozen = tell_study(study, trial, state, values)
        if result is not None and out is not None:  # the trial's state and value(s) for results.csv
            record = trial_record(frozen, study.study_name, self.objectives)
            retry = retried_as(study.get_trials(deepcopy=False), frozen.number)
            if retry is not None:
                record["superseded_by"] = retry
            fix = overruled(frozen, state, retry)
            if fix:
                log.warning("trial %d: %s (no heartbeat for %.0fs: stalled?)", trial.number, fix["error"],
                            self.grace_period or 0)
            result = {**result, "trial": record, **fix}
            results.write_json(out / results.RESULT_FILE, result)
            if self.manifest is not None:  # the row of results.csv gets the trial's columns too
                results_csv.update(self.manifest.sweep_dir, result)

    def finish(self, sweep_dir: Path, study: optuna.Study) -> None:
        """results.csv, report.md and the summary line; then the exit rule (fer_sweep.sweep.finish), judged on
        the study's counted trials, which span every worker, against the trial budget."""
        ledger = Ledger(study.get_trials(deepcopy=False), self.budget)
        completed = sum(t.state == TrialState.COMPLETE for t in ledger.counted)
        finish_sweep(sweep_dir, "Optuna sweep", self.max_failure_rate,
                     Tally(completed, len(ledger.failed), self.budget))


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def parallel_jobs(n_jobs: int) -> int:
    """hydra.sweeper.n_jobs, read as joblib reads its n_jobs: -1 = one per CPU core, -2 = all but one..."""
    return n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)


class Ledger:
    """A study's trials as the n_trials rule of the module doc sees them; budget None: no limit."""

    def __init__(self, trials: Sequence[FrozenTrial], budget: Optional[int] = None):
        self.trials = sorted(trials, key=lambda t: t.number)
        fresh = [t for t in self.trials if not is_retry(t) and not is_surplus(t)]
        self.fresh = fresh if budget is None else fresh[:budget]  # the trials that took the n_trials slots
        slots = {t.number for t in self.fresh}
        self.surplus = [t for t in self.trials if not is_retry(t) and t.number not in slots]
        self.replaced = {n for t in self.trials for n in t.system_attrs.get("retry_history", [])}
        self.counted = [t for t in self.trials
                        if t.number not in self.replaced and (is_retry(t) or t.number in slots)]

    @property
    def slots_taken(self) -> int:
        return len(self.fresh)

    @property
    def finished(self) -> List[FrozenTrial]:
        return [t for t in self.counted if t.state.is_finished()]

    @property
    def failed(self) -> List[FrozenTrial]:
        return [t for t in self.counted if t.state == TrialState.FAIL]

    @property
    def running(self) -> List[FrozenTrial]:
        return [t for t in self.counted if t.state == TrialState.RUNNING]

    @property
    def waiting(self) -> List[FrozenTrial]:
        return [t for t in self.counted if t.state == TrialState.WAITING]

    def entitled(self, number: int) -> bool:
        """May trial `number` run? A retry always; a fresh trial if it took one of the slots."""
        return any(t.number == number for t in self.counted)

    def state_counts(self) -> Dict[str, int]:
        """Counted trials by state, plus how many were retried or surplus (when any)."""
        counts: Dict[str, int] = {}
        for trial in self.counted:
            counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
        extra = {"retried": len(self.replaced), "surplus": len(self.surplus)}
        return {**counts, **{k: n for k, n in extra.items() if n}}


def is_retry(trial: FrozenTrial) -> bool:
    return RETRY_ATTR in trial.system_attrs


def is_surplus(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(SURPLUS_ATTR))


class TrialSeededSampler(BaseSampler):
    """The configured sampler, rebuilt for each trial from seed + trial number (in before_trial, Optuna's
    first call for a trial); everything else goes to that sampler. Trial numbers are unique in a study,
    so parallel workers never draw the same random points, and a continued study draws new ones."""

    def __init__(self, build: Callable[[int], BaseSampler]):
        self.build = build
        self.sampler = build(0)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.sampler = self.build(trial.number)
        self.sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


def _param_override(name: str, value: Any) -> str:
    """A `hydra.sweeper.params` entry as a command-line override (YAML may have made a number or list of it)."""
    return f"{name}={value if isinstance(value, (str, list)) else format_value(value)}"


def split_values(config: DictConfig, distributions: Dict[str, BaseDistribution], fixed: Dict[str, str]
                 ) -> List[str]:
    """The data.split values the trials can run with: searched, fixed by an override, else the config's."""
    if "data.split" in distributions:
        return [str(c) for c in getattr(distributions["data.split"], "choices", ())]
    if "data.split" in fixed:
        return [fixed["data.split"].partition("=")[2].strip()]
    return [str(OmegaConf.select(config, "data.split", default="seed"))]


def objective_names(objective: Any) -> List[str]:
    """cfg.objective, the result.json key(s) the study optimizes: a name or a list of names."""
    return [objective] if isinstance(objective, str) else [str(o) for o in objective]


def build_sampler(spec: Dict[str, Any], distributions: Dict[str, BaseDistribution], offset: int = 0
                  ) -> BaseSampler:
    """The configured sampler, seeded with seed + offset (the trial number: see TrialSeededSampler). qmc and
    grid keep their seed: it orders their points, which they hand out by trial number (grid) or in sequence
    (qmc), continuing from the study."""
    name, seed, options = spec.get("name", "tpe"), spec.get("seed"), dict(spec.get("options") or {})
    if seed is not None and name not in ("qmc", "grid"):
        seed = int(seed) + offset
    if name == "grid":
        return GridSampler(grid_values(distributions), seed=seed, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name](seed=seed, **options)


def study_dirs(sweep_dir: Path, study: optuna.Study) -> List[Path]:
    """Job folders below sweep_dir that ran trials of this study (a continued study keeps its earlier rows);
    the result.json of a job names its study and trial."""
    numbers = {t.number for t in study.get_trials(deepcopy=False)}
    found = []
    for file in sorted(Path(sweep_dir).rglob(results.RESULT_FILE)):
        trial = (results.read_result(file.parent) or {}).get("trial") or {}
        if trial.get("study") == study.study_name and trial.get("number") in numbers:
            found.append(file.parent)
    return found


def consecutive_runs(trials: Sequence[optuna.Trial]) -> List[List[optuna.Trial]]:
    """Split a batch where trial numbers jump (another process asked in between), so each launch can number
    its jobs from its first trial and job folder = trial number still holds."""
    runs: List[List[optuna.Trial]] = []
    for trial in trials:
        if runs and trial.number == runs[-1][-1].number + 1:
            runs[-1].append(trial)
        else:
            runs.append([trial])
    return runs


def outcome(result: Optional[Dict[str, Any]], objectives: List[str]):
    """(state, values) for a job's result. A diverged run still has its best-before-NaN accuracy: COMPLETE
    with it; any run without a finite value for every objective is a FAIL."""
    status = (result or {}).get("status")
    if status == "pruned":
        return TrialState.PRUNED, None
    if status in ("completed", "diverged"):
        values = [result.get(name) for name in objectives]
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            return TrialState.COMPLETE, [float(v) for v in values]
    return TrialState.FAIL, None


def tell_study(study: optuna.Study, trial: optuna.Trial, state: TrialState, values: Optional[List[float]]
               ) -> FrozenTrial:
    """study.tell, tolerating the RuntimeError of GridSampler calling study.stop() after the last grid point
    (stop() only works inside study.optimize); the trial was recorded before that."""
    try:
        return study.tell(trial, values, state=state, skip_if_finished=True)
    except RuntimeError:
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        if not frozen.state.is_finished():
            raise
        return frozen


def requeue_interrupted(study: optuna.Study, trial: FrozenTrial) -> None:
    """A trial whose job was interrupted (Ctrl-C, SIGTERM) is no failure of its parameters: queue a retry, as a
    stale trial's, which the same command runs next, continuing the job's last.pt (see trial_overrides)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trial)
    log.warning("trial %d: interrupted; queued again, the same command continues it", trial.number)


def retried_as(trials: Sequence[FrozenTrial], number: int) -> Optional[int]:
    """The number of the retry that replaced trial `number` (see heartbeat.retry_stale_trial), if any."""
    retries = (t for t in trials if is_retry(t) and t.system_attrs["retry_history"][-1] == number)
    return next((t.number for t in retries), None)


def overruled(frozen: FrozenTrial, told: TrialState, retry: Optional[int]) -> Dict[str, Any]:
    """What result.json must say of a trial that another worker set to FAIL as stale while its job ran on:
    superseded by the retry that took its slot, or failed if none did; {} otherwise."""
    if retry is not None:
        return {"status": SUPERSEDED,
                "error": f"set to FAIL as stale while it ran; trial {retry} retried it and counts instead"}
    if frozen.state == TrialState.FAIL and told != TrialState.FAIL:
        return {"status": "failed",
                "error": "set to FAIL as stale while it ran, and not retried: the study does not count its result"}
    return {}


def trial_record(trial: FrozenTrial, study_name: str, objectives: List[str]) -> Dict[str, Any]:
    """The `trial` entry of result.json, which results.csv turns into columns trial, trial_state, trial_value..."""
    record: Dict[str, Any] = {"number": trial.number, "study": study_name, "state": trial.state.name}
    if is_retry(trial):  # the trial it replaces (its worker died)
        record["retry_of"] = trial.system_attrs["retry_history"][-1]
    if trial.values is not None and len(objectives) == 1:
        record["value"] = trial.values[0]
    elif trial.values is not None:
        record.update({f"value_{name}": v for name, v in zip(objectives, trial.values)})
    return record


def rerun_command(trial: FrozenTrial) -> str:
    overrides = trial.user_attrs.get("overrides") or [format_override(k, v) for k, v in trial.params.items()]
    return " ".join(["python -m fer_sweep", *(shlex.quote(o) for o in overrides)])


def trial_summary(trial: FrozenTrial, objectives: List[str]) -> Dict[str, Any]:
    values = dict(zip(objectives, trial.values))
    return {"number": trial.number, **({"value": trial.value} if len(objectives) == 1 else {"values": values}),
            "params": dict(trial.params), "output_dir": trial.user_attrs.get("output_dir"),
            "command": rerun_command(trial)}


def write_best(study: optuna.Study, path: Path, objectives: List[str], url: str,
               budget: Optional[int] = None) -> None:
    """best.yaml: the best trial (or the Pareto front), its parameters and the exact command to rerun it."""
    states = Ledger(study.get_trials(deepcopy=False), budget).state_counts()
    summary: Dict[str, Any] = {"study": study.study_name, "storage": url, "objectives": objectives,
                               "directions": [d.name.lower() for d in study.directions], "trials": states}
    if len(objectives) == 1:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        summary["best"] = trial_summary(study.best_trial, objectives) if complete else None
    else:
        summary["pareto_front"] = [trial_summary(t, objectives) for t in study.best_trials]
    results.atomic_write_text(path, "# Written by the Optuna sweeper; rerun a trial with its command.\n"
                              + yaml.safe_dump(summary, sort_keys=False, width=1000))


def write_plots(study: optuna.Study, sweep_dir: Path, objectives: List[str]) -> List[Path]:
    """Optuna's optimization history, parameter importances and parallel coordinates (Pareto front for
    several objectives) as PNG files; a plot that can't be drawn is a warning, never a failed sweep."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as plots

    single = len(objectives) == 1
    target = None if single else (lambda t: t.values[0])  # several objectives: history etc. of the first
    kwargs = {"target": target, "target_name": objectives[0]}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    draw: Dict[str, Callable[[], Any]] = {
        "optuna_history.png": lambda: plots.plot_optimization_history(study, **kwargs),
        "optuna_parallel_coordinate.png": lambda: plots.plot_parallel_coordinate(study, **kwargs)}
    if len(complete) >= 2:
        draw["optuna_importances.png"] = lambda: plots.plot_param_importances(study, **kwargs)
    if not single and len(objectives) <= 3:
        draw["optuna_pareto_front.png"] = lambda: plots.plot_pareto_front(study, target_names=objectives)
    written = []
    for name, plot in draw.items():
        try:
            written.append(_save_plot(plot, sweep_dir / name))
        except Exception as exc:  # noqa: BLE001 - plots are a convenience
            log.warning("could not draw %s: %s: %s", name, type(exc).__name__, exc)
    return written


def _save_plot(plot: Callable[[], Any], path: Path) -> Path:
    import matplotlib.pyplot as plt
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning, and empty-study warnings
        axes = plot()
    figure = np.ravel(axes)[0].figure
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(figure)
    tmp.replace(path)
    return path
