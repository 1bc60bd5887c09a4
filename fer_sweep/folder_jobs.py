"""Which jobs of a sweep or reference folder `fer_sweep.evaluate` scores: those its results.csv lists as completed.

A sweep folder can hold more than its command's jobs: pruned, failed or diverged ones (their checkpoint is a
partial run), superseded Optuna trials (their retry counts instead), jobs still running, and folders of an earlier
command that the manifest, hence results.csv, leaves out. A multirun/reference folder can hold probabilities of
runs its table no longer lists. Scoring all of them would put jobs nobody chose into an ensemble, so a folder's
members are the completed rows of its results.csv, each once; everything else found there is skipped with the
reason. A folder without results.csv (run folders gathered by hand, a sweep from before results.csv) has nothing
to choose by: every job found is taken, and the caller says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pandas as pd

from fer_sweep import results
from fer_sweep.sweep.aggregate import RESULTS_CSV

JOB_MEMBERS = (results.CHECKPOINT_FILE, results.PROBS_FILE)  # what a run folder is scored by, in this order
KEPT_SUFFIX = f"_{results.PROBS_TEXT_FILE}"  # a reference folder's runs: <run>_test_probs.csv
NOT_LISTED = "not in results.csv"


@dataclass
class Selection:
    folder: Path
    taken: List[Tuple[str, Path]] = field(default_factory=list)     # (job, the file scored)
    skipped: List[Tuple[str, str]] = field(default_factory=list)    # (job, why)
    listed: bool = True  # False: no results.csv, every job found was taken

    def lines(self) -> List[str]:
        head = (f"{self.folder}: {len(self.taken)} job(s) taken, {len(self.skipped)} skipped" if self.listed else
                f"{self.folder}: no {RESULTS_CSV}, so every job found is taken ({len(self.taken)})")
        return ([head] + [f"  took     {job}" for job, _ in self.taken]
                + [f"  skipped  {job}: {why}" for job, why in self.skipped])


def job_member(folder: Path) -> Optional[Path]:
    """A run folder's checkpoint, else its saved probabilities."""
    return next((folder / name for name in JOB_MEMBERS if (folder / name).is_file()), None)


def found_jobs(folder: Path) -> Dict[str, Path]:
    """Every job found under a folder, by its key (the job folder relative to it, or a kept file's run label)."""
    jobs = {p.parent.parent for p in folder.rglob(results.CHECKPOINT_FILE)}
    jobs |= {p.parent for p in folder.rglob(results.PROBS_FILE)}
    found = {job.relative_to(folder).as_posix(): job_member(job) for job in sorted(jobs)}
    found.update({p.name[: -len(KEPT_SUFFIX)]: p for p in sorted(folder.glob(f"*{KEPT_SUFFIX}"))})
    return found


def select(folder: Path) -> Selection:
    """The folder's jobs that its results.csv lists as completed (each once), and the others with why."""
    found = found_jobs(folder)
    selection = Selection(folder)
    listing = folder / RESULTS_CSV
    if not listing.is_file():
        selection.listed = False
        selection.taken = list(found.items())
        return selection
    statuses = _listed_statuses(folder, pd.read_csv(listing))
    for key, member in found.items():
        status = statuses.get(key)
        if status == "completed":
            selection.taken.append((key, member))
        else:
            selection.skipped.append((key, NOT_LISTED if status is None else status))
    return selection


def _listed_statuses(folder: Path, rows: pd.DataFrame) -> Dict[str, str]:
    """Each listed job's status by its key; a job listed twice counts as completed if either row is."""
    statuses: Dict[str, str] = {}
    if "kind" in rows.columns:  # a reference folder's rescore and ensemble rows are no jobs
        rows = rows[rows["kind"].isna() | (rows["kind"] == "run")]
    for _, row in rows.iterrows():
        key = _row_key(folder, row)
        if key is None:
            continue
        status = "no status" if pd.isna(row.get("status")) else str(row["status"])
        if statuses.get(key) != "completed":
            statuses[key] = status
    return statuses


def _row_key(folder: Path, row: pd.Series) -> Optional[str]:
    """A sweep's row: its job folder (recorded output_dir, relative to the folder, or the folder below it of that
    name when the sweep moved); a reference row: its run label as the kept file names it."""
    output_dir = row.get("output_dir")
    if isinstance(output_dir, str) and output_dir:
        recorded = Path(output_dir)
        try:
            return recorded.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:
            return recorded.name
    run = row.get("run")
    if isinstance(run, str) and run:
        return run.replace("/", "_")
    return None
