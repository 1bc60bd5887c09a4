"""results.csv, written two ways with one renderer, so both give the same bytes:

- `rebuild`: every job's result.json (the manifest's jobs, see aggregate.py) -> the whole file; at a sweep's start
  and end (aggregate.write_results_csv).
- `update`: after each job, that job's row added to (or replacing its earlier row in) the file as it stands.
  It reads results.csv itself, never the other jobs' result.json files, so the n-th job of a sweep costs what
  the first does plus a few milliseconds of CSV text.

Rows are sorted by job number (then folder); columns are aggregate.LEADING, then every other column that holds a
value in some row, in the order met down the sorted rows (a row's own in its order), then aggregate.TRAILING. (An
update appends a column no row had before at the end of that middle part, where a rebuild would put it where
its row first brings it: the two differ only in such a column's place, and the sweep's end rebuilds the file.)
A cell is the value as text: None is empty, a list (tags) is joined by ';'. Parallel jobs (joblib, SLURM) update
the same file: a lock file beside it (fcntl.flock) serialises each read-modify-write, and the file is replaced
atomically, so a reader never sees half of one.
"""
from __future__ import annotations

import bisect
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
    # one row a line, so that an update finds rows without parsing the file (a multi-line error: \n, as text)
    return str(value).replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def csv_row(result: Mapping[str, Any]) -> Row:
    """One job's result.json -> its row (empty cells left out)."""
    return {k: text for k, text in ((k, cell(v)) for k, v in to_row(dict(result)).items()) if text != ""}


def render(rows: Sequence[Row]) -> str:
    """The CSV text of these rows (sorted and with their columns as the module doc says)."""
    ordered = sorted(rows, key=_sort_key)
    present = list(dict.fromkeys(k for row in ordered for k in row))
    return _write(present, [[row.get(c, "") for c in present] for row in ordered])


def _sort_key(row: Row):
    return _job_key(row.get("job")), row.get("output_dir", "")


def _write(header: List[str], lines: List[List[str]]) -> str:
    """Sorted rows as lists under `header` -> the CSV text, with the columns in the module doc's order: a column
    outside LEADING and TRAILING only where some row holds a value in it, in `header`'s order."""
    fixed = set(LEADING) | set(TRAILING)
    index = {c: i for i, c in enumerate(header)}
    middle = [c for c, i in index.items() if c not in fixed and any(line[i] for line in lines)]
    columns = [*LEADING, *middle, *TRAILING]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    if columns == header:
        writer.writerows(lines)
    else:
        blank = len(header)
        picks = [index.get(c, blank) for c in columns]
        writer.writerows([(line + [""])[k] for k in picks] for line in lines)
    return buf.getvalue()


def read_rows(path: Path) -> Optional[List[Row]]:
    """results.csv's rows, or None when it is missing or has no header."""
    table = _read(path)
    if table is None:
        return None
    header, lines = table
    return [{k: v for k, v in zip(header, line) if v != ""} for line in lines]


def _read(path: Path):
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    lines = list(csv.reader(io.StringIO(text)))
    if not lines or not lines[0]:
        return None
    return lines[0], [line for line in lines[1:] if line]


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


def update(sweep_dir: Path, result: Mapping[str, Any]) -> List[str]:
    """Add this job's row to results.csv, or replace the row of the same job folder; returns the status of every
    row now in the file (for the progress line). Without a results.csv yet, the file is rebuilt from the
    manifest's jobs first.

    Every row is one line, sorted by job number, so the new line goes in by bisection on the lines' first field
    and only the lines naming the job's folder are parsed: 5,000 rows update in milliseconds (parsing and writing
    them all takes ~0.1 s on a 2-core EPYC). A row that brings a column the file lacks, or drops one, takes the
    slower path through every cell (_update_all)."""
    sweep_dir = Path(sweep_dir)
    new = csv_row(result)
    with locked(sweep_dir):
        path = sweep_dir / RESULTS_CSV
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        header = next(csv.reader([lines[0]]), []) if lines else []
        done = _update_lines(header, lines[1:], new) if header else None
        if done is None:
            text, statuses = _update_all(sweep_dir, text if header else None, new)
        else:
            lines[1:], statuses = done
            text = "\n".join(lines) + "\n"
        results.atomic_write_text(path, text)
    return statuses


def _update_lines(header: List[str], lines: List[str], new: Row):
    """(lines with the new row in place, statuses), or None when the fast path does not apply."""
    if any(c not in header for c in new) or "job" not in header or "output_dir" not in header:
        return None
    if any(line.count('"') % 2 for line in lines):  # a record over several lines (not written here)
        return None
    key, job_at, out_at = new.get("output_dir", ""), header.index("job"), header.index("output_dir")
    kept = []
    for line in lines:
        if key and key in line:
            cells = next(csv.reader([line]))
            if cells[out_at] == key:
                fixed = set(LEADING) | set(TRAILING)
                if any(v and c not in fixed and c not in new for c, v in zip(header, cells)):
                    return None  # the replaced row held the only value of a column, maybe: rebuild the columns
                continue
        kept.append(line)
    if job_at != 0:
        return None
    jobs = [_job_key(line[:line.find(",")]) for line in kept]
    job = _job_key(new.get("job"))
    lo, hi = bisect.bisect_left(jobs, job), bisect.bisect_right(jobs, job)
    at = lo + sum(1 for line in kept[lo:hi] if next(csv.reader([line]))[out_at] <= key)  # same job number
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([new.get(c, "") for c in header])
    kept.insert(at, buf.getvalue())
    status_at = header.index("status")
    return kept, _statuses(kept, status_at, at, new)


def _statuses(lines: List[str], status_at: int, new_at: int, new: Row) -> List[str]:
    """Each line's status cell, split off the line's start; a line is parsed whole only where a quoted cell comes
    before its status (rare: job, group choices and parameters)."""
    statuses = []
    for n, line in enumerate(lines):
        if n == new_at:
            statuses.append(new.get("status", ""))
            continue
        head = line.split(",", status_at + 1)
        quote = line.find('"')
        if quote == -1 or (len(head) > status_at + 1 and quote >= len(line) - len(head[-1])):
            statuses.append(head[status_at] if len(head) > status_at else "")
        else:
            statuses.append(next(csv.reader([line]))[status_at])
    return statuses


def _update_all(sweep_dir: Path, text: Optional[str], new: Row):
    """update's general path: every cell parsed and written again; without results.csv, the manifest's jobs."""
    if text is None:
        from fer_sweep.sweep.aggregate import find_results

        rows = [csv_row(r) for r in find_results(sweep_dir)]
        header = list(dict.fromkeys(k for row in rows for k in row))
        lines = [[row.get(c, "") for c in header] for row in sorted(rows, key=_sort_key)]
    else:
        table = list(csv.reader(io.StringIO(text)))
        header, lines = table[0], [line for line in table[1:] if line]
    added = [c for c in new if c not in header]
    if added:
        header = header + added
        lines = [line + [""] * len(added) for line in lines]
    job_at, out_at = header.index("job"), header.index("output_dir")
    key = new.get("output_dir", "")
    lines = [line for line in lines if line[out_at] != key]
    keys = [(_job_key(line[job_at]), line[out_at]) for line in lines]
    lines.insert(bisect.bisect_right(keys, (_job_key(new.get("job")), key)), [new.get(c, "") for c in header])
    status_at = header.index("status")
    return _write(header, lines), [line[status_at] for line in lines]
