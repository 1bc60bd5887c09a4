"""Re-scorings and ensembles as rows of the reference table, from `python -m fer_sweep.evaluate -o` JSON.

A published number that comes from scoring runs again (another TTA) or from averaging several runs' probabilities
is not any one run's `test_acc`; so it gets a row of its own: `kind` rescore (one run) or ensemble (several),
`members` (the runs' `run` labels, `;`-separated), the `tta` it was scored with, `test_acc` (PublicTest scores go
to `best_val_acc`), the evaluate `command`, and every setting its members share (recipe, seed, model, ...).

An evaluate JSON names each member by the file it scored: a kept `multirun/reference/NAME/<run>_test_probs.csv`,
or a checkpoint `.../<sweep>/<job>/checkpoints/best.pt`, whose job folder (with the one above it) is the run's
label, as `python -m fer_sweep.sweep.reference` records it in `run`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd

from fer_sweep import results
from fer_sweep.sweep.reference import MEMBER_SEP, is_run

ENSEMBLE = "ensemble"
KINDS = ("rescore", ENSEMBLE)
# what a score row takes from its members when they all agree: what was trained, how, where, on which data
SHARED = ("model", "scheduler", "optimizer", "augmentation", "data", "experiment", "seed", "lever", "recipe",
          "split", "checkpoint", "time_budget_s", "val_held_out", "cpu_kind", "precision", "dataset", "labels",
          "data_copy", "data_fingerprint", "epochs_run")
SPLIT_NAMES = {"PrivateTest": "test_acc", "PublicTest": "best_val_acc"}


class ScoresError(ValueError):
    """An evaluate JSON that cannot become rows: unreadable, or a member that is no run of the table."""


def read_scores(path: Path) -> Dict:
    try:
        scores = json.loads(Path(path).read_text())
        if not isinstance(scores, dict) or not {"split", "tta", "scores"} <= set(scores):
            raise ValueError("no split, tta and scores keys")
        if scores["split"] not in SPLIT_NAMES:
            raise ValueError(f"split {scores['split']!r} is neither {' nor '.join(SPLIT_NAMES)}")
    except OSError as exc:
        raise ScoresError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ScoresError(f"{path}: not the JSON of `python -m fer_sweep.evaluate -o` ({exc})") from None
    return scores


def member_label(name: str) -> List[str]:
    """The run labels a scored file may stand for, most specific first."""
    path = Path(name)
    if path.name.endswith(f"_{results.PROBS_TEXT_FILE}"):  # NAME/<run>_test_probs.csv: <run> with / as _
        return [path.name[: -len(f"_{results.PROBS_TEXT_FILE}")]]
    parts = path.parts
    if "checkpoints" in parts:
        job = parts[: len(parts) - 1 - parts[::-1].index("checkpoints")]
        return ["/".join(job[-2:]), job[-1]] if len(job) > 1 else list(job)
    return []


def find_member(name: str, table: pd.DataFrame, source: Path) -> pd.Series:
    """The run row a scored file belongs to (by its `run` label), or ScoresError naming the file."""
    runs = table[is_run(table) & table["run"].notna()] if "run" in table.columns else table.iloc[0:0]
    kept = Path(name).name.endswith(f"_{results.PROBS_TEXT_FILE}")
    for label in member_label(name):
        if kept:
            match = runs[(runs["run"].str.replace("/", "_") == label) & (runs["sweep"] == Path(name).parent.name)]
        else:
            match = runs[runs["run"] == label]
        if len(match) == 1:
            return match.iloc[0]
        if len(match) > 1:
            raise ScoresError(f"{source}: member {name} matches {len(match)} runs labelled {label} "
                              f"(in {', '.join(sorted(set(match['sweep'])))})")
    raise ScoresError(f"{source}: member {name} is no run of the table (no row's `run` is "
                      f"{' or '.join(member_label(name)) or 'its job folder'}); collect its run first")


def score_rows(path: Path, table: pd.DataFrame, name: str, command: str, each: bool = False) -> pd.DataFrame:
    """The rows of one evaluate JSON: a rescore row for a single member, an ensemble row for several (with
    `each`, also a rescore row per member)."""
    scores = read_scores(path)
    members = [s for s in scores["scores"] if s.get("name") != ENSEMBLE]
    if not members:
        raise ScoresError(f"{path}: no member scores")
    rows = [find_member(s["name"], table, path) for s in members]
    out = []
    if len(members) == 1 or each:
        out += [_row(name, "rescore", [r], s["acc"], scores, command) for r, s in zip(rows, members)]
    if len(members) > 1:
        ensemble = next((s for s in scores["scores"] if s.get("name") == ENSEMBLE), None)
        if ensemble is None:
            raise ScoresError(f"{path}: {len(members)} members but no ensemble score")
        out.append(_row(name, ENSEMBLE, rows, ensemble["acc"], scores, command))
    return pd.DataFrame(out)


def _row(name: str, kind: str, members: List[pd.Series], acc: float, scores: Dict, command: str) -> Dict:
    row = {"sweep": name, "kind": kind, "members": MEMBER_SEP.join(str(m["run"]) for m in members),
           "tta": scores["tta"], SPLIT_NAMES[scores["split"]]: acc, "status": "completed", "command": command}
    for column in SHARED:
        values = {_same(m.get(column)) for m in members}
        if len(values) == 1 and (value := next(iter(values))) is not None:
            row[column] = value
    return row


def _same(value) -> Optional[object]:
    """A member's value as a comparable key: missing values as None, 3.0 and 3 as one."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def add_scores(table: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """The table with the new score rows, each replacing an earlier row of the same name, kind, members, TTA
    and command (the same scoring collected again)."""
    key = ["sweep", "kind", "members", "tta", "command"]
    if not set(key) <= set(table.columns):
        return pd.concat([table, new], ignore_index=True)
    old = table.set_index(key).index
    fresh = new.set_index(key).index
    return pd.concat([table[~old.isin(fresh)], new], ignore_index=True)
