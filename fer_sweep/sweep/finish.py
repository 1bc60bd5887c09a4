"""What every sweeper does at the end: results.csv, report.md, a one-line summary, and failure as an exit code."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict

from fer_sweep import results
from fer_sweep.sweep.aggregate import results_frame, status_counts, write_results_csv

log = logging.getLogger(__name__)


class SweepFailed(RuntimeError):
    """Raised after the whole sweep ran and was reported, so the command exits non-zero."""


def finish_sweep(sweep_dir: Path, title: str = "Sweep report") -> Dict[str, int]:
    from fer_sweep.report import report_markdown

    sweep_dir = Path(sweep_dir)
    write_results_csv(sweep_dir)
    frame = results_frame(sweep_dir)
    results.atomic_write_text(sweep_dir / "report.md", report_markdown(frame, title=f"{title}: {sweep_dir}"))
    counts = status_counts(frame) if not frame.empty else {}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no jobs"
    line = f"Sweep finished: {summary}. Results: {sweep_dir / 'results.csv'}"
    print(line, flush=True)
    log.info(line)
    if counts.get("failed"):
        raise SweepFailed(f"{counts['failed']} job(s) failed: see the error column of {sweep_dir / 'results.csv'}")
    return counts
