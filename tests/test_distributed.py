"""Distributed sweeps: several sweep processes sharing one Optuna study (PostgreSQL, journal file), a worker
killed with SIGKILL mid-trial, the n_trials rule, heartbeats, `report --storage`, and the process launchers.

PostgreSQL tests use the server at 127.0.0.1:5432 for real: a fresh database per test, dropped after; they
skip (saying why) only when no server answers.
"""
import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, List

import optuna
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from fer_sweep import results
from fer_sweep.app import CONFIG_DIR
from fer_sweep.report import main as report_main
from fer_sweep.report import summarize
from fer_sweep.sweep.heartbeat import (HEARTBEAT_ATTR, Heartbeat, fail_stale_trials, record_heartbeat,
                                       retry_stale_trial)
from fer_sweep.sweep.optuna_sweeper import SURPLUS_ATTR, Ledger, OptunaSweeper
from fer_sweep.sweep.storage import open_storage, storage_url
from fer_sweep.sweep.study_report import rebuild_from_storage
from tests.conftest import ROOT, run_cli

TINY = ["data=synthetic", "data.n_train=140", "data.n_public=35", "data.n_private=35", "trainer.epochs=1",
        "trainer.batch_size=64", "trainer.threads=1", "trainer.plots=false"]
LR = "optimizer.lr=tag(log, interval(1e-4, 1e-1))"
SPACE = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True)}
PG = dict(host=os.environ.get("FER_TEST_PGHOST", "127.0.0.1"), port=int(os.environ.get("FER_TEST_PGPORT", 5432)),
          dbname="test", connect_timeout=3)  # the test machine's server (trust auth, database `test`)


# --- fixtures: a fresh PostgreSQL database, worker processes that never outlive a test ----------------------

@pytest.fixture
def postgres_url():
    """postgresql://<user>@127.0.0.1:5432/fer_test_<random>, created for this test and dropped after it."""
    psycopg = pytest.importorskip("psycopg")
    errors = []
    for user in ("root", "postgres"):
        try:
            admin = psycopg.connect(user=user, **PG)
            break
        except psycopg.OperationalError as exc:
            errors.append(f"{user}: {str(exc).strip().splitlines()[0]}")
    else:
        pytest.skip(f"no PostgreSQL server answers at {PG['host']}:{PG['port']} ({'; '.join(errors)})")
    admin.autocommit = True
    name = f"fer_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{user}@{PG['host']}:{PG['port']}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                        "AND pid <> pg_backend_pid()", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture
def storage_for(request, tmp_path):
    """storage_for(backend) -> a storage string: a journal file in tmp_path, or a fresh PostgreSQL database."""
    def make(backend: str) -> str:
        if backend == "postgres":
            return request.getfixturevalue("postgres_url")
        return str(tmp_path / "study.log")
    return make


BACKENDS = ["journal", pytest.param("postgres", marks=pytest.mark.postgres)]


