"""The Optuna sweeper: real multiruns on tiny synthetic data, and the ask/launch/tell loop with a fake launcher."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from fer_sweep import results
from fer_sweep.app import CONFIG_DIR
from fer_sweep.sweep.finish import SweepFailed
from fer_sweep.sweep.optuna_sweeper import (OptunaSweeper, build_sampler, consecutive_runs, tell_study,
                                            write_best)
from fer_sweep.sweep.pruning import PRUNER_ATTR, TrialPruning, build_pruner
from fer_sweep.sweep.storage import JOURNAL_FILE, open_storage, storage_url
from tests.conftest import ROOT, run_cli

TINY = ["data=synthetic", "data.n_train=140", "data.n_public=35", "data.n_private=35", "trainer.epochs=2",
        "trainer.batch_size=64", "trainer.threads=1", "trainer.plots=false"]
LR = "optimizer.lr=tag(log, interval(1e-4, 1e-1))"
PLOTS = ["optuna_history.png", "optuna_importances.png", "optuna_parallel_coordinate.png"]


def optuna_cli(sweep_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(["--multirun", "hydra/sweeper=optuna", *TINY, f"hydra.sweep.dir={sweep_dir}", *args])


def load_study(sweep_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name=sweep_dir.name, storage=open_storage(str(sweep_dir / JOURNAL_FILE)))


def numbers(study: optuna.Study, *states: TrialState) -> list:
    return [t.number for t in study.get_trials(states=states or None)]


# --- a 6-trial TPE study with the median pruner, shared by the tests below ------------------------------

@pytest.fixture(scope="module")
def tpe_sweep(tmp_path_factory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("tpe") / "study"
    proc = optuna_cli(sweep_dir, "hydra.sweeper.n_trials=6", LR, "trainer.batch_size=choice(32, 64)",
                      "hydra.sweeper.pruner.name=median", "+hydra.sweeper.pruner.options.n_startup_trials=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep_dir


def test_tpe_study_has_six_finished_trials_and_six_rows(tpe_sweep):
    study = load_study(tpe_sweep)
    assert numbers(study, TrialState.COMPLETE, TrialState.PRUNED) == [0, 1, 2, 3, 4, 5]
    frame = pd.read_csv(tpe_sweep / "results.csv")
    assert frame["job"].tolist() == frame["trial"].tolist() == [0, 1, 2, 3, 4, 5]  # job folder = trial number
    assert {"trial_state", "trial_value", "optimizer.lr", "trainer.batch_size", "status"} <= set(frame.columns)
    assert not any(c.startswith("trial.") for c in frame.columns)  # bookkeeping overrides are not columns
    for trial in study.trials:
        row = frame.set_index("trial").loc[trial.number]
        assert row["trial_state"] == trial.state.name
        assert math.isclose(row["optimizer.lr"], trial.params["optimizer.lr"])
        assert row["trainer.batch_size"] == trial.params["trainer.batch_size"]
        if trial.state == TrialState.COMPLETE:
            assert row["status"] == "completed" and math.isclose(row["trial_value"], row["best_val_acc"])


def test_median_pruner_prunes_and_the_row_says_pruned(tpe_sweep):
    study = load_study(tpe_sweep)
    pruned = numbers(study, TrialState.PRUNED)
    assert pruned, "the median pruner pruned nothing"
    frame = pd.read_csv(tpe_sweep / "results.csv").set_index("trial")
    assert (frame.loc[pruned, "status"] == "pruned").all() and (frame.loc[pruned, "trial_state"] == "PRUNED").all()
    for trial in study.trials:  # every job reported its epochs to its own trial through the storage
        assert trial.intermediate_values, f"trial {trial.number} reported nothing"
    assert f"Pruning: {len(pruned)} of 6 trials pruned" in (tpe_sweep / "report.md").read_text()


def test_pruning_savings_count_the_epochs_pruned_trials_skipped():
    from fer_sweep.sweep.tables import pruning_note, pruning_savings

    frame = pd.DataFrame({"status": ["completed", "pruned", "pruned", "superseded"], "epochs": [10, 10, 10, 10],
                          "epochs_run": [10, 2, 5, 1], "train_time_s": [100.0, 20.0, 50.0, 9.0]})
    s = pruning_savings(frame)
    assert (s["trials"], s["pruned"], s["spent_s"]) == (3, 2, 170.0)
    assert s["saved_s"] == pytest.approx(80 + 50) and s["saved_share"] == pytest.approx(130 / 300)
    assert "2 of 3 trials pruned, after 3.5 of 10 planned epochs" in pruning_note(frame)
    assert pruning_savings(frame.assign(status="completed")) is None and pruning_note(frame.iloc[:1]) == ""


def test_best_yaml_names_the_best_trial_and_how_to_rerun_it(tpe_sweep):
    best = yaml.safe_load((tpe_sweep / "best.yaml").read_text())
    study = load_study(tpe_sweep)
    assert best["best"]["number"] == study.best_trial.number and best["best"]["value"] == study.best_value
    command = best["best"]["command"]
    assert command.startswith("python -m fer_sweep data=synthetic ")
    assert f"optimizer.lr={study.best_params['optimizer.lr']!r}" in command and "trial." not in command
    assert best["trials"]["COMPLETE"] + best["trials"].get("PRUNED", 0) == 6
    for name in PLOTS:
        assert (tpe_sweep / name).stat().st_size > 1000, name


def test_the_reference_table_keeps_the_study_itself(tpe_sweep, tmp_path):
    from fer_sweep.sweep.reference import main as reference

    table = tmp_path / "reference" / "results.csv"
    assert reference([str(tpe_sweep), "--name", "study", "--command", "c", "--table", str(table)]) == 0
    kept = tmp_path / "reference" / "study"
    assert len(pd.read_csv(table)) == 6 and (kept / "best.yaml").exists()
    for name in PLOTS:
        assert (kept / name).exists(), name
    copied = optuna.load_study(study_name=tpe_sweep.name, storage=open_storage(str(kept / JOURNAL_FILE)))
    assert numbers(copied) == [0, 1, 2, 3, 4, 5]  # the journal opens as the study it recorded


def test_resume_adds_trials_to_the_same_study(tpe_sweep, tmp_path):
    sweep_dir = tmp_path / tpe_sweep.name
    shutil.copytree(tpe_sweep, sweep_dir)
    proc = optuna_cli(sweep_dir, "hydra.sweeper.n_trials=7", LR, "trainer.batch_size=choice(32, 64)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "trial 6:" in log and "trial 0:" not in log  # one more trial, none rerun
    study = load_study(sweep_dir)
    assert numbers(study) == [0, 1, 2, 3, 4, 5, 6]
    first = load_study(tpe_sweep).trials
    assert study.trials[6].params not in [t.params for t in first]  # reseeded: not the first run's points again
    assert len(pd.read_csv(sweep_dir / "results.csv")) == 7


# --- failures, parallel jobs ----------------------------------------------------------------------------

def test_failed_trial_is_told_fail_and_the_study_goes_on(tmp_path):
    proc = optuna_cli(tmp_path, "hydra.sweeper.sampler.name=grid", "hydra.sweeper.n_trials=10",
                      "optimizer.lr=choice(0.001, -1, 0.002)")
    assert proc.returncode == 0, proc.stderr[-3000:]  # 1 failure of 3 is within max_failure_rate=0.5
    assert "Sweep finished: 2 completed, 1 failed" in proc.stdout
    study = load_study(tmp_path)
    assert len(study.trials) == 3  # the grid has 3 points: n_trials=10 is capped
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "COMPLETE", "FAIL"]
    frame = pd.read_csv(tmp_path / "results.csv")
    failed = frame[frame["status"] == "failed"].iloc[0]
    assert failed["trial_state"] == "FAIL" and failed["optimizer.lr"] == -1
    assert "Invalid learning rate" in failed["error"]


def test_two_joblib_workers_run_two_trials_at_once(tmp_path):
    proc = optuna_cli(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
                      "hydra.sweeper.n_trials=3", LR, "hydra.sweeper.pruner.name=median",
                      "+hydra.sweeper.pruner.options.n_startup_trials=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "is launching 2 jobs" in log and "is launching 1 jobs" in log  # trials 0+1 together, then 2
    study = load_study(tmp_path)
    assert numbers(study, TrialState.COMPLETE, TrialState.PRUNED) == [0, 1, 2]
    for trial in study.trials:  # each worker process found its own trial through the storage
        result = json.loads((tmp_path / str(trial.number) / "result.json").read_text())
        assert result["trial"]["number"] == trial.number and result["trial"]["state"] == trial.state.name
        assert math.isclose(result["lr"], trial.params["optimizer.lr"]) and trial.intermediate_values
    assert len(pd.read_csv(tmp_path / "results.csv")) == 3


# --- the ask/launch/tell loop with a stand-in launcher (no training) -------------------------------------

class FakeLauncher:
    """Writes each job's result.json as `outcome(lr)` says; status failed comes back FAILED, as a raising job."""

    def __init__(self, sweep_dir: Path, outcome):
        self.sweep_dir, self.outcome, self.batches = sweep_dir, outcome, []

    def launch(self, job_overrides, initial_job_idx):
        self.batches.append(list(range(initial_job_idx, initial_job_idx + len(job_overrides))))
        returns = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            out = self.sweep_dir / str(idx)
            lr = float(next(o for o in overrides if o.startswith("optimizer.lr=")).split("=")[1])
            result = {"job": idx, "overrides": list(overrides), "output_dir": str(out), **self.outcome(lr)}
            results.write_json(out / results.RESULT_FILE, result)
            hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(out)}, "job": {"num": idx}}})
            failed = result["status"] == "failed"
            returns.append(JobReturn(overrides=list(overrides), hydra_cfg=hydra_cfg,
                                     status=JobStatus.FAILED if failed else JobStatus.COMPLETED,
                                     _return_value=ValueError("bad lr") if failed else result.get("best_val_acc")))
        return returns


