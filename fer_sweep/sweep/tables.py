"""Tables from results rows: a metric's mean ± std (n) over seeds, rows x columns, as markdown and a chart.

One home for the table logic, used by sweeps (report.md), the reference table and `python -m fer_sweep.report`.
Only repeats of one config (seeds) are averaged: a setting that varies inside a cell becomes a row key of its own.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd

from fer_sweep.sweep.aggregate import SUPERSEDED, setting_columns, status_counts


def varying_settings(frame: pd.DataFrame, rows: str, cols: str) -> List[str]:
    """Setting columns besides rows and cols that take more than one value inside some rows x cols cell."""
    if frame.empty:
        return []
    cells = frame.groupby([rows, cols], dropna=False)
    return [c for c in setting_columns(frame) if c not in (rows, cols)
            and (cells[c].nunique(dropna=False) > 1).any()]


def summarize(frame: pd.DataFrame, metric: str = "test_acc", rows: str = "model", cols: str = "scheduler",
              completed_only: bool = True) -> pd.DataFrame:
    """Long table: one line per configuration in each (rows, cols) cell with mean, std and n of `metric` over
    its seeds; the settings that split a cell are extra columns, listed in .attrs["split_by"]."""
    for key in (metric, rows, cols):
        if key not in frame.columns:
            raise KeyError(f"no column {key!r} in the results; columns are {list(frame.columns)}")
    if "status" in frame.columns:
        keep = frame["status"] == "completed" if completed_only else frame["status"] != SUPERSEDED
        frame = frame[keep]
    values = frame.assign(**{metric: pd.to_numeric(frame[metric], errors="coerce")}).dropna(subset=[metric])
    split = varying_settings(values, rows, cols)
    values = values.assign(**{c: _labels(values[c]) for c in split})
    summary = values.groupby([rows, *split, cols], sort=True)[metric].agg(mean="mean", std="std", n="count")
    summary = summary.reset_index()
    summary.attrs["split_by"] = split
    return summary


def _labels(column: pd.Series) -> pd.Series:
    """A split column as group keys: '-' where a run did not set it (its default), all text if any is '-'."""
    if not column.isna().any():
        return column
    return column.map(lambda v: "-" if pd.isna(v) else str(int(v)) if isinstance(v, float) and v.is_integer()
                      else str(v))


def split_note(summary: pd.DataFrame, rows: str, cols: str) -> str:
    split = summary.attrs.get("split_by") or []
    if not split:
        return ""
    return (f"Rows are also split by {', '.join(split)}: each varies within a {rows} x {cols} cell, and a "
            f"cell averages only runs that differ in their seed. Pick one value with --filter KEY=VALUE, or "
            f"make it --rows or --cols.\n")


def cell_text(mean: float, std: float, n: int, digits: int = 3) -> str:
    if n > 1:
        return f"{mean:.{digits}f} ± {std:.{digits}f} (n={n})"
    return f"{mean:.{digits}f}"


def pivot(summary: pd.DataFrame, rows: str, cols: str, digits: int = 3) -> pd.DataFrame:
    """Wide table of cell texts: rows (and the settings that split them) x cols."""
    if summary.empty:
        return pd.DataFrame()
    text = summary.assign(cell=[cell_text(m, s, n, digits) for m, s, n in
                                zip(summary["mean"], summary["std"], summary["n"])])
    index = [rows, *(summary.attrs.get("split_by") or [])]
    table = text.pivot(index=index if len(index) > 1 else rows, columns=cols, values="cell").fillna("-")
    table.columns.name = None
    return table


def to_markdown(table: pd.DataFrame, rows: str) -> str:
    if table.empty:
        return "(no completed runs)\n"
    keys = [str(k) for k in table.index.names] if table.index.nlevels > 1 else [rows]
    header = [*keys, *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in table.iterrows():
        index = index if isinstance(index, tuple) else (index,)
        lines.append("| " + " | ".join([*map(str, index), *map(str, row.tolist())]) + " |")
    return "\n".join(lines) + "\n"


def save_chart(summary: pd.DataFrame, rows: str, cols: str, metric: str, path: Path) -> Optional[Path]:
    """Grouped bars (rows on the x axis, one bar per column key) with std error bars."""
    if summary.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = summary.attrs.get("split_by") or []
    if split:  # one bar group per configuration: "cnn, optimizer.lr=0.001"
        labels = [", ".join([str(r[rows]), *(f"{c}={r[c]}" for c in split)]) for _, r in summary.iterrows()]
        summary = summary.assign(**{rows: labels})
    row_keys, col_keys = sorted(summary[rows].unique(), key=str), sorted(summary[cols].unique(), key=str)
    width = 0.8 / len(col_keys)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(row_keys) * max(1, len(col_keys) / 2)), 4))
    for k, col in enumerate(col_keys):
        part = summary[summary[cols] == col].set_index(rows).reindex(row_keys)
        x = np.arange(len(row_keys)) + (k - (len(col_keys) - 1) / 2) * width
        ax.bar(x, part["mean"], width, yerr=part["std"].fillna(0), capsize=3, label=f"{cols}={col}")
    ax.set_xticks(np.arange(len(row_keys)), [str(r) for r in row_keys], rotation=30 if split else 0,
                  ha="right" if split else "center")
    ax.set(ylabel=metric, xlabel=rows, title=f"{metric} by {rows} and {cols}")
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def pruning_savings(frame: pd.DataFrame) -> Optional[dict]:
    """What pruning saved: the trials' summed wall time, and the time the pruned ones would have taken more to
    finish their planned epochs at their own mean epoch time. None when nothing was pruned."""
    need = {"status", "epochs", "epochs_run", "train_time_s"}
    if not need <= set(frame.columns) or not (frame["status"] == "pruned").any():
        return None
    counted = frame[frame["status"] != SUPERSEDED]
    pruned = counted[counted["status"] == "pruned"]
    ran, planned = pruned["epochs_run"].astype(float), pruned["epochs"].astype(float)
    saved = float((pruned["train_time_s"].astype(float) / ran.clip(lower=1) * (planned - ran)).sum())
    spent = float(pd.to_numeric(counted["train_time_s"], errors="coerce").sum())
    return {"trials": len(counted), "pruned": len(pruned), "mean_epochs_pruned": float(ran.mean()),
            "planned_epochs": float(planned.mean()), "spent_s": spent, "saved_s": saved,
            "saved_share": saved / (spent + saved) if spent + saved > 0 else 0.0}


def pruning_note(frame: pd.DataFrame) -> str:
    s = pruning_savings(frame)
    if s is None:
        return ""
    return (f"Pruning: {s['pruned']} of {s['trials']} trials pruned, after {s['mean_epochs_pruned']:.1f} of "
            f"{s['planned_epochs']:.0f} planned epochs on average. The trials took {s['spent_s'] / 3600:.2f} h of "
            f"wall time; running the pruned ones to the end would have taken about {s['saved_s'] / 3600:.2f} h "
            f"more (each at its own mean epoch time), so pruning saved {100 * s['saved_share']:.0f}% of the "
            f"search.\n")


def report_markdown(frame: pd.DataFrame, metric: str = "test_acc", rows: str = "model",
                    cols: str = "scheduler", title: str = "Sweep report") -> str:
    """report.md: status counts, the table, and the failed jobs with their errors."""
    counts = status_counts(frame) if "status" in frame.columns and not frame.empty else {}
    parts = [f"# {title}\n", "Jobs: " + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none") + "\n"]
    parts.append(pruning_note(frame))
    if {metric, rows, cols} <= set(frame.columns):
        summary = summarize(frame, metric, rows, cols)
        parts += [f"\n## {metric} ({rows} x {cols}; completed jobs; mean ± std (n) over seeds)\n\n",
                  split_note(summary, rows, cols) + ("\n" if summary.attrs["split_by"] else ""),
                  to_markdown(pivot(summary, rows, cols), rows)]
    if "status" in frame.columns:
        bad = frame[frame["status"].isin(["failed", "diverged"])]
        if len(bad):
            parts.append("\n## Failed or diverged jobs\n\n")
            parts += [f"- job {r.get('job')}: {r.get('status')}: {r.get('error')}\n" for _, r in bad.iterrows()]
    return "".join(parts)