class Workers:
    """`python -m fer_sweep --multirun hydra/sweeper=optuna ...` processes sharing one study, each in its own
    process group (start_new_session) and sweep folder; any still running at the end of the test are killed."""

    def __init__(self, tmp_path: Path, storage: str):
        self.tmp_path, self.storage = tmp_path, storage
        self.procs: Dict[str, subprocess.Popen] = {}

    def start(self, name: str, n_trials: int, *extra: str) -> subprocess.Popen:
        sweep_dir = self.tmp_path / name
        args = [sys.executable, "-m", "fer_sweep", "--multirun", "hydra/sweeper=optuna", *TINY, LR,
                f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.storage={self.storage}",
                "hydra.sweeper.study_name=shared", "hydra.sweeper.heartbeat_interval=1",
                "hydra.sweeper.grace_period=6", f"hydra.sweep.dir={sweep_dir}", *extra]
        env = {k: v for k, v in os.environ.items() if k != "FER2013_PATH"}
        env["PYTHONUNBUFFERED"] = "1"
        log = open(self.tmp_path / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                            start_new_session=True)
        log.close()
        return self.procs[name]

    def output(self, name: str) -> str:
        return (self.tmp_path / f"{name}.out").read_text()

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweeper and its in-process job, like a lost node
        proc.wait()

    def wait(self, *names: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        for name in names:
            try:
                returncode = self.procs[name].wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(name)
                pytest.fail(f"worker {name} still running after {timeout}s:\n{self.output(name)[-3000:]}")
            assert returncode == 0, f"worker {name} exited {returncode}:\n{self.output(name)[-3000:]}"

    def close(self) -> None:
        for name in self.procs:
            self.kill(name)


@pytest.fixture
def workers(tmp_path, storage_for):
    created: List[Workers] = []

    def make(backend: str) -> Workers:
        created.append(Workers(tmp_path, storage_for(backend)))
        return created[-1]
    yield make
    for w in created:
        w.close()


@functools.lru_cache(maxsize=None)
def _storage(storage: str) -> optuna.storages.BaseStorage:
    return open_storage(storage_url(storage, "."))


def load_shared(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="shared", storage=_storage(storage))


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except KeyError:  # the study is not created yet
            value = None
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def check_shared_study(storage: str, sweep_dirs: List[Path], n_trials: int, out: Path) -> List[FrozenTrial]:
    """Exactly n_trials finished trials, distinct numbers and parameters, one results.csv row each over the
    workers' sweep folders, and `report --storage` rebuilds the same rows from the study alone."""
    study = load_shared(storage)
    ledger = Ledger(study.get_trials())
    finished = ledger.finished
    assert len(finished) == n_trials and len(ledger.counted) == n_trials, ledger.state_counts()
    numbers = [t.number for t in finished]
    assert len(set(numbers)) == n_trials
    assert len({t.params["optimizer.lr"] for t in finished}) == n_trials  # no parameter set handed out twice
    for trial in ledger.surplus:  # a race for the last slot: told FAIL at once, never run
        assert trial.state == TrialState.FAIL and trial.user_attrs[SURPLUS_ATTR]
        assert "output_dir" not in trial.user_attrs

    per_host = pd.concat([pd.read_csv(d / "results.csv") for d in sweep_dirs if (d / "results.csv").exists()])
    # On a loaded machine a live survivor's beat can stall past grace_period: its trial is failed as stale and
    # retried, and its row says `superseded` by a finished trial (optuna_sweeper.py) and counts nowhere.
    superseded = per_host[per_host["status"] == "superseded"]
    for row in superseded.itertuples():
        assert study.trials[row.trial].state == TrialState.FAIL and int(row.trial_superseded_by) in numbers
    per_host = per_host[per_host["status"] != "superseded"]
    assert sorted(per_host["trial"]) == sorted(numbers)  # n_trials rows over the workers' results.csv files
    assert set(per_host["output_dir"].map(lambda p: Path(p).parent)) <= set(sweep_dirs)

    assert report_main(["--storage", storage, "--study", "shared", "--output", str(out),
                        "--chart", str(out / "report.png")]) == 0
    rebuilt = pd.read_csv(out / "results.csv")
    assert sorted(rebuilt["trial"]) == sorted(numbers) and len(rebuilt) == n_trials
    keys = ["trial", "trial_state", "optimizer.lr", "status", "best_val_acc", "test_acc", "output_dir"]
    pd.testing.assert_frame_equal(rebuilt[keys].sort_values("trial").reset_index(drop=True),
                                  per_host[keys].sort_values("trial").reset_index(drop=True), check_dtype=False)
    assert (out / "report.md").read_text().startswith("# Optuna study shared")
    return finished


# --- several sweep processes, one study --------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_three_workers_finish_exactly_n_trials(workers, tmp_path, backend):
    pool = workers(backend)
    for name in ("w0", "w1", "w2"):
        pool.start(name, 9)
    pool.wait("w0", "w1", "w2")
    finished = check_shared_study(pool.storage, [tmp_path / n for n in ("w0", "w1", "w2")], 9, tmp_path / "all")
    hosts = {Path(t.user_attrs["output_dir"]).parent.name for t in finished}
    assert len(hosts) >= 2, "one worker ran every trial: the others never cooperated"
    if backend == "postgres":  # the URL the user passed works unchanged in their own Optuna code
        probe = ("import optuna, sys; s = optuna.load_study(study_name='shared', storage=sys.argv[1]); "
                 "print(sum(t.state.name == 'COMPLETE' for t in s.trials))")
        done = subprocess.run([sys.executable, "-c", probe, pool.storage], capture_output=True, text=True)
        assert done.returncode == 0 and int(done.stdout) >= 9, done.stderr[-2000:]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_worker_trial_is_retried_with_the_same_parameters(workers, tmp_path, backend):
    pool = workers(backend)
    pool.start("victim", 4, "trainer.epochs=500")  # its trials run for minutes
    victim_trial = wait_for(lambda: next((t for t in load_shared(pool.storage).get_trials()
                                          if t.state == TrialState.RUNNING and t.intermediate_values), None),
                            timeout=120, what="the victim's trial to report an epoch")
    pool.start("s0", 4)
    pool.start("s1", 4)
    wait_for(lambda: len(load_shared(pool.storage).trials) > 1, timeout=120, what="the survivors to ask")
    pool.kill("victim")  # SIGKILL mid-trial: nothing tells the study
    assert load_shared(pool.storage).trials[victim_trial.number].state == TrialState.RUNNING
    pool.wait("s0", "s1")

    check_shared_study(pool.storage, [tmp_path / n for n in ("victim", "s0", "s1")], 4, tmp_path / "all")
    trials = load_shared(pool.storage).trials
    assert trials[victim_trial.number].state == TrialState.FAIL  # detected by its stopped heartbeat
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim_trial.number]
    assert len(retries) == 1, "retried exactly once"
    retry = retries[0]
    assert retry.params == victim_trial.params and retry.state == TrialState.COMPLETE
    assert Path(retry.user_attrs["output_dir"]).parent.name in ("s0", "s1")  # by a surviving worker
    assert "queued again with the same parameters" in pool.output("s0") + pool.output("s1")
    rebuilt = pd.read_csv(tmp_path / "all" / "results.csv").set_index("trial")
    assert rebuilt.loc[retry.number, "trial_retry_of"] == victim_trial.number
    assert victim_trial.number not in rebuilt.index  # replaced by its retry


