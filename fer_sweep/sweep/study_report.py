"""results.csv and report.md of an Optuna study rebuilt from its storage alone, e.g. for a study whose jobs
ran on other machines, each writing its rows into its own sweep folder:

    python -m fer_sweep.report --storage postgresql://user@dbhost/fer --study lr-search --output combined/

One row per counted trial (the n_trials rule of fer_sweep.sweep.optuna_sweeper: surplus trials and trials
replaced by a retry have no row; a retry's row says which trial it retried in `trial_retry_of`), in the
columns of a sweep folder's results.csv: the sweeper stored each job's status, metrics, group choices and
output_dir as trial user attributes when it told the trial; parameters come from the trial itself.
Trials still running have status `running` (`waiting`: queued retries).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from fer_sweep import results
from fer_sweep.sweep.aggregate import LEADING, RESULTS_CSV, TRAILING, to_row
from fer_sweep.sweep.optuna_sweeper import (BEST_FILE, OBJECTIVES_ATTR, RESULT_ATTRS, Ledger, trial_record,
                                            write_best)
from fer_sweep.sweep.search_space import format_override
from fer_sweep.sweep.storage import open_storage, storage_url

log = logging.getLogger(__name__)

STATUS = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
          TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}  # when the trial has no stored status


def load_study(storage: str, study_name: Optional[str]) -> optuna.Study:
    """The study `study_name` in `storage` (a URL, journal:<path> or a .log path); with no name, the only one."""
    url = storage_url(storage, Path.cwd())
    store = open_storage(url)
    names = [s.study_name for s in store.get_all_studies()]
    if study_name is None:
        if len(names) != 1:
            raise ValueError(f"give --study: {url} holds {len(names)} studies {names}")
        study_name = names[0]
    if study_name not in names:
        raise ValueError(f"no study {study_name!r} in {url}; it holds {names}")
    return optuna.load_study(study_name=study_name, storage=store)


def objective_names(study: optuna.Study) -> List[str]:
    """The result.json keys the study's values are (stored by the sweeper), else value, value_1..."""
    stored = study.user_attrs.get(OBJECTIVES_ATTR)
    if stored and len(stored) == len(study.directions):
        return list(stored)
    return ["value"] if len(study.directions) == 1 else [f"value_{i}" for i in range(len(study.directions))]


def trial_result(trial: FrozenTrial, study_name: str, objectives: List[str]) -> Dict[str, Any]:
    """What the trial's job wrote to result.json, as far as the storage knows it, with its `trial` record."""
    result: Dict[str, Any] = {k: trial.user_attrs[k] for k in (*RESULT_ATTRS, "output_dir", "overrides")
                              if k in trial.user_attrs}
    result.setdefault("job", trial.number)
    result.setdefault("status", STATUS.get(trial.state, trial.state.name.lower()))
    result.setdefault("overrides", [format_override(k, v) for k, v in trial.params.items()])
    result["trial"] = trial_record(trial, study_name, objectives)
    return result


def study_frame(study: optuna.Study) -> pd.DataFrame:
    """The study's results.csv as a DataFrame (columns ordered as aggregate.results_frame orders them)."""
    objectives = objective_names(study)
    ledger = Ledger(study.get_trials(deepcopy=False))
    frame = pd.DataFrame([to_row(trial_result(t, study.study_name, objectives)) for t in ledger.counted])
    if frame.empty:
        return pd.DataFrame(columns=LEADING + TRAILING)
    middle = [c for c in frame.columns if c not in LEADING and c not in TRAILING]
    return frame[[c for c in LEADING + middle + TRAILING if c in frame.columns]]


def rebuild_from_storage(storage: str, study_name: Optional[str], output_dir: Optional[Path] = None
                         ) -> pd.DataFrame:
    """The study's results table; with output_dir, also written there as results.csv, report.md and
    best.yaml (the best trial and the command to rerun it)."""
    from fer_sweep.sweep.tables import report_markdown

    study = load_study(storage, study_name)
    frame = study_frame(study)
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        results.atomic_write_text(output_dir / RESULTS_CSV, frame.to_csv(index=False))
        title = f"Optuna study {study.study_name} ({storage_url(storage, Path.cwd())})"
        results.atomic_write_text(output_dir / "report.md", report_markdown(frame, title=title))
        write_best(study, output_dir / BEST_FILE, objective_names(study), storage_url(storage, Path.cwd()))
        log.info("wrote %s, report.md and %s in %s", RESULTS_CSV, BEST_FILE, output_dir)
    return frame
