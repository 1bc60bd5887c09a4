"""Where an Optuna study lives: one string (a URL or a path) that the sweeper and every job can open.

    null (the sweeper's default)       journal:<sweep dir>/optuna_journal.log
    journal:<path>, or <path>.log      a journal file: safe for several processes on one host, no server
    sqlite:///x.db, postgresql://...   an RDB URL (SQLAlchemy); the only kind with heartbeats

optuna-dashboard opens both: `optuna-dashboard <sweep dir>/optuna_journal.log` or `... sqlite:///x.db`.
The string is passed to each job as `+trial.storage=...`, so prefer ~/.pgpass or PGPASSWORD to a password in
a PostgreSQL URL: the overrides are saved in every job folder.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Optional, Union

from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

log = logging.getLogger(__name__)

JOURNAL_FILE = "optuna_journal.log"
JOURNAL_PREFIX = "journal:"


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


def open_storage(url: str, heartbeat_interval: Optional[int] = None) -> BaseStorage:
    """An Optuna storage for `url` (see the module doc). Heartbeats need an RDB: journal files ignore them."""
    path = journal_path(str(url))
    if path is not None:
        if heartbeat_interval:
            log.warning("heartbeat_interval needs an RDB storage (sqlite:///, postgresql://); %s has none", url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in str(url):
        raise ValueError(f"unknown Optuna storage {url!r}: use sqlite:///..., postgresql://..., "
                         f"journal:<path> or a path ending in .log")
    engine_kwargs = {"connect_args": {"timeout": 60}} if str(url).startswith("sqlite") else None  # busy writers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat_interval
        return RDBStorage(str(url), engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval or None)