# --- the process launchers: submitit_local (what the tests can run of submitit_slurm), joblib -------------

@pytest.mark.parametrize("launcher", [["hydra/launcher=submitit_local"],
                                      ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]],
                         ids=["submitit_local", "joblib"])
def test_grid_sweep_through_a_process_launcher(tmp_path, launcher):
    proc = run_cli(["--multirun", *launcher, *TINY, "optimizer.lr=0.001,-1", f"hydra.sweep.dir={tmp_path}"])
    assert proc.returncode == 1, proc.stderr[-3000:]  # one job failed: reported, then the exit code says so
    assert "Sweep finished: 1 completed, 1 failed" in proc.stdout
    frame = pd.read_csv(tmp_path / "results.csv")
    assert frame["job"].tolist() == [0, 1] and frame["status"].tolist() == ["completed", "failed"]
    assert frame["optimizer.lr"].tolist() == [0.001, -1] and "Invalid learning rate" in frame["error"][1]
    assert (tmp_path / "report.md").exists()
    if "submitit" in launcher[0]:
        assert list((tmp_path / ".submitit").glob("*/*_result.pkl")), "the jobs did not run through submitit"


@pytest.mark.slow
def test_optuna_sweep_through_submitit_local(tmp_path):
    proc = run_cli(["--multirun", "hydra/launcher=submitit_local", "hydra/sweeper=optuna", *TINY, LR,
                    "hydra.sweeper.n_trials=2", "hydra.sweeper.heartbeat_interval=1",
                    f"hydra.sweep.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "results.csv")
    assert frame["trial"].tolist() == [0, 1] and (frame["trial_state"] == "COMPLETE").all()
    study = optuna.load_study(study_name=tmp_path.name,
                              storage=open_storage(str(tmp_path / "optuna_journal.log")))
    assert all(t.intermediate_values and HEARTBEAT_ATTR in t.system_attrs for t in study.trials)


def test_launcher_configs_merge_with_the_plugins_schemas():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        slurm = compose("config", overrides=["hparams_search=optuna_lr", "hydra/launcher=slurm_gpu",
                                             "hydra.launcher.partition=gpu"], return_hydra_config=True)
        joblib = compose("config", overrides=["hparams_search=optuna_lr", "hydra/launcher=joblib",
                                              "hydra.launcher.n_jobs=4"], return_hydra_config=True)
        basic = compose("config", overrides=["hydra/sweeper=optuna"], return_hydra_config=True)
        with pytest.raises(Exception, match="gpus"):  # struct: the plugin's schema is there, typos fail
            compose("config", overrides=["hydra/launcher=slurm_gpu", "hydra.launcher.gpus=2"],
                    return_hydra_config=True)
    launcher = slurm.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.partition) == (1, 1, "gpu")
    assert slurm.hydra.sweeper.n_jobs == launcher.array_parallelism  # one batch = the jobs SLURM runs at once
    assert joblib.hydra.sweeper.n_jobs == 4 and basic.hydra.sweeper.n_jobs == 1
    assert basic.hydra.sweeper.heartbeat_interval == 60 and basic.hydra.sweeper.max_retry == 2


# --- the n_trials rule, in process (no training) ----------------------------------------------------------

class InstantLauncher:
    """Every job completes at once with best_val_acc = lr, and writes its result.json like a real job."""

    def __init__(self, sweep_dir: Path):
        self.sweep_dir = sweep_dir

    def launch(self, job_overrides, initial_job_idx):
        returns = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            out = self.sweep_dir / str(idx)
            lr = float(next(o for o in overrides if o.startswith("optimizer.lr=")).split("=")[1])
            results.write_json(out / results.RESULT_FILE, {
                "job": idx, "status": "completed", "best_val_acc": lr, "test_acc": lr / 2,
                "output_dir": str(out), "choices": {"model": "cnn", "scheduler": "none"},
                "overrides": list(overrides)})
            hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(out)}, "job": {"num": idx}}})
            returns.append(JobReturn(overrides=list(overrides), hydra_cfg=hydra_cfg, status=JobStatus.COMPLETED,
                                     _return_value=lr))
        return returns


