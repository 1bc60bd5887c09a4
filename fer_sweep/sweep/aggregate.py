"""Sweep folder -> results.csv: one row per job, built from the jobs' own result.json files.

Reading each job's own file (rather than a shared file every job appends to) keeps this right with any
launcher, in-process or parallel; rewriting results.csv atomically lets a reader watch a sweep progress.

Which jobs: a sweep folder may still hold job folders of an earlier command (a 2-job sweep, then a 1-job
sweep in the same folder), so every sweeper lists the folders of its own jobs (and of those it resumed) in
the manifest, <sweep dir>/sweep_jobs.json (fer_sweep.sweep.launch keeps it), and only those are read. A folder
without a manifest (a sweep from before it) is read whole.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import pandas as pd

from fer_sweep import results, tags

GROUPS = ("model", "scheduler", "optimizer", "augmentation", "data")
LEADING = ["job", *GROUPS]
# what a run's numbers mean, from result.json's resolved values (typed on the command line or not)
RECORD = ["recipe", "split", "checkpoint", "tta", "time_budget_s", "cpu_kind", "val_held_out"]
# the overrides that set them: folded into their short columns
RECORD_OVERRIDES = {"recipe": "recipe", "data.split": "split", "trainer.checkpoint": "checkpoint",
                    "trainer.tta": "tta", "trainer.time_budget_s": "time_budget_s"}
TRAILING = ["seed", "recipe", "split", "checkpoint", "tta", "time_budget_s", "status", "error", "best_val_acc",
            "val_held_out", "test_acc", "test_loss", "train_time_s", "params", "best_epoch", "epochs", "epochs_run",
            "stopped_early", "restarts", "dataset", "labels", "data_copy", "data_fingerprint", "precision", "machine",
            "cpu_kind", "tags", "output_dir"]
RESULTS_CSV = "results.csv"
MANIFEST_FILE = "sweep_jobs.json"
SEEDS = ("seed", "trainer.seed")  # repeats of one configuration differ in these alone
SUPERSEDED = "superseded"  # an Optuna trial failed as stale while its job ran on: its retry counts instead


class Manifest:
    """The job folders of one sweep command, stored relative to the sweep folder (so it can be moved or
    copied); rewritten atomically on every change, and written at once, so stale folders are out from the
    start."""

    def __init__(self, sweep_dir: Path, dirs: Iterable[Path] = ()):
        self.sweep_dir = Path(sweep_dir)
        self.jobs: List[str] = []
        self.add(dirs)

    def add(self, dirs: Iterable[Path], replacing: Iterable[Path] = ()) -> None:
        """Add these folders, dropping those of `replacing` (a batch's planned folders) not among them."""
        new = [self._entry(d) for d in dirs]
        dropped = {self._entry(d) for d in replacing} - set(new)
        self.jobs = [j for j in dict.fromkeys([*self.jobs, *new]) if j not in dropped]
        results.write_json(self.sweep_dir / MANIFEST_FILE, {"jobs": self.jobs})

    def _entry(self, folder: Path) -> str:
        root, folder = self.sweep_dir.resolve(), Path(folder).resolve()
        return os.path.relpath(folder, root) if folder.is_relative_to(root) else str(folder)


def read_manifest(sweep_dir: Path) -> Optional[List[Path]]:
    """The job folders the manifest lists, or None when the folder has none."""
    try:
        jobs = json.loads((Path(sweep_dir) / MANIFEST_FILE).read_text())["jobs"]
    except FileNotFoundError:
        return None
    return [Path(sweep_dir) / j for j in jobs]


def find_results(sweep_dir: Path) -> List[Dict[str, Any]]:
    """The result.json of every job of the sweep (the manifest's folders, else all below sweep_dir), ordered
    by job number (then folder)."""
    dirs = read_manifest(sweep_dir)
    files = Path(sweep_dir).rglob(results.RESULT_FILE) if dirs is None else [d / results.RESULT_FILE for d in dirs]
    found = []
    for file in files:
        try:
            found.append(json.loads(file.read_text()))
        except (OSError, ValueError):
            continue  # not started yet, or being written right now; the next aggregation picks it up
    return sorted(found, key=lambda r: (_job_key(r.get("job")), str(r.get("output_dir"))))


def _job_key(job: Any) -> float:
    try:
        return float(job)
    except (TypeError, ValueError):
        return float("inf")


def to_row(result: Dict[str, Any]) -> Dict[str, Any]:
    """Flatten one result: group choices, each overridden parameter as its own column, then the metrics."""
    choices = result.get("choices") or {}
    row: Dict[str, Any] = {"job": result.get("job")}
    for group in GROUPS:
        row[group] = choices.get(group, result.get(group))
    if result.get("dataset"):  # what the run used: data=fer2013 with no file found falls back to synthetic
        row["data"] = result["dataset"]
        row["labels"] = result.get("labels", "fer2013")  # results from before FER+ existed had FER2013's labels
    for override in result.get("overrides") or []:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        # trial.* is the Optuna sweeper's bookkeeping and logger.* where results are tracked: not hyper-parameters
        if key not in GROUPS and key != "tags" and not key.startswith(("hydra", "trial.", "logger")):
            row[RECORD_OVERRIDES.get(key, key)] = value
    row["tags"] = tags.joined(result.get("tags"))  # a list in result.json: one sortable, filterable cell
    for key, value in (result.get("trial") or {}).items():
        row[f"trial_{key}" if key != "number" else "trial"] = value
    for key in RECORD:  # the resolved value; a result.json from before these keys keeps what was typed
        if key in result:
            row[key] = result[key]
    for key in TRAILING:
        row.setdefault(key, result.get(key))
    return row


def results_frame(sweep_dir: Path, found: Optional[List[Dict[str, Any]]] = None) -> pd.DataFrame:
    """The sweep's rows as a DataFrame; `found`: its results when already read (find_results)."""
    rows = [to_row(r) for r in (find_results(sweep_dir) if found is None else found)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=LEADING + TRAILING)
    middle = [c for c in frame.columns if c not in LEADING and c not in TRAILING]
    return frame[[c for c in LEADING + middle + TRAILING if c in frame.columns]]


def setting_columns(frame: pd.DataFrame) -> List[str]:
    """The columns that say which configuration a row ran: group choices, overridden parameters, the data's
    fingerprint, the recipe, split, kept checkpoint, TTA, time budget and the precision; not seeds, metrics,
    statuses, paths, the machine kind or trial bookkeeping."""
    settings = [*GROUPS, "recipe", "split", "checkpoint", "tta", "time_budget_s", "data_fingerprint", "precision"]
    # report's input file; the reference table's command line and job folder; the precision asked for (auto or a
    # name): the precision it resolved to is the setting, so an auto run and an fp32 run on an fp32 machine share
    # a cell
    bookkeeping = ("source", "command", "run", "trainer.precision")
    overrides = [c for c in frame.columns if c not in LEADING and c not in TRAILING
                 and not str(c).startswith("trial") and c not in bookkeeping]
    return [c for c in (*settings, *overrides) if c in frame.columns and c not in SEEDS]


def write_results_csv(sweep_dir: Path, found: Optional[List[Dict[str, Any]]] = None) -> Optional[Path]:
    """Rewrite <sweep_dir>/results.csv from the jobs' result files (`found`: when already read); returns its path
    (None if no jobs yet and no manifest: then there is no sweep to describe). After each job of a sweep, only that
    job's row is updated (fer_sweep.sweep.results_csv.update), with the same text as this full rebuild."""
    from fer_sweep.sweep import results_csv

    sweep_dir = Path(sweep_dir)
    found = find_results(sweep_dir) if found is None else found
    if not found and read_manifest(sweep_dir) is None:
        return None
    results_csv.rebuild(sweep_dir, found)
    return sweep_dir / RESULTS_CSV


def status_counts(frame: pd.DataFrame) -> Dict[str, int]:
    """Rows by status: the known statuses first, in their order, then any other (running: started and not
    finished, or killed; superseded)."""
    present = frame["status"].dropna().unique().tolist()
    order = [*results.STATUSES, *sorted(s for s in present if s not in results.STATUSES)]
    return {s: int((frame["status"] == s).sum()) for s in order if s in present}
