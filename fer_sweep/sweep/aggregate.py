"""Sweep folder -> results.csv: one row per job, built from the jobs' own result.json files.

Reading each job's own file (rather than a shared file every job appends to) keeps this right with any
launcher, in-process or parallel; rewriting results.csv atomically lets a reader watch a sweep progress.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd

from fer_sweep import results

GROUPS = ("model", "scheduler", "optimizer", "augmentation", "data")
LEADING = ["job", *GROUPS]
TRAILING = ["seed", "status", "error", "best_val_acc", "test_acc", "test_loss", "train_time_s", "params",
            "best_epoch", "epochs_run", "dataset", "data_copy", "data_fingerprint", "precision", "machine",
            "output_dir"]
RESULTS_CSV = "results.csv"


def find_results(sweep_dir: Path) -> List[Dict[str, Any]]:
    """Every job's result.json below sweep_dir, ordered by job number (then folder)."""
    found = []
    for file in Path(sweep_dir).rglob(results.RESULT_FILE):
        try:
            found.append(json.loads(file.read_text()))
        except (OSError, ValueError):
            continue  # a job writing right now; the next aggregation picks it up
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
    for override in result.get("overrides") or []:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        # trial.* is the Optuna sweeper's bookkeeping (how a job reaches its trial), not a hyper-parameter
        if key not in GROUPS and not key.startswith(("hydra", "trial.")):
            row[key] = value
    for key, value in (result.get("trial") or {}).items():
        row[f"trial_{key}" if key != "number" else "trial"] = value
    for key in TRAILING:
        row.setdefault(key, result.get(key))
    return row


def results_frame(sweep_dir: Path) -> pd.DataFrame:
    rows = [to_row(r) for r in find_results(sweep_dir)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=LEADING + TRAILING)
    middle = [c for c in frame.columns if c not in LEADING and c not in TRAILING]
    return frame[[c for c in LEADING + middle + TRAILING if c in frame.columns]]


def write_results_csv(sweep_dir: Path) -> Optional[Path]:
    """Rewrite <sweep_dir>/results.csv from the jobs' result files; returns its path (None if no jobs yet)."""
    sweep_dir = Path(sweep_dir)
    frame = results_frame(sweep_dir)
    if frame.empty:
        return None
    path = sweep_dir / RESULTS_CSV
    results.atomic_write_text(path, frame.to_csv(index=False))
    return path


def status_counts(frame: pd.DataFrame) -> Dict[str, int]:
    return {s: int((frame["status"] == s).sum()) for s in results.STATUSES if (frame["status"] == s).any()}