def sweeper_on(storage: str, sweep_dir: Path, n_trials: int, **kwargs) -> OptunaSweeper:
    options = dict(sampler={"name": "tpe", "seed": 0}, direction="maximize", storage=storage, study_name="s",
                   n_trials=n_trials, n_jobs=2, max_failure_rate=0.5, pruner={"name": "none"}, params={},
                   heartbeat_interval=1, grace_period=2)
    sweeper = OptunaSweeper(**{**options, **kwargs})
    sweeper.objectives = ["best_val_acc"]
    sweeper.url = storage_url(storage, sweep_dir)
    sweeper.launcher = InstantLauncher(sweep_dir)
    return sweeper


def test_a_race_for_the_last_slot_makes_a_surplus_trial_not_an_extra_one(tmp_path):
    storage = str(tmp_path / "s.log")
    a, b = sweeper_on(storage, tmp_path / "a", 3), sweeper_on(storage, tmp_path / "b", 3)
    study_a, study_b = a.open_study("s", SPACE), b.open_study("s", SPACE)
    first = a.ask(study_a, SPACE, 1)
    a.run_batch(study_a, a.claim(study_a, first, 3), [])
    # both saw 2 free slots at the same moment; a asked 1 trial, b asked 2: 4 trials for 3 slots
    asked_a, asked_b = a.ask(study_a, SPACE, 1), b.ask(study_b, SPACE, 2)
    claimed = a.claim(study_a, asked_a, 3) + b.claim(study_b, asked_b, 3)
    assert [t.number for t in claimed] == [1, 2]  # the lowest numbers take the free slots
    surplus = study_a.trials[3]
    assert surplus.state == TrialState.FAIL and surplus.user_attrs[SURPLUS_ATTR] is True
    a.run_batch(study_a, [t for t in claimed if t.number == 1], [])
    b.run_batch(study_b, [t for t in claimed if t.number == 2], [])
    assert a.run_trials(study_a, SPACE, []) is None and b.run_trials(study_b, SPACE, []) is None  # nothing left
    ledger = Ledger(study_a.get_trials(), 3)
    assert [t.number for t in ledger.finished] == [0, 1, 2] and [t.number for t in ledger.surplus] == [3]
    assert ledger.state_counts() == {"COMPLETE": 3, "surplus": 1}
    frame = rebuild_from_storage(storage, "s", tmp_path / "report")
    assert frame["trial"].tolist() == [0, 1, 2]  # the surplus trial never ran and has no row
    assert (tmp_path / "report" / "best.yaml").exists() and (tmp_path / "report" / "report.md").exists()


