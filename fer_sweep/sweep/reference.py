"""One table of reference results: sweeps and single runs collected into multirun/reference/results.csv.

    python -m fer_sweep.sweep.reference SWEEP_OR_RUN_DIR [MORE_DIRS ...] --name seed_table_30ep \\
        --command "python -m fer_sweep --multirun experiment=seed_table data.path=fer2013.csv"

Each row is one job of results.csv's layout, plus the reference run it belongs to (`sweep`, from --name) and the
`command` that ran it (several folders under one name: one command split over queues, e.g. one per core); the
data file (`data_copy`, `data_fingerprint`) and the machine come from the jobs' own result.json. Adding a name
again replaces that name's rows; with --append it adds to them (cells of one table run at different times,
each with its own command), replacing only earlier rows of the same command. Replacing a name replaces its
folder too: the files of the runs it drops (their configs, test probabilities, curves, and evaluate JSONs) go, so
the folder holds exactly the runs of its rows. The sweep's results.csv and
report.md (and, for a single run, its history.csv, named after its folder when there are several or with
--append, so an earlier run's curve stays; for an Optuna study, its journal, best.yaml and plots) are copied
into a folder of that name beside the table. Read it all with one `pd.read_csv("multirun/reference/results.csv")`.

Each row also names its job folder (`run`, e.g. fast_s02/0), and that job's composed config is kept in the name's
folder as `<run>_config.yaml` (slashes as underscores): an experiment file may change later, the copy does not.
It reruns the row as it ran, with the data file named again (the copy keeps only the file's name):

    python -m fer_sweep --config-dir multirun/reference/NAME --config-name fast_s02_0_config data.path=fer2013.csv

A job that saved its test probabilities (test_probs.npz) has them kept in text as `<run>_test_probs.csv`
(fer_sweep/saved_probs.py): runs of any date and machine ensemble later from git, long after their checkpoints
are gone:

    python -m fer_sweep.evaluate multirun/reference/NAME multirun/reference/OTHER --data fer2013.csv

A number published from a re-scoring or an ensemble of collected runs becomes a row of its own (`kind` rescore or
ensemble, `members`, `tta`; job rows have `kind` run), from the JSON that `fer_sweep.evaluate -o` wrote, which is
kept in the name's folder (fer_sweep/sweep/scores.py):

    python -m fer_sweep.sweep.reference --scores seven.json --name fast_tenshift_s10 \\
        --command "python -m fer_sweep.evaluate multirun/reference/fast_tenshift_s56 ... -o seven.json"

A score row whose members leave the table (their name collected again without them) leaves with them.
"""
from __future__ import annotations

import argparse
import io
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Optional, Sequence

import pandas as pd
from omegaconf import OmegaConf

from fer_sweep import results
from fer_sweep.saved_probs import SavedProbs, load_probs, write_probs
from fer_sweep.sweep.tables import report_markdown
from fer_sweep.sweep.aggregate import results_frame
from fer_sweep.sweep.optuna_sweeper import BEST_FILE
from fer_sweep.sweep.storage import JOURNAL_FILE

DEFAULT_TABLE = Path("multirun/reference/results.csv")
LOCAL_ONLY = ("output_dir",)  # paths on the machine that ran the job: meaningless to a reader
FILE_PATHS = ("data.path", "data.ferplus_path")  # kept as the file's name: which file, not where it sat
CONFIG_SUFFIX = "_config.yaml"
RUN_KIND = "run"  # a job's row; the other kinds (fer_sweep/sweep/scores.py) re-score or ensemble runs
MEMBER_SEP = ";"  # in `members`: the runs (their `run` labels) a rescore or ensemble row scored