def make_sweeper(tmp_path, outcome, directions="maximize", **kwargs):
    options = dict(sampler={"name": "random", "seed": 0}, direction=directions, storage=None, study_name=None,
                   n_trials=6, n_jobs=2, max_failure_rate=0.5, pruner={"name": "none"}, params={})
    sweeper = OptunaSweeper(**{**options, **kwargs})
    sweeper.objectives = ["best_val_acc"] if isinstance(directions, str) else ["best_val_acc", "params"]
    sweeper.url = storage_url(None, tmp_path)
    sweeper.launcher = FakeLauncher(tmp_path, outcome)
    return sweeper


SPACE = {"optimizer.lr": FloatDistribution(-1.0, 1.0)}


def test_batches_of_n_jobs_never_share_a_trial_number(tmp_path):
    sweeper = make_sweeper(tmp_path, lambda lr: {"status": "completed", "best_val_acc": lr})
    study = sweeper.open_study("s", SPACE)
    assert sweeper.run_trials(study, SPACE, ["data=synthetic"]) is None
    assert sweeper.launcher.batches == [[0, 1], [2, 3], [4, 5]]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert [t.value for t in study.trials] == [t.params["optimizer.lr"] for t in study.trials]
    record = json.loads((tmp_path / "3" / "result.json").read_text())["trial"]
    assert record == {"number": 3, "study": "s", "state": "COMPLETE", "value": study.trials[3].value}


