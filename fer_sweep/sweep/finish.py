"""What every sweeper does at the end: results.csv, report.md, a one-line summary, and the exit rule.

The exit rule, the same for both sweepers: a sweep exits non-zero when no job completed, or when more than
`max_failure_rate` of its jobs failed (status failed; diverged and pruned jobs are not failures). The grid
sweeper's max_failure_rate is 0 by default (any failed job fails the sweep); the Optuna sweeper's is 0.5, and
it also stops asking for trials once the rate is exceeded. A failed sweep ends with one line on stderr and
exit status 1 - SweepFailed is a SystemExit, which Hydra lets through without a traceback.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, NamedTuple, Optional

from fer_sweep import results
from fer_sweep.sweep.aggregate import SUPERSEDED, find_results, results_frame, status_counts, write_results_csv

log = logging.getLogger(__name__)


class SweepFailed(SystemExit):
    """Raised after the whole sweep ran and was reported: exit status 1, its message on stderr."""


class Tally(NamedTuple):
    """What the exit rule judges: jobs completed, failed, and in all."""
    completed: int
    failed: int
    total: int


def failure(tally: Tally, max_failure_rate: float) -> Optional[str]:
    """Why the sweep failed by the exit rule (see the module doc), or None."""
    if tally.completed == 0:
        return f"no job completed ({tally.failed} of {tally.total} failed)"
    if tally.failed > max_failure_rate * tally.total:
        return f"{tally.failed} of {tally.total} jobs failed, more than max_failure_rate={max_failure_rate:g}"
    return None


def finish_sweep(sweep_dir: Path, title: str = "Sweep report", max_failure_rate: float = 0.0,
                 tally: Optional[Tally] = None) -> Dict[str, int]:
    """Write results.csv and report.md, print the summary line, then apply the exit rule to `tally` (default:
    this folder's rows; the Optuna sweeper passes its study's, which spans all its workers)."""
    from fer_sweep.sweep.tables import pruning_note, report_markdown

    sweep_dir = Path(sweep_dir)
    found = find_results(sweep_dir)  # read once: results.csv's full rebuild and the report share it
    write_results_csv(sweep_dir, found)
    frame = results_frame(sweep_dir, found)
    results.atomic_write_text(sweep_dir / "report.md", report_markdown(frame, title=f"{title}: {sweep_dir}"))
    counts = status_counts(frame) if not frame.empty else {}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no jobs"
    line = f"Sweep finished: {summary}. Results: {sweep_dir / 'results.csv'}"
    print(line, flush=True)
    log.info(line)
    pruning = pruning_note(frame)
    if pruning:
        print(pruning.strip(), flush=True)
    if tally is None:
        tally = Tally(counts.get("completed", 0), counts.get("failed", 0),
                      sum(n for s, n in counts.items() if s != SUPERSEDED))
    reason = failure(tally, max_failure_rate)
    if reason:
        raise SweepFailed(f"Sweep failed: {reason}; see the error column of {sweep_dir / 'results.csv'}")
    return counts