def add_reference(run_dirs: Sequence[Path], name: str, command: str, table: Path = DEFAULT_TABLE,
                  append: bool = False) -> pd.DataFrame:
    """Put the jobs of run_dirs into `table` under `name`, replacing earlier run rows of that name (with `append`:
    only those of the same command) and the files they leave in the name's folder; returns the table."""
    frames, configs = [], {}
    for run_dir in run_dirs:
        found = results_frame(run_dir)
        if found.empty:
            raise ValueError(f"{run_dir}: no result.json found (not a sweep or run folder of fer_sweep?)")
        job_dirs = [_job_dir(run_dir, output_dir) for output_dir in found["output_dir"]]
        found["run"] = [_run_label(run_dir, d) for d in job_dirs]
        frames.append(found)
        configs.update({run: d for run, d in zip(found["run"], job_dirs)})
    kept = {run: (_kept_config(d), _kept_probs(d, run)) for run, d in configs.items()}  # read before writing
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.drop(columns=[c for c in LOCAL_ONLY if c in frame.columns])
    for key in FILE_PATHS:
        if key in frame.columns:
            frame[key] = frame[key].map(_file_name)
    frame.insert(0, "sweep", name)
    frame["command"] = command
    frame["kind"] = RUN_KIND
    dropped: set = set()
    if table.exists():
        old = pd.read_csv(table)
        replaced = is_run(old) & (old["sweep"] == name) & ((old["command"] == command) if append else True)
        dropped = set(old.loc[replaced, "run"].dropna()) - set(frame["run"]) if "run" in old.columns else set()
        frame = pd.concat([old[~replaced], frame], ignore_index=True)
        frame = without_orphan_scores(frame)
    frame = _ordered(frame)
    text = frame.to_csv(index=False)
    results.atomic_write_text(table, text)
    frame = pd.read_csv(io.StringIO(text))  # what a reader gets: new rows' "1" and old rows' 1 are one value
    folder = table.parent / name
    if append:
        _remove_run_files(folder, dropped, set(frame.loc[frame["sweep"] == name, "run"].dropna()))
    else:
        _empty_folder(folder)
    _copy_files(run_dirs, folder, frame[frame["sweep"] == name], append)
    for run, (config, probs) in kept.items():
        stem = folder / run.replace("/", "_")
        if config is not None:
            results.atomic_write_text(Path(f"{stem}{CONFIG_SUFFIX}"), config)
        if probs is not None:
            write_probs(Path(f"{stem}_{results.PROBS_TEXT_FILE}"), probs)
    return frame


def is_run(frame: pd.DataFrame) -> pd.Series:
    """The rows that are jobs (kind run, or no kind: rows from before scores were rows)."""
    if "kind" not in frame.columns:
        return pd.Series(True, index=frame.index)
    return frame["kind"].isna() | (frame["kind"] == RUN_KIND)


def member_list(members) -> List[str]:
    return [m for m in str(members).split(MEMBER_SEP) if m] if isinstance(members, str) else []


def without_orphan_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """The table less its score rows (rescore, ensemble) that name a run no longer in it."""
    if "members" not in frame.columns:
        return frame
    runs = set(frame.loc[is_run(frame), "run"].dropna()) if "run" in frame.columns else set()
    orphan = ~is_run(frame) & frame["members"].map(lambda m: not set(member_list(m)) <= runs)
    return frame[~orphan]


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    leading = ["sweep", "job", "model", "scheduler", "optimizer", "augmentation", "data", "experiment"]
    return frame[[c for c in leading if c in frame.columns] + [c for c in frame.columns if c not in leading]]


def _empty_folder(folder: Path) -> None:
    """A name collected again without --append: its folder's files all belonged to the rows it replaces."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file() or path.is_symlink():
                path.unlink()
            else:
                shutil.rmtree(path)


def _remove_run_files(folder: Path, dropped: set, kept: set) -> None:
    """The files of the runs an appended command replaced: their config, test probabilities and curve."""
    kept_names = {run.split("/")[-1] for run in kept}
    for run in dropped:
        stem = run.replace("/", "_")
        names = [f"{stem}{CONFIG_SUFFIX}", f"{stem}_{results.PROBS_TEXT_FILE}", f"{stem}_{results.HISTORY_FILE}"]
        if run.split("/")[-1] not in kept_names:
            names.append(f"{run.split('/')[-1]}_{results.HISTORY_FILE}")
        for file_name in names:
            (folder / file_name).unlink(missing_ok=True)


def _file_name(path):
    return Path(str(path)).name if isinstance(path, str) else path


def _run_label(run_dir: Path, job_dir: Path) -> str:
    """The job folder with the folder above it: sweep/0 for a sweep's job, parent/run for a single run, so jobs
    of different sweeps and single runs named alike stay apart."""
    if job_dir == run_dir:
        return f"{run_dir.absolute().parent.name}/{run_dir.name}"
    return f"{run_dir.absolute().name}/{job_dir.relative_to(run_dir).as_posix()}"


def _job_dir(run_dir: Path, output_dir) -> Path:
    """Where a job's files are now: run_dir itself for a single run; else its recorded output_dir when that
    still lies in run_dir, or run_dir's sub-folder of that name (a sweep moved since it ran)."""
    if (run_dir / results.RESULT_FILE).exists():
        return run_dir
    recorded = Path(str(output_dir))
    try:
        return run_dir / recorded.resolve().relative_to(run_dir.resolve())
    except ValueError:
        return run_dir / recorded.name


def _kept_config(job_dir: Path) -> Optional[str]:
    """The job's composed config (Hydra's .hydra/config.yaml) as YAML, data files named by their file name only.
    Jobs run without Hydra's launcher (train(cfg) in a test or benchmark) have none: nothing to keep."""
    source = job_dir / ".hydra" / "config.yaml"
    if not source.is_file():
        return None
    cfg = OmegaConf.load(source)
    for key in FILE_PATHS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str):
            OmegaConf.update(cfg, key, _file_name(value))
    return OmegaConf.to_yaml(cfg)