def test_a_retry_takes_over_the_slot_of_the_trial_it_replaces(tmp_path):
    storage = str(tmp_path / "s.log")
    sweeper = sweeper_on(storage, tmp_path, 2, grace_period=1)
    study = sweeper.open_study("s", SPACE)
    done, dead = sweeper.ask(study, SPACE, 2)
    sweeper.study_storage.set_trial_system_attr(dead._trial_id, HEARTBEAT_ATTR, time.time())  # its last beat
    sweeper.run_batch(study, [done], [])
    time.sleep(1.5)  # > grace_period
    fail_stale_trials(study, sweeper.study_storage, sweeper.grace_period, sweeper.retry_entitled)
    ledger = Ledger(study.get_trials(), 2)
    assert ledger.slots_taken == 2 and [t.number for t in ledger.waiting] == [2] and ledger.replaced == {1}
    assert sweeper.run_trials(study, SPACE, []) is None  # runs the queued retry, though both slots are taken
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[2].params == dead.params and trials[2].system_attrs["failed_trial"] == 1
    assert [t.number for t in Ledger(trials, 2).finished] == [0, 2]
    assert json.loads((tmp_path / "2" / "result.json").read_text())["trial"]["retry_of"] == 1


def test_a_live_trial_failed_as_stale_is_superseded_by_its_retry_in_rows_and_reports(tmp_path, capsys):
    storage = str(tmp_path / "s.log")
    sweeper = sweeper_on(storage, tmp_path, 2, grace_period=1)
    study = sweeper.open_study("s", SPACE)
    done, stalled = sweeper.ask(study, SPACE, 2)
    sweeper.study_storage.set_trial_system_attr(stalled._trial_id, HEARTBEAT_ATTR, time.time())  # last beat
    sweeper.run_batch(study, [done], [])
    launch = sweeper.launcher.launch

    def stalls(job_overrides, initial_job_idx):  # the job stalls past grace_period, then completes after all
        time.sleep(1.5)
        # another worker finds it silent: FAIL, and a retry queued
        fail_stale_trials(study, sweeper.study_storage, sweeper.grace_period, sweeper.retry_entitled)
        return launch(job_overrides, initial_job_idx)
    sweeper.launcher.launch = stalls
    sweeper.run_batch(study, [stalled], [])
    sweeper.launcher.launch = launch
    assert sweeper.run_trials(study, SPACE, []) is None  # the retry, trial 2, runs and completes
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]

    record = json.loads((tmp_path / "1" / "result.json").read_text())
    assert record["status"] == "superseded" and record["trial"]["superseded_by"] == 2
    assert record["trial"]["state"] == "FAIL"  # as the study says
    sweeper.finish(tmp_path, study)
    assert "Sweep finished: 2 completed, 1 superseded." in capsys.readouterr().out  # n_trials=2: 2 count
    frame = pd.read_csv(tmp_path / "results.csv").set_index("trial")
    assert frame.loc[1, "status"] == "superseded" and frame.loc[1, "trial_superseded_by"] == 2
    summary = summarize(frame, metric="best_val_acc", completed_only=False)  # --all-statuses: still excluded
    assert summary["n"].sum() == 2
    assert "Jobs: 2 completed, 1 superseded" in (tmp_path / "report.md").read_text()