def test_too_many_failures_stop_the_sweep(tmp_path):
    sweeper = make_sweeper(tmp_path, lambda lr: {"status": "failed", "error": "ValueError: bad lr"},
                           n_trials=10, n_jobs=1, max_failure_rate=0.2)
    study = sweeper.open_study("s", SPACE)
    stopped = sweeper.run_trials(study, SPACE, [])
    assert "3 failed trials" in stopped and len(study.trials) == 3  # 3 > 0.2 * 10
    with pytest.raises(SweepFailed, match="no job completed"):
        sweeper.finish(tmp_path, study)
    assert len(pd.read_csv(tmp_path / "results.csv")) == 3  # reported before failing


@pytest.mark.parametrize("rate, fails", [(0.5, False), (0.1, True)])
def test_failures_beyond_max_failure_rate_fail_the_sweep(tmp_path, rate, fails):
    sweeper = make_sweeper(tmp_path, lambda lr: {"status": "failed"} if lr < -0.5 else
                           {"status": "completed", "best_val_acc": lr}, n_trials=6, max_failure_rate=rate)
    study = sweeper.open_study("s", SPACE)
    sweeper.run_trials(study, SPACE, [])
    failed = sum(t.state == TrialState.FAIL for t in study.trials)
    assert failed == 1 and (failed > rate * 6) == fails  # the seeded draws hold one failure
    if fails:
        with pytest.raises(SweepFailed, match=f"{failed} of 6 jobs failed"):
            sweeper.finish(tmp_path, study)
    else:
        sweeper.finish(tmp_path, study)  # the same rule as the grid sweeper's, at another rate


