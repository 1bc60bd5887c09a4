"""Heartbeats: a trial whose worker died (SIGKILL, OOM killer, a lost node) must not stay RUNNING forever.

Who beats: while a trial runs, its sweep process beats for it (from the moment it is asked until it is told,
so also while a job waits in a SLURM queue), and so does the job itself (`+trial.heartbeat_interval`, started
by fer_sweep.sweep.pruning), so a job that outlives its sweep process keeps its trial. Each beater is a daemon
thread that dies with its process and stops by itself once the trial is finished.

How a beat is stored:
  RDB (postgresql://, mysql://, sqlite:///)  Optuna's own `storage.record_heartbeat(trial_id)`, timed by the
                                             database server's clock
  journal file                               Optuna 5's JournalStorage has no heartbeats: the trial's system
                                             attribute `fer_sweep.heartbeat` = the beater's time.time()
                                             (one host, or hosts whose clocks agree: NTP)
Every beater also sets `fer_sweep.heartbeat` once on RDB storages: it marks a trial as watched, i.e. one
that can become stale, which sweepers wait for before they exit (see optuna_sweeper.py).

Stale -> FAIL -> retried once, one path for both: before each batch every sweep process calls
`fail_stale_trials`. A RUNNING trial whose last beat is older than grace_period (default 2 x interval) is set
to FAIL; the storage lets exactly one process do that (the others get UpdateFinishedTrialError or False), and
only that process calls `retry_stale_trial`, which enqueues a WAITING copy with the same parameters through
Optuna's RetryHeartbeatStaleTrialCallback (system attributes `failed_trial`, `retry_history`) - at most
max_retry times per original trial. The next `study.ask()` of any worker pops that copy and runs it.
On RDB storages the FAIL is Optuna's own `optuna.storages.fail_stale_trials` (the storage carries the
grace period and the callback, see storage.open_storage); on journal files it is `_fail_stale_journal_trials`.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
import warnings
from typing import Callable, Iterable, List, Optional

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

HEARTBEAT_ATTR = "fer_sweep.heartbeat"  # trial system attribute: unix time of the last beat (journal), or
#                                         of the first one (RDB: marks the trial as watched)


def grace_seconds(interval: Optional[float], grace_period: Optional[float]) -> Optional[float]:
    """The staleness threshold: grace_period, else 2 x heartbeat_interval (Optuna's default); None: off."""
    if not interval:
        return None
    return float(grace_period) if grace_period else 2.0 * float(interval)


def record_heartbeat(storage: BaseStorage, trial_id: int, first: bool = False) -> None:
    """One beat for one trial (see the module doc for where it is stored)."""
    if isinstance(storage, RDBStorage):
        storage.record_heartbeat(trial_id)
        if first:
            storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
    else:
        storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())


class Heartbeat:
    """Beats for some trials every `interval` seconds in a daemon thread until stop() or until every one of
    them is finished. The first beat is synchronous, in start(), so a trial is watched from then on.

        with Heartbeat(storage, [trial_id], interval=60):
            ...  # run the trial
    """

    def __init__(self, storage: BaseStorage, trial_ids: Iterable[int], interval: float, name: str = "heartbeat"):
        self.storage, self.interval, self.name = storage, float(interval), name
        self.trial_ids: List[int] = list(trial_ids)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "Heartbeat":
        self._beat(first=True)
        if self.trial_ids:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(5.0, self.interval))

    def __enter__(self) -> "Heartbeat":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        while self.trial_ids and not self._stop.wait(self.interval):
            self._beat()

    def _beat(self, first: bool = False) -> None:
        for trial_id in list(self.trial_ids):
            try:
                if self.storage.get_trial(trial_id).state.is_finished():
                    self.trial_ids.remove(trial_id)  # told, or failed as stale by another worker
                    continue
                record_heartbeat(self.storage, trial_id, first=first)
            except UpdateFinishedTrialError:
                self.trial_ids.remove(trial_id)
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not kill the job; beat again later
                log.warning("heartbeat for trial id %s failed: %s: %s", trial_id, type(exc).__name__, exc)


def trial_id_of(storage: BaseStorage, study_name: str, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def is_watched(trial: FrozenTrial) -> bool:
    """Whether the trial's workers beat for it, so that it becomes stale when they die."""
    return HEARTBEAT_ATTR in trial.system_attrs


def retry_stale_trial(max_retry: Optional[int]) -> Callable[[optuna.Study, FrozenTrial], None]:
    """The callback for a trial just failed as stale: log it, and enqueue a WAITING copy with the same
    parameters (Optuna's RetryHeartbeatStaleTrialCallback) unless the trial was retried max_retry times."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        history = trial.system_attrs.get("retry_history", [])
        if max_retry is not None and len(history) >= max_retry:
            log.warning("trial %d: no heartbeat, set to FAIL; not retried (retried %d times already, "
                        "max_retry=%d)", trial.number, len(history), max_retry)
            return
        retry(study, trial)
        log.warning("trial %d: no heartbeat, set to FAIL; queued again with the same parameters %s",
                    trial.number, trial.params)
    return callback


def fail_stale_trials(study: optuna.Study, storage: BaseStorage, grace_period: float,
                      on_stale: Callable[[optuna.Study, FrozenTrial], None]) -> None:
    """Set the study's stale RUNNING trials to FAIL and call on_stale once for each (see the module doc).
    An RDB storage must have been opened with heartbeat_interval, grace_period and on_stale as its
    heartbeat_stale_trial_callback (storage.open_storage does that)."""
    if isinstance(storage, RDBStorage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    else:
        _fail_stale_journal_trials(study, storage, grace_period, on_stale)


def _fail_stale_journal_trials(study: optuna.Study, storage: BaseStorage, grace_period: float,
                               on_stale: Callable[[optuna.Study, FrozenTrial], None]) -> None:
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_watched(trial) or now - last_seen(trial) <= grace_period:
            continue
        try:
            failed = storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            failed = False  # another worker failed it (or its own sweeper told it) first
        if failed:  # a copy: Optuna's retry callback appends to the trial's retry_history list
            on_stale(study, copy.deepcopy(storage.get_trial(trial._trial_id)))


def last_seen(trial: FrozenTrial) -> float:
    """Unix time of the trial's last sign of life: its last beat, or its start if later (a retry inherits
    its original's system attributes, so its own start is what counts until its first beat)."""
    start = trial.datetime_start.timestamp() if trial.datetime_start else 0.0  # naive local time
    return max(float(trial.system_attrs.get(HEARTBEAT_ATTR, 0.0)), start)

