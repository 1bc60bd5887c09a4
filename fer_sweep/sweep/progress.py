"""A sweep's progress, one line after each job:

    jobs 37/120 done (35 completed, 2 failed), about 1 h 12 min left

The sweeper writes sweep_progress.json when it starts (jobs in all: the grid's size, or Optuna's n_trials; the
start time; jobs already done, e.g. a continued study's earlier trials); the per-job callback counts results.csv's
rows as it has just written them. The time left is this command's mean wall time per finished job (parallel jobs
included) times the jobs left, so it needs no job timings of its own.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

from fer_sweep import results

PROGRESS_FILE = "sweep_progress.json"
DONE = results.STATUSES  # finished: completed, failed, diverged, pruned (superseded trials count nowhere)


def start(sweep_dir: Path, total: int, statuses: Sequence[str] = ()) -> None:
    """Record the sweep's size and start; `statuses`: results.csv's at the start (jobs done before this command)."""
    done = sum(status in DONE for status in statuses)
    results.write_json(Path(sweep_dir) / PROGRESS_FILE, {"total": int(total), "done_before": done,
                                                          "started": time.time()})


def line(counts: Mapping[str, int], total: int, seconds_left: Optional[float]) -> str:
    done = sum(counts.values())
    parts = [f"{counts.get('completed', 0)} completed", f"{counts.get('failed', 0)} failed",
             *(f"{n} {s}" for s, n in counts.items() if s not in ("completed", "failed") and n)]
    text = f"jobs {done}/{total} done ({', '.join(parts)})"
    if seconds_left is not None and done < total:
        text += f", about {duration(seconds_left)} left"
    return text


def duration(seconds: float) -> str:
    """1 h 12 min, 5 min, 40 s."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def report(sweep_dir: Path, statuses: Sequence[str]) -> Optional[str]:
    """Print the progress line for results.csv's statuses (nothing without sweep_progress.json); returns it."""
    try:
        state = json.loads((Path(sweep_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    counts = {s: 0 for s in DONE}
    for status in statuses:
        if status in counts:
            counts[status] += 1
    total = max(int(state["total"]), sum(counts.values()))
    finished_now = sum(counts.values()) - int(state.get("done_before", 0))
    left = None
    if finished_now > 0:
        per_job = (time.time() - float(state["started"])) / finished_now
        left = per_job * (total - sum(counts.values()))
    text = line(counts, total, left)
    print(text, flush=True)
    return text