def test_a_broken_launcher_leaves_no_trial_running(tmp_path):
    sweeper = make_sweeper(tmp_path, None)

    def broken(job_overrides, initial_job_idx):
        raise RuntimeError("launcher down")
    sweeper.launcher.launch = broken
    study = sweeper.open_study("s", SPACE)
    with pytest.raises(RuntimeError, match="launcher down"):
        sweeper.run_trials(study, SPACE, [])
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2


def test_statuses_map_to_trial_states(tmp_path):
    def outcome(lr):
        if lr < -0.3:
            return {"status": "failed"}
        if lr < 0.3:
            return {"status": "pruned", "best_val_acc": 0.1}
        return {"status": "diverged", "best_val_acc": None}  # diverged before any finite accuracy: FAIL
    sweeper = make_sweeper(tmp_path, outcome, n_trials=8, max_failure_rate=1.0)
    study = sweeper.open_study("s", SPACE)
    sweeper.run_trials(study, SPACE, [])
    for trial in study.trials:
        lr = trial.params["optimizer.lr"]
        expected = TrialState.PRUNED if -0.3 <= lr < 0.3 else TrialState.FAIL
        assert trial.state == expected, (lr, trial.state)


def test_multi_objective_best_yaml_lists_the_pareto_front(tmp_path):
    sweeper = make_sweeper(tmp_path, lambda lr: {"status": "completed", "best_val_acc": lr, "params": lr * lr},
                           directions=["maximize", "minimize"], sampler={"name": "nsgaii", "seed": 0})
    study = sweeper.open_study("s", SPACE)
    sweeper.run_trials(study, SPACE, ["data=synthetic"])
    write_best(study, tmp_path / "best.yaml", sweeper.objectives, sweeper.url)
    front = yaml.safe_load((tmp_path / "best.yaml").read_text())["pareto_front"]
    assert sorted(t["number"] for t in front) == sorted(t.number for t in study.best_trials)
    assert set(front[0]["values"]) == {"best_val_acc", "params"}
    assert front[0]["command"].startswith("python -m fer_sweep data=synthetic optimizer.lr=")


def test_continuing_a_study_with_other_directions_is_refused(tmp_path):
    make_sweeper(tmp_path, None).open_study("s", SPACE)
    with pytest.raises(ValueError, match="directions"):
        make_sweeper(tmp_path, None, direction="minimize").open_study("s", SPACE)


def test_consecutive_runs_split_where_numbers_jump():
    class T:
        def __init__(self, number):
            self.number = number
    runs = consecutive_runs([T(4), T(5), T(7), T(8), T(10)])
    assert [[t.number for t in run] for run in runs] == [[4, 5], [7, 8], [10]]


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "gp", "qmc", "grid", "nsgaii"])
def test_every_sampler_runs_ask_and_tell(name):
    space = {"batch": CategoricalDistribution([64, 128]), "model": CategoricalDistribution(["cnn", "resnet9"])}
    if name != "grid":
        space["lr"] = FloatDistribution(1e-4, 1e-1, log=True)
    options = {"n_startup_trials": 2} if name in ("tpe", "gp") else {}  # so that tpe and gp really model
    study = optuna.create_study(direction="maximize")
    study.sampler = build_sampler({"name": name, "seed": 0, "options": options}, space, 0)
    for _ in range(4):
        trial = study.ask(space)
        tell_study(study, trial, TrialState.COMPLETE, [float(trial.params["model"] == "cnn")])
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4
    if name == "grid":
        assert len({tuple(t.params.values()) for t in study.trials}) == 4  # every grid point once


# --- the pruning callback inside a job -----------------------------------------------------------------

@pytest.mark.parametrize("name, options, cls, attrs", [
    ("none", {}, optuna.pruners.NopPruner, {}),
    ("median", {"n_startup_trials": 2, "n_warmup_steps": 1}, optuna.pruners.MedianPruner,
     {"_n_startup_trials": 2, "_n_warmup_steps": 1, "_percentile": 50.0}),
    ("percentile", {"n_startup_trials": 2}, optuna.pruners.PercentilePruner,
     {"_n_startup_trials": 2, "_percentile": 25.0}),  # the one required argument gets its default
    ("hyperband", {"min_resource": 1, "max_resource": 4, "reduction_factor": 2},
     optuna.pruners.HyperbandPruner, {"_min_resource": 1, "_max_resource": 4, "_reduction_factor": 2}),
    ("successive_halving", {"min_resource": 1, "reduction_factor": 2}, optuna.pruners.SuccessiveHalvingPruner,
     {"_min_resource": 1, "_reduction_factor": 2})])
