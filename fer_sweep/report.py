"""The article's table from sweep results: models as rows, schedulers as columns, test accuracy in the cells.

    python -m fer_sweep.report multirun/2026-11-28/10-00-00 [more folders or results.csv files]
    python -m fer_sweep.report SWEEP --metric best_val_acc --rows model --cols optimizer --format csv
    python -m fer_sweep.report SWEEP --filter optimizer.lr=0.001 --filter trainer.batch_size=64
    python -m fer_sweep.report SWEEP --filter tags=baseline          # the runs tagged baseline (tags=[...])
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

import pandas as pd

from fer_sweep.tags import has_tag
from fer_sweep.sweep.aggregate import RESULTS_CSV, find_results, results_frame, write_results_csv
from fer_sweep.sweep.tables import pivot, save_chart, split_note, summarize, to_markdown


def load_results(paths: Sequence[str]) -> pd.DataFrame:
    """Concatenate results from sweep folders or CSV files. A sweep folder's table is built from its jobs'
    result.json files, and its results.csv is rewritten whole from them on the way (the full rebuild: a running
    sweep adds one row per job); a folder without them (multirun/reference/NAME) is read from its results.csv."""
    frames = []
    for p in map(Path, paths):
        if p.is_dir():
            found = find_results(p)
            frame = results_frame(p, found)
            if found:
                write_results_csv(p, found)
            if frame.empty and (p / RESULTS_CSV).exists():
                frame = pd.read_csv(p / RESULTS_CSV)
        elif p.is_file():
            frame = pd.read_csv(p)
        else:
            raise FileNotFoundError(f"{p}: no such sweep folder or results CSV")
        frames.append(frame.assign(source=str(p)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def apply_filters(frame: pd.DataFrame, filters: Sequence[str]) -> pd.DataFrame:
    """Keep the rows whose column KEY equals VALUE for every 'KEY=VALUE' (numbers compare as numbers);
    tags=VALUE keeps the rows that carry the tag VALUE among theirs."""
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--filter {item!r}: expected KEY=VALUE, e.g. optimizer.lr=0.001")
        if key not in frame.columns:
            raise KeyError(f"--filter {item!r}: no column {key!r}; columns are {list(frame.columns)}")
        match = (lambda v: has_tag(v, value)) if key == "tags" else (lambda v: _equals(v, value))
        frame = frame[frame[key].map(match)]
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