def test_parallel_workers_draw_different_points_and_one_worker_is_reproducible(tmp_path):
    a = sweeper_on(str(tmp_path / "shared.log"), tmp_path, 4)
    b = sweeper_on(str(tmp_path / "shared.log"), tmp_path, 4)
    study_a, study_b = a.open_study("s", SPACE), b.open_study("s", SPACE)
    interleaved = [a.ask(study_a, SPACE, 1)[0], b.ask(study_b, SPACE, 1)[0], a.ask(study_a, SPACE, 1)[0]]
    lrs = [t.params["optimizer.lr"] for t in interleaved]
    assert len(set(lrs)) == 3  # same seed in both processes, yet no point twice
    alone = sweeper_on(str(tmp_path / "alone.log"), tmp_path, 4)
    study = alone.open_study("s", SPACE)
    assert [t.params["optimizer.lr"] for t in alone.ask(study, SPACE, 3)] == lrs  # seed + trial number


# --- heartbeats --------------------------------------------------------------------------------------------

def test_journal_heartbeats_keep_a_trial_and_silence_fails_and_retries_it_once(tmp_path):
    storage = open_storage(str(tmp_path / "s.log"))
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    alive, dead, unwatched = (study.ask(SPACE) for _ in range(3))
    with Heartbeat(storage, [alive._trial_id, dead._trial_id], interval=0.2) as beat:  # first beat at once
        time.sleep(0.5)
        beat.trial_ids.remove(dead._trial_id)  # its worker dies: no more beats
        time.sleep(3.0)
        before = storage.get_trial(alive._trial_id).system_attrs[HEARTBEAT_ATTR]
        for _ in range(2):  # two workers look at the same time: one fails it, one retry
            fail_stale_trials(study, storage, 2.0, retry_stale_trial(max_retry=2))
        assert time.time() - before < 1.0  # still beating
    states = [t.state for t in study.trials]
    assert states == [TrialState.RUNNING, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    assert study.trials[3].params == dead.params and study.trials[3].system_attrs["failed_trial"] == dead.number
    beat = Heartbeat(storage, [alive._trial_id], interval=0.1).start()
    study.tell(alive, 1.0)
    time.sleep(0.5)
    assert not beat.trial_ids and not beat._thread.is_alive()  # stops by itself once its trial is told
    assert unwatched.number not in [t.number for t in study.get_trials(states=(TrialState.FAIL,))]


def test_max_retry_bounds_the_retries_of_one_trial(tmp_path):
    storage = open_storage(str(tmp_path / "s.log"))
    study = optuna.create_study(storage=storage, study_name="s")
    for _ in range(2):  # the trial dies, then its retry dies too
        trial = study.ask(SPACE)
        record_heartbeat(storage, trial._trial_id)
        time.sleep(0.6)
        fail_stale_trials(study, storage, 0.5, retry_stale_trial(max_retry=1))
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]  # and no third
    assert study.trials[1].system_attrs["failed_trial"] == 0


@pytest.mark.postgres
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_postgres_uses_optunas_own_heartbeat(postgres_url):
    stale = []

    def on_stale(study, trial):
        stale.append(trial.number)
        retry_stale_trial(max_retry=2)(study, trial)
    storage = open_storage(postgres_url, heartbeat_interval=1, grace_period=1, on_stale=on_stale)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask(SPACE)
    study.ask(SPACE)  # never beats: never stale (it may belong to a worker without heartbeats)
    record_heartbeat(open_storage(postgres_url), trial._trial_id, first=True)  # as a job does: one beat
    time.sleep(2.5)  # > grace_period, by the database's clock
    for _ in range(2):
        fail_stale_trials(study, storage, 1, on_stale)  # Optuna's fail_stale_trials: exactly once
    assert stale == [trial.number]
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    assert study.trials[2].params == trial.params and study.trials[2].system_attrs["failed_trial"] == 0