def test_every_pruner_builds_with_its_options_and_prunes_a_bad_trial(name, options, cls, attrs):
    pruner = build_pruner(name, options)
    assert type(pruner) is cls and {k: getattr(pruner, k) for k in attrs} == attrs
    study = optuna.create_study(study_name="prune", direction="maximize", pruner=pruner,  # named: hyperband's
                                sampler=optuna.samplers.RandomSampler(seed=0))        # brackets hash it
    for i in range(6):  # good trials, reporting every epoch as TrialPruning does
        trial = study.ask()
        for step in range(1, 5):
            trial.report(0.9 - 0.01 * i, step)
            trial.should_prune()
        study.tell(trial, 0.9 - 0.01 * i)
    bad = study.ask()
    verdicts = []
    for step in range(1, 5):
        bad.report(0.05, step)
        verdicts.append(bool(bad.should_prune()))
    assert any(verdicts) == (name != "none"), verdicts
    with pytest.raises(ValueError, match="unknown pruner 'wilcoxon'"):
        build_pruner("wilcoxon", {})


def test_job_finds_its_trial_through_the_storage_and_is_pruned(tmp_path):
    url = storage_url(None, tmp_path)
    study = optuna.create_study(storage=open_storage(url), study_name="s", direction="maximize")
    study.set_user_attr(PRUNER_ATTR, {"name": "median", "monitor": "val_acc", "options": {"n_startup_trials": 1}})
    first = study.ask()
    first.report(0.5, 1)
    study.tell(first, 0.5)
    trial = study.ask()
    callback = TrialPruning.from_config({"number": trial.number, "study": "s", "storage": url})  # as a job does
    assert callback.on_epoch_end(1, {"val_acc": 0.9, "val_loss": 1.0}) is False and not callback.pruned
    assert callback.on_epoch_end(2, {"val_acc": 0.1, "val_loss": 1.0}) is False  # no completed trial at step 2
    assert study.get_trials()[1].intermediate_values == {1: 0.9, 2: 0.1}  # reported to the storage
    late = study.ask()
    late_callback = TrialPruning.from_config({"number": late.number, "study": "s", "storage": url})
    assert late_callback.on_epoch_end(1, {"val_acc": 0.1}) is True and late_callback.pruned
    with pytest.raises(KeyError, match="val_f1"):
        TrialPruning(late_callback.trial, monitor="val_f1").on_epoch_end(2, {"val_acc": 0.1})


def test_storage_strings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage_url(None, "sweep") == f"journal:{tmp_path}/sweep/{JOURNAL_FILE}"  # absolute, for every job
    assert storage_url("studies.log", "sweep") == f"journal:{tmp_path}/studies.log"
    assert storage_url("sqlite:///s.db", "sweep") == "sqlite:///s.db"
    assert isinstance(open_storage(f"journal:{tmp_path}/a/j.log"), optuna.storages.JournalStorage)
    assert isinstance(open_storage("b.log"), optuna.storages.JournalStorage)
    assert isinstance(open_storage("sqlite:///s.db", heartbeat_interval=10), optuna.storages.RDBStorage)
    with pytest.raises(ValueError, match="unknown Optuna storage"):
        open_storage("s.db")


# --- configuration and packaging ------------------------------------------------------------------------

def test_sweeper_config_shows_every_default():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/sweeper=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.fer_sweep_plugins.optuna_sweeper.OptunaSweeper"
    assert OmegaConf.to_container(sweeper.sampler) == {"name": "tpe", "seed": 0, "options": {}}
    assert (sweeper.direction, sweeper.storage, sweeper.study_name, sweeper.n_trials, sweeper.n_jobs,
            sweeper.max_failure_rate, sweeper.pruner.name) == ("maximize", None, None, 20, 1, 0.5, "none")


def test_hparams_search_selects_the_optuna_sweeper():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hparams_search=optuna_lr"], return_hydra_config=True)
        default = compose("config", return_hydra_config=True)
    assert default.hydra.sweeper._target_.endswith("GridSweeper")
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.params["model"] == "choice(cnn, resnet9)"


