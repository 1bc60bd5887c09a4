"""results.csv, written two ways with one renderer, so both give the same bytes:

- `rebuild`: every job's result.json (the manifest's jobs, see aggregate.py) -> the whole file; at a sweep's start
  and end, and by `python -m fer_sweep.report`.
- `update`: after each job, that job's row added to (or replacing its earlier row in) the file as it stands.
  It reads results.csv itself, never the other jobs' result.json files, so the n-th job of a sweep costs what
  the first does plus a few milliseconds of CSV text.

Rows are sorted by job number (then folder); columns are aggregate.LEADING, then every other column in the order
it first holds a value down the sorted rows, then aggregate.TRAILING. A cell is the value as text: None is empty,
a list (tags) is joined by ';'. Parallel jobs (joblib, SLURM) update the same file: a lock file beside it
(fcntl.flock) serialises each read-modify-write, and the file is replaced atomically, so a reader never sees half.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from fer_sweep import results
from fer_sweep.sweep.aggregate import LEADING, RESULTS_CSV, TRAILING, _job_key, to_row

LOCK_FILE = ".results.csv.lock"
Row = Dict[str, str]  # column -> non-empty cell text


def cell(value: Any) -> str:
    """A value as results.csv holds it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (list, tuple)):
        return ";".join(cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def csv_row(result: Mapping[str, Any]) -> Row:
    """One job's result.json -> its row (empty cells left out)."""
    return {k: text for k, text in ((k, cell(v)) for k, v in to_row(dict(result)).items()) if text != ""}


def render(rows: Sequence[Row]) -> str:
    """The CSV text of these rows (sorted and with their columns as the module doc says)."""
    ordered = sorted(rows, key=_sort_key)
    fixed = set(LEADING) | set(TRAILING)
    middle = dict.fromkeys(k for row in ordered for k in row if k not in fixed)
    columns = [*LEADING, *middle, *TRAILING]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([row.get(c, "") for c in columns] for row in ordered)
    return buf.getvalue()


def _sort_key(row: Row):
    return _job_key(row.get("job")), row.get("output_dir", "")


def read_rows(path: Path) -> Optional[List[Row]]:
    """results.csv's rows, or None when it is missing or has no header."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        return None
    return [{k: v for k, v in zip(header, line) if v != ""} for line in reader if line]


@contextlib.contextmanager
def locked(sweep_dir: Path) -> Iterator[None]:
    """Hold the sweep's results.csv lock (none where fcntl is missing: one process at a time there)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rebuild(sweep_dir: Path, found: Sequence[Mapping[str, Any]]) -> List[Row]:
    """Write results.csv from these results (aggregate.find_results); returns its rows."""
    rows = [csv_row(r) for r in found]
    with locked(sweep_dir):
        results.atomic_write_text(Path(sweep_dir) / RESULTS_CSV, render(rows))
    return rows


def update(sweep_dir: Path, result: Mapping[str, Any]) -> List[Row]:
    """Add this job's row to results.csv, or replace the row of the same job folder; returns the rows now in the
    file. Without a results.csv yet, the file is rebuilt from the manifest's jobs first."""
    sweep_dir = Path(sweep_dir)
    new = csv_row(result)
    with locked(sweep_dir):
        rows = read_rows(sweep_dir / RESULTS_CSV)
        if rows is None:
            from fer_sweep.sweep.aggregate import find_results

            rows = [csv_row(r) for r in find_results(sweep_dir)]
        key = new.get("output_dir")
        rows = [row for row in rows if row.get("output_dir") != key] + [new]
        results.atomic_write_text(sweep_dir / RESULTS_CSV, render(rows))
    return rows
