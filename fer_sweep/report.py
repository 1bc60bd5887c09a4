"""The article's table from sweep results: models as rows, schedulers as columns, test accuracy in the cells.

    python -m fer_sweep.report multirun/2026-11-28/10-00-00 [more folders or results.csv files]
    python -m fer_sweep.report SWEEP --metric best_val_acc --rows model --cols optimizer --format csv
    python -m fer_sweep.report SWEEP --filter optimizer.lr=0.001 --filter trainer.batch_size=64
    python -m fer_sweep.report --storage sqlite:///study.db --study NAME   # rebuild from an Optuna storage

A cell averages only repeats of one configuration - runs that differ in their seed alone - as mean ± std (n).
When another setting (an overridden parameter, a config group, the data's fingerprint, the precision) varies
inside a rows x cols cell, as in a learning-rate sweep or an Optuna study, its runs are not pooled: the table
gets one more row key per such setting, and a note names them. To compare at one value instead, pick it with
--filter KEY=VALUE, or make the setting the table's --rows or --cols. Completed runs only (--all-statuses
adds failed, diverged and pruned ones); an Optuna trial superseded by its retry never counts. A PNG chart of
the table is saved too.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from fer_sweep.sweep.aggregate import RESULTS_CSV, SUPERSEDED, results_frame, setting_columns, status_counts


def load_results(paths: Sequence[str]) -> pd.DataFrame:
    """Concatenate results from sweep folders (their results.csv, else their jobs' result.json) or CSV files."""
    frames = []
    for p in map(Path, paths):
        if p.is_dir():
            frame = results_frame(p)
            if frame.empty and (p / RESULTS_CSV).exists():
                frame = pd.read_csv(p / RESULTS_CSV)
        elif p.is_file():
            frame = pd.read_csv(p)
        else:
            raise FileNotFoundError(f"{p}: no such sweep folder or results CSV")
        frames.append(frame.assign(source=str(p)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def apply_filters(frame: pd.DataFrame, filters: Sequence[str]) -> pd.DataFrame:
    """Keep the rows whose column KEY equals VALUE for every 'KEY=VALUE' (numbers compare as numbers)."""
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--filter {item!r}: expected KEY=VALUE, e.g. optimizer.lr=0.001")
        if key not in frame.columns:
            raise KeyError(f"--filter {item!r}: no column {key!r}; columns are {list(frame.columns)}")
        frame = frame[frame[key].map(lambda v: _equals(v, value))]
    return frame


def _equals(cell, text: str) -> bool:
    if pd.isna(cell):
        return text == "-"
    if str(cell) == text:
        return True
    try:
        return float(cell) == float(text)
    except (TypeError, ValueError):
        return False


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


def report_markdown(frame: pd.DataFrame, metric: str = "test_acc", rows: str = "model",
                    cols: str = "scheduler", title: str = "Sweep report") -> str:
    """report.md: status counts, the table, and the failed jobs with their errors."""
    counts = status_counts(frame) if "status" in frame.columns and not frame.empty else {}
    parts = [f"# {title}\n", "Jobs: " + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none") + "\n"]
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


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer_sweep.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="sweep folders or results.csv files")
    parser.add_argument("--metric", default="test_acc")
    parser.add_argument("--rows", default="model")
    parser.add_argument("--cols", default="scheduler")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="keep only runs whose column KEY is VALUE (repeatable), e.g. optimizer.lr=0.001")
    parser.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    parser.add_argument("--digits", type=int, default=3)
    parser.add_argument("--chart", type=Path, help="PNG chart path (default: report.png in the first sweep folder)")
    parser.add_argument("--all-statuses", action="store_true", help="include failed/diverged/pruned runs' metrics")
    parser.add_argument("--storage", help="an Optuna storage URL: rebuild results from the study")
    parser.add_argument("--study", help="the study name, with --storage")
    parser.add_argument("--output", type=Path, help="with --storage: folder for results.csv and report.md")
    args = parser.parse_args(argv)
    try:
        if args.storage:
            from fer_sweep.sweep.study_report import rebuild_from_storage

            frame = rebuild_from_storage(args.storage, args.study, args.output)
            sources = [str(args.output)] if args.output else []
        else:
            if not args.paths:
                parser.error("give sweep folders or results CSV files (or --storage URL --study NAME)")
            frame = load_results(args.paths)
            sources = args.paths
        frame = apply_filters(frame, args.filter)
        summary = summarize(frame, args.metric, args.rows, args.cols, completed_only=not args.all_statuses)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = pivot(summary, args.rows, args.cols, args.digits)
    if args.format == "csv":
        print(summary.to_csv(index=False), end="")
    else:
        print(to_markdown(table, args.rows), end="")
    print(split_note(summary, args.rows, args.cols), end="", file=sys.stderr)
    chart = args.chart or (Path(sources[0]) / "report.png" if sources and Path(sources[0]).is_dir()
                           else Path("report.png"))
    if save_chart(summary, args.rows, args.cols, args.metric, chart):
        print(f"chart: {chart}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