def test_non_editable_install_finds_the_plugin_and_its_configs(tmp_path):
    """A wheel install (not editable) into its own folder, run by this interpreter, whatever it is: a system
    Python or a virtual environment (a venv made from a venv would see the base interpreter's packages)."""
    source, site = tmp_path / "src", tmp_path / "site"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "fer_sweep", "hydra_plugins", "conf"):  # what packaging reads
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fer_sweep/conf stays a symlink
        elif (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    # pip builds the wheel in an isolated environment (setuptools and wheel from the index, as for any user)
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site),
                              str(source)], capture_output=True, text=True)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the editable checkout on sys.path
    python = sys.executable
    probe = ("import fer_sweep.app as a, hydra_plugins.fer_sweep_plugins.optuna_sweeper as p; "
             "print(a.CONFIG_DIR, p.__file__)")
    where = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=True,
                           env=env).stdout.split()
    assert all(path.startswith(str(site)) for path in where), where
    sweep_dir = tmp_path / "sweep"
    run = subprocess.run([python, "-m", "fer_sweep", "--multirun", "hydra/sweeper=optuna", *TINY, LR,
                          "trainer.epochs=1", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep_dir}"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert pd.read_csv(sweep_dir / "results.csv")["trial_state"].tolist() == ["COMPLETE"]
    assert (sweep_dir / "best.yaml").exists()


def test_the_fast_search_file_runs_as_written(tmp_path):
    """conf/hparams_search/fast_search.yaml on top of experiment=best: its space parses, its pruner builds, and
    every trial trains on the stratified part of train the file asks for."""
    sweep_dir = tmp_path / "fast"
    proc = run_cli(["--multirun", "experiment=best", "hparams_search=fast_search", *TINY, "hydra.sweeper.n_trials=3",
                    f"hydra.sweep.dir={sweep_dir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(sweep_dir / "results.csv")
    assert len(frame) == 3 and set(frame["trainer.ema_decay"]) <= {0.0, 0.999}
    assert set(frame["augmentation"]) <= {"seed", "strong"} and set(frame["model"]) == {"resnet9"}
    result = json.loads((sweep_dir / "0" / "result.json").read_text())
    assert result["split_sizes"]["train"] == 70  # half of the 140 synthetic training faces
    assert set(frame["trainer.batch_size"]) <= {64, 128}
    assert load_study(sweep_dir).user_attrs[PRUNER_ATTR]["name"] == "median"


def test_timeout_asks_no_new_trial_and_the_same_command_continues(tmp_path):
    """hydra.sweeper.timeout: a time budget. The first batch runs, then no trial is asked; the study keeps what
    ran, and running the command again adds trials up to n_trials."""
    sweep_dir = tmp_path / "timed"
    args = ["hydra.sweeper.n_trials=3", LR, "hydra.sweeper.timeout=0.001"]
    proc = optuna_cli(sweep_dir, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "hydra.sweeper.timeout=0.001s passed (1 of 3 trials taken)" in proc.stdout + proc.stderr
    assert numbers(load_study(sweep_dir)) == [0] and len(pd.read_csv(sweep_dir / "results.csv")) == 1
    proc = optuna_cli(sweep_dir, *args[:-1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert numbers(load_study(sweep_dir)) == [0, 1, 2]


@pytest.mark.parametrize("args, named", [
    (["data.split=full", "trainer.checkpoint=last"], "objective=best_val_acc with data.split=full"),
    (["experiment=fast", "hparams_search=fast_search"],  # the file's median pruner watches val_acc too
     "objective=best_val_acc and hydra.sweeper.pruner.monitor=val_acc with data.split=full"),
    (["data.split=choice(seed, full)", "trainer.checkpoint=last", "objective=test_acc",
      "hydra.sweeper.pruner.name=median"], "hydra.sweeper.pruner.monitor=val_acc with data.split=full"),
])
def test_a_search_on_val_metrics_of_split_full_is_refused_before_any_trial(tmp_path, args, named):
    """data.split=full trains on the val split: its val accuracy can't be an objective or a pruning monitor."""
    sweep_dir = tmp_path / "study"
    proc = optuna_cli(sweep_dir, LR, *args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fer_sweep: error: ") and named in lines[0]
    assert not sweep_dir.exists()  # no study, no trial, no folder
