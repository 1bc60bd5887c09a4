"""Where an Optuna study lives: one string (a URL or a path) that the sweeper and every job can open.

    null (the sweeper's default)       journal:<sweep dir>/optuna_journal.log
    journal:<path>, or <path>.log      a journal file: safe for several processes on one host, no server;
                                       on a shared filesystem (NFS) also for a few hosts
    postgresql://user@host/db          an RDB URL (SQLAlchemy): the one for several machines (or mysql+pymysql://)
    sqlite:///x.db                     one process at a time: SQLite locks the whole file, parallel writers
                                       wait on each other and may fail with "database is locked"

Heartbeats (fer_sweep.sweep.heartbeat) work with all of them: RDB storages record Optuna's own heartbeats,
journal files a trial attribute.

optuna-dashboard opens both: `optuna-dashboard <sweep dir>/optuna_journal.log` or `... sqlite:///x.db`.
The string is passed to each job as `+trial.storage=...`, so prefer ~/.pgpass or PGPASSWORD to a password in
a PostgreSQL URL: the overrides are saved in every job folder.
"""
from __future__ import annotations

import logging
import random
import time
import warnings
from pathlib import Path
from typing import Callable, Optional, Union

from optuna.exceptions import ExperimentalWarning, StorageInternalError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.exc import SQLAlchemyError

from fer_sweep.extras import require

log = logging.getLogger(__name__)

JOURNAL_FILE = "optuna_journal.log"
JOURNAL_PREFIX = "journal:"
RDB_ATTEMPTS = 5


def storage_url(storage: Optional[str], sweep_dir: Union[str, Path]) -> str:
    """The configured storage, or the journal file in the sweep folder; journal paths made absolute.

    Absolute, because jobs may run in another working directory (hydra.job.chdir, other launchers).
    """
    if storage is None:
        return JOURNAL_PREFIX + str((Path(sweep_dir) / JOURNAL_FILE).resolve())
    path = journal_path(str(storage))
    return JOURNAL_PREFIX + str(path.resolve()) if path is not None else str(storage)


def journal_path(url: str) -> Optional[Path]:
    """The file of a journal storage string, or None when the string is a database URL."""
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX):]).expanduser()
    if "://" not in url and url.endswith(".log"):
        return Path(url).expanduser()
    return None


def open_storage(url: str, heartbeat_interval: Optional[int] = None, grace_period: Optional[int] = None,
                 on_stale: Optional[Callable[..., None]] = None) -> BaseStorage:
    """An Optuna storage for `url` (see the module doc). For a sweeper with heartbeats, an RDB storage also
    carries the heartbeat interval, the grace period and the stale-trial callback, which Optuna's
    fail_stale_trials reads from it; journal files need none of them here (see fer_sweep.sweep.heartbeat)."""
    path = journal_path(str(url))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in str(url):
        raise ValueError(f"unknown Optuna storage {url!r}: use sqlite:///..., postgresql://..., "
                         f"journal:<path> or a path ending in .log")
    if url.split("://")[0] in ("postgresql", "postgresql+psycopg"):  # SQLAlchemy's driver for these: psycopg 3
        require("psycopg", "a postgresql:// Optuna storage")
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None  # busy writers
    heartbeat = dict(heartbeat_interval=int(heartbeat_interval), grace_period=int(grace_period) if grace_period
                     else None, heartbeat_stale_trial_callback=on_stale) if heartbeat_interval else {}
    for attempt in range(RDB_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat_interval
                return RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except (SQLAlchemyError, StorageInternalError) as exc:
            # Several workers starting at once on a new database all create Optuna's tables; the losers
            # of that race fail once (e.g. PostgreSQL's duplicate pg_type rows) and find the tables next time.
            if attempt == RDB_ATTEMPTS - 1:
                raise
            log.info("opening %s failed (%s: %s); retrying", url, type(exc).__name__, str(exc).splitlines()[0])
            time.sleep(0.5 + random.random() * 2)
    raise AssertionError("unreachable")