def _kept_probs(job_dir: Path, run: str) -> Optional[SavedProbs]:
    """The job's test probabilities (if it saved them), named by its run label and its data files by their names."""
    if not (job_dir / results.PROBS_FILE).is_file():
        return None
    saved = load_probs(job_dir / results.PROBS_FILE)
    data = {k: _file_name(v) if f"data.{k}" in FILE_PATHS else v for k, v in saved.data.items()}
    return replace(saved, source=run, data=data)


def _copy_files(run_dirs: Sequence[Path], folder: Path, rows: pd.DataFrame, append: bool) -> None:
    name = folder.name
    folder.mkdir(parents=True, exist_ok=True)
    write_folder_rows(folder, rows)
    for run_dir in run_dirs:  # an Optuna study: its journal (the study itself), best.yaml and plots
        for path in (run_dir / JOURNAL_FILE, run_dir / BEST_FILE, *sorted(run_dir.glob("optuna_*.png"))):
            if path.is_file():
                shutil.copyfile(path, folder / path.name)
    unique = len({d.name for d in run_dirs}) == len(run_dirs)
    for run_dir in run_dirs:
        if (run_dir / results.HISTORY_FILE).exists():  # a single run: keep its learning curve
            label = run_dir.name if unique else f"{run_dir.parent.name}_{run_dir.name}"  # sweep_a/0, sweep_b/0
            alone = len(run_dirs) == 1 and not append  # appended: the folder may hold an earlier run's curve
            target = results.HISTORY_FILE if alone else f"{label}_{results.HISTORY_FILE}"
            shutil.copyfile(run_dir / results.HISTORY_FILE, folder / target)


def write_folder_rows(folder: Path, rows: pd.DataFrame) -> None:
    """The name's rows (runs and scores) as the folder's results.csv; its report.md from the runs alone."""
    rows = rows.dropna(axis=1, how="all")
    results.atomic_write_text(folder / "results.csv", rows.to_csv(index=False))
    runs = rows[is_run(rows)].drop(columns=[c for c in ("kind", "members") if c in rows.columns])
    if not runs.empty:
        results.atomic_write_text(folder / "report.md", report_markdown(runs, title=folder.name))


def add_score_files(files: Sequence[Path], name: str, command: str, table: Path = DEFAULT_TABLE,
                    each: bool = False) -> pd.DataFrame:
    """Rows of kind rescore/ensemble from `fer_sweep.evaluate -o` JSON files (fer_sweep/sweep/scores.py), under
    `name`; the files are kept in the name's folder. Returns the table."""
    from fer_sweep.sweep.scores import add_scores, score_rows  # scores builds on this module's table helpers

    if not table.exists():
        raise ValueError(f"{table}: no reference table yet; collect the scored runs into it first")
    frame = pd.read_csv(table)
    new = pd.concat([score_rows(Path(f), frame, name, command, each) for f in files], ignore_index=True)
    frame = _ordered(add_scores(frame, new))
    text = frame.to_csv(index=False)
    folder = table.parent / name
    sources = {Path(f): folder / Path(f).name for f in files}
    texts = {target: Path(source).read_text() for source, target in sources.items()
             if not target.exists() or not target.samefile(source)}
    results.atomic_write_text(table, text)
    for target, content in texts.items():
        results.atomic_write_text(target, content)
    frame = pd.read_csv(io.StringIO(text))
    write_folder_rows(folder, frame[frame["sweep"] == name])
    return frame


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer_sweep.sweep.reference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="*", metavar="run_dir",
                        help="sweep folders (multirun) or single run folders, all under one name")
    parser.add_argument("--scores", type=Path, nargs="+", metavar="EVALUATE_JSON",
                        help="instead of run folders: `python -m fer_sweep.evaluate -o` files, each a row of kind "
                             "rescore (one member) or ensemble (several) of runs already in the table")
    parser.add_argument("--each", action="store_true",
                        help="with --scores: also a rescore row for each member of an ensemble")
    parser.add_argument("--name", required=True, help="the experiment's name in the table, e.g. seed_table_30ep")
    parser.add_argument("--command", required=True, help="the command that produced the runs (or the scores)")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--append", action="store_true",
                        help="add to the name's earlier rows (other commands) instead of replacing them")
    args = parser.parse_args(argv)
    if bool(args.run_dirs) == bool(args.scores):
        parser.error("give run folders or --scores files, not both and not neither")
    try:
        if args.scores:
            frame = add_score_files(args.scores, args.name, args.command, args.table, args.each)
        else:
            frame = add_reference(args.run_dirs, args.name, args.command, args.table, args.append)
    except (OSError, ValueError, KeyError) as exc:
        print(f"fer_sweep: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.table}: {int((frame['sweep'] == args.name).sum())} row(s) for {args.name}, "
          f"{len(frame)} in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
