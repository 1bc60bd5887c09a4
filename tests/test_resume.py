"""Runs that survive interruption (docs/resume.md): a run killed at any point and started again with the same
command and run folder ends exactly as the uninterrupted run of its seed; Ctrl-C and SIGTERM say where they
stopped; a folder of another config is refused; sweeps continue their interrupted job; early stopping.

The kill tests run the CLI in a subprocess on the shared mini file and watch the run folder (last.pt's epoch)
to kill at a known point; the narrow resnet9 on part of the file keeps an epoch to a few seconds.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from fer_sweep import results
from fer_sweep.app import run_job, train
from fer_sweep.engine.callbacks import Callback
from fer_sweep.engine.resume import LAST_FILE, Interrupted
from fer_sweep.errors import ConfigError
from fer_sweep.sweep.storage import JOURNAL_FILE, open_storage
from tests.conftest import FAST, NARROW_RESNET9, ROOT, run_cli

# every state a continuation restores: onecycle, EMA, the seed augmentation then a flip finish, mixup
RECIPE = [*NARROW_RESNET9, "scheduler=onecycle", "trainer.ema_decay=0.99", "trainer.finish_fraction=0.34",
          "trainer.mixup_alpha=0.2", "trainer.threads=1", "trainer.plots=false"]
METRICS = ("test_acc", "test_loss", "best_val_acc", "best_epoch", "final_val_acc", "epochs_run", "per_class_test_acc",
           "stopped_early")


def mini_args(mini_csv: Path, cache: Path, *extra: str) -> list:
    return [*RECIPE, f"data.path={mini_csv}", f"++data.cache_dir={cache}", *extra]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def start(args: list, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "FER2013_PATH"}
    env["PYTHONUNBUFFERED"] = "1"
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "fer_sweep", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def saved_epoch(run: Path) -> int:
    """The epoch run/checkpoints/last.pt holds (0: none)."""
    for _ in range(20):
        try:
            return int(torch.load(run / LAST_FILE, weights_only=True)["epoch"]) if (run / LAST_FILE).exists() else 0
        except (OSError, RuntimeError, EOFError):  # replaced while read
            time.sleep(0.05)
    raise AssertionError(f"{run / LAST_FILE} unreadable")


def wait_until(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before the point it was to be stopped at"
        assert time.time() < deadline, "timed out waiting for the run"
        time.sleep(0.05)


def stop(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> int:
    os.killpg(proc.pid, sig)
    return proc.wait(timeout=120)


def same_run(run: Path, reference: Path) -> dict:
    """Assert that run ended exactly as reference: history (but its timings), metrics, best.pt, test probs."""
    history, expected = (pd.read_csv(d / results.HISTORY_FILE).drop(columns="epoch_time_s") for d in (run, reference))
    pd.testing.assert_frame_equal(history, expected, check_exact=True)
    result, want = (json.loads((d / results.RESULT_FILE).read_text()) for d in (run, reference))
    assert result["status"] == "completed"
    assert {k: result[k] for k in METRICS} == {k: want[k] for k in METRICS}
    weights, reference_weights = (torch.load(d / results.CHECKPOINT_FILE, weights_only=True)["state_dict"]
                                  for d in (run, reference))
    assert all(torch.equal(weights[k], reference_weights[k]) for k in reference_weights)
    with np.load(run / results.PROBS_FILE) as a, np.load(reference / results.PROBS_FILE) as b:
        assert np.array_equal(a["probs"], b["probs"])
    assert not (run / LAST_FILE).exists()  # a completed run keeps best.pt only
    return result


def epochs_trained(log: Path, planned: int) -> list:
    text = log.read_text()
    return [k for k in range(1, planned + 1) if f"epoch {k}/{planned} " in text]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    """The uninterrupted 3-epoch fp32 run the default-suite tests compare with."""
    def make(mini_csv: Path) -> Path:
        run = tmp_path_factory.getbasetemp() / "reference"
        if not (run / results.RESULT_FILE).exists():
            proc = run_cli([*mini_args(mini_csv, cache, *FAST3), f"hydra.run.dir={run}"])
            assert proc.returncode == 0, proc.stderr[-3000:]
        return run
    return make


FAST3 = ["data.train_fraction=0.3", "trainer.epochs=3", "trainer.precision=fp32"]


def test_sigkill_mid_run_then_the_same_command_continues_to_the_same_result(tmp_path, mini_csv, cache, reference):
    ref = reference(mini_csv)
    run = tmp_path / "run"
    args = [*mini_args(mini_csv, cache, *FAST3), f"hydra.run.dir={run}"]
    proc = start(args, tmp_path / "first.log")
    wait_until(proc, lambda: saved_epoch(run) == 1)
    time.sleep(0.5)  # into epoch 2
    stop(proc)
    assert saved_epoch(run) == 1 and json.loads((run / "result.json").read_text())["status"] == "running"

    proc = start(args, tmp_path / "second.log")
    assert proc.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()[-3000:]
    said = (tmp_path / "second.log").read_text()
    assert f"resumed at epoch 1 of 3 from {run / LAST_FILE}" in said
    assert epochs_trained(tmp_path / "second.log", 3) == [2, 3]  # only the epochs after the saved one
    result = same_run(run, ref)
    assert result["restarts"] == 1 and json.loads((ref / "result.json").read_text())["restarts"] == 0


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_say_where_they_stopped_and_the_run_continues(tmp_path, mini_csv, cache, reference, sig,
                                                                         code):
    ref = reference(mini_csv)
    run = tmp_path / "run"
    args = [*mini_args(mini_csv, cache, *FAST3), f"hydra.run.dir={run}"]
    proc = start(args, tmp_path / "first.log")
    wait_until(proc, lambda: saved_epoch(run) == 1)
    assert stop(proc, sig) == code
    said = (tmp_path / "first.log").read_text()
    k = saved_epoch(run)
    assert said.strip().splitlines()[-1] == f"interrupted at epoch {k} of 3; run the same command to continue"
    assert "Traceback" not in said and k in (1, 2)

    again = run_cli(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed at epoch {k} of 3" in again.stdout + again.stderr
    assert same_run(run, ref)["restarts"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_killed_in_epoch_1_mid_run_and_in_the_test_pass_ends_as_the_uninterrupted_run(tmp_path, mini_csv, cache,
                                                                                       precision):
    """Four attempts of one 4-epoch run: SIGKILL in epoch 1 (nothing saved: it starts over), in epoch 3 (it
    continues after epoch 2), in the test pass (it only tests), then to the end. bf16 runs on any CPU."""
    fixed = mini_args(mini_csv, cache, "data.train_fraction=0.5", "trainer.epochs=4", f"trainer.precision={precision}",
                      "trainer.tta=tencrop")  # ten views: a test pass long enough to be killed in
    ref = tmp_path / "reference"
    proc = run_cli([*fixed, f"hydra.run.dir={ref}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    args = [*fixed, f"hydra.run.dir={run}"]

    proc = start(args, tmp_path / "1.log")  # in epoch 1
    wait_until(proc, lambda: "data: fer2013" in (tmp_path / "1.log").read_text())
    time.sleep(2.0)
    stop(proc)
    assert saved_epoch(run) == 0 and epochs_trained(tmp_path / "1.log", 4) == []

    proc = start(args, tmp_path / "2.log")  # in epoch 3 of 4
    wait_until(proc, lambda: saved_epoch(run) == 2)
    time.sleep(1.0)
    stop(proc)
    assert saved_epoch(run) == 2 and "resumed" not in (tmp_path / "2.log").read_text()

    proc = start(args, tmp_path / "3.log")  # in the test pass
    wait_until(proc, lambda: saved_epoch(run) == 4)
    stop(proc)
    assert saved_epoch(run) == 4 and json.loads((run / "result.json").read_text())["status"] == "running"
    assert epochs_trained(tmp_path / "3.log", 4) == [3, 4]

    proc = start(args, tmp_path / "4.log")
    assert proc.wait(timeout=300) == 0, (tmp_path / "4.log").read_text()[-3000:]
    assert "resumed at epoch 4 of 4" in (tmp_path / "4.log").read_text()
    assert epochs_trained(tmp_path / "4.log", 4) == []
    assert same_run(run, ref)["restarts"] == 2


class StopInEpoch(Callback):
    """Ctrl-C in the first batch of epoch `epoch` (after epoch - 1 was saved), as a user would press it."""

    def __init__(self, epoch: int):
        self.epoch, self.batches = epoch, 0

    def on_train_start(self, num_batches: int) -> None:
        self.batches = num_batches

    def on_batch_end(self, step: int, loss) -> None:
        if step == (self.epoch - 1) * self.batches + 1:
            raise KeyboardInterrupt


def interrupted_run(cfg, epoch: int) -> None:
    with pytest.raises(Interrupted) as stopped:
        train(cfg, callbacks=[StopInEpoch(epoch)])
    assert stopped.value.message() == f"interrupted at epoch {epoch - 1} of {cfg.trainer.epochs}; run the same " \
                                      "command to continue"


def test_another_config_is_refused_and_resume_never_starts_over(make_cfg, tmp_path):
    run = tmp_path / "run"
    interrupted_run(make_cfg(*FAST, "trainer.epochs=3", "trainer.plots=false"), 2)
    assert saved_epoch(run) == 1
    args = [*FAST, "trainer.plots=false", f"hydra.run.dir={run}", f"++data.cache_dir={tmp_path / 'cache'}"]
    proc = run_cli([*args, "trainer.epochs=4", "seed=1"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"fer_sweep: error: {run / LAST_FILE} holds a run of another config (differs in: trainer.epochs 3 -> 4, "
        "trainer.seed 0 -> 1, seed 0 -> 1); use another run folder or trainer.resume=never"]
    assert saved_epoch(run) == 1  # refused: nothing touched

    proc = run_cli([*args, "trainer.epochs=4", "seed=1", "trainer.resume=never"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed" not in proc.stdout + proc.stderr
    result = json.loads((run / "result.json").read_text())
    assert (result["epochs_run"], result["seed"], result["restarts"]) == (4, 1, 0)
    assert not (run / LAST_FILE).exists()


def test_trainer_resume_is_not_part_of_the_key_and_is_checked(make_cfg):
    from fer_sweep.app import config_hash

    assert config_hash(make_cfg(*FAST)) == config_hash(make_cfg(*FAST, "trainer.resume=never"))
    assert config_hash(make_cfg(*FAST)) != config_hash(make_cfg(*FAST, "trainer.early_stopping.patience=2"))
    with pytest.raises(ConfigError, match="trainer.resume='sometimes'; expected auto"):
        run_job(make_cfg(*FAST, "trainer.resume=sometimes"))


def test_early_stopping_stops_and_says_so(make_cfg, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="fer_sweep"):
        result = train(make_cfg(*FAST, "trainer.epochs=4", "trainer.plots=false",
                                "trainer.early_stopping.patience=1", "trainer.early_stopping.min_delta=2.0"))
    assert result["status"] == "completed" and result["stopped_early"] is True
    assert result["epochs_run"] == 2 and result["best_epoch"] == 1 and result["test_acc"] is not None
    assert "stopped early at epoch 2: no val improvement of 2 for 1 epochs" in caplog.text
    plain = train(make_cfg(*FAST, "trainer.plots=false"), tmp_path / "plain")
    assert plain["stopped_early"] is False and plain["epochs_run"] == 2


def test_early_stopping_is_refused_with_the_full_split(make_cfg):
    cfg = make_cfg(*FAST, "data.split=full", "trainer.checkpoint=last", "trainer.early_stopping.patience=2")
    with pytest.raises(ConfigError, match=r"trainer.early_stopping.patience is set but data.split=full"):
        train(cfg)


def test_an_early_stop_survives_a_restart(make_cfg, tmp_path):
    """Stopped early at epoch 2, killed before the test pass: the continued run tests, it trains no epoch 3."""
    cfg = make_cfg(*FAST, "trainer.epochs=4", "trainer.plots=false", "trainer.early_stopping.patience=1",
                   "trainer.early_stopping.min_delta=2.0")

    class KillInTestPass(Callback):
        def on_train_end(self, history) -> None:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        train(cfg, callbacks=[KillInTestPass()])
    assert saved_epoch(tmp_path / "run") == 2
    result = run_job(cfg)
    assert (result["epochs_run"], result["stopped_early"], result["restarts"]) == (2, True, 1)


def test_trackers_continue_their_run_after_a_restart(make_cfg, tmp_path):
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg(*FAST, "trainer.epochs=4", "trainer.plots=false", "logger=many")
    run = tmp_path / "run"
    interrupted_run(cfg, 3)  # epochs 1 and 2 logged and saved
    result = run_job(cfg)
    assert result["restarts"] == 1
    history = pd.read_csv(run / "history.csv")

    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments() if e.name != "Default"])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # the same run, continued
    logged = client.get_metric_history(runs[0].info.run_id, "val_acc")
    assert [m.step for m in logged] == [1, 2, 3, 4]
    assert [m.value for m in logged] == pytest.approx(history["val_acc"].tolist(), rel=1e-12)

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    scalars = events.Scalars("val/acc")
    assert [e.step for e in scalars] == [1, 2, 3, 4]
    assert [e.value for e in scalars] == pytest.approx(history["val_acc"].tolist(), rel=1e-6)


def test_a_grid_sweep_killed_mid_job_continues_that_job(tmp_path, mini_csv, cache):
    sweep = tmp_path / "sweep"
    args = ["--multirun", *mini_args(mini_csv, cache, "data.train_fraction=0.2", "trainer.epochs=3",
                                     "trainer.precision=fp32"), "seed=0,1", f"hydra.sweep.dir={sweep}"]
    proc = start(args, tmp_path / "first.log")
    wait_until(proc, lambda: saved_epoch(sweep / "1") == 1)
    stop(proc)
    assert (results.read_result(sweep / "0") or {}).get("status") == "completed"
    assert (results.read_result(sweep / "1") or {}).get("status") == "running"
    job0 = json.loads((sweep / "0" / "result.json").read_text())

    again = run_cli(args)
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr
    assert said.count("skipping (resume)") == 1 and f"resumed at epoch 1 of 3 from {sweep / '1' / LAST_FILE}" in said
    frame = pd.read_csv(sweep / "results.csv")
    assert frame["status"].tolist() == ["completed"] * 2 and frame["restarts"].tolist() == [0, 1]
    assert frame["train_time_s"][0] == job0["train_time_s"]  # job 0 was not redone
    assert frame["epochs_run"].tolist() == [3, 3] and frame["stopped_early"].tolist() == [False, False]


@pytest.mark.parametrize("how", ["ctrl_c", "sigkill"])
def test_an_interrupted_or_dead_optuna_trial_is_retried_from_its_last_checkpoint(tmp_path, mini_csv, cache, how):
    """Trial 0 stopped in its epoch 2: by Ctrl-C (the trial is failed and queued again at once), or by SIGKILL of
    the sweep (its heartbeat stops, the next sweep process fails it as stale and queues it again). The same
    command runs the retry, which continues trial 0's run and reports its epochs to its own trial."""
    sweep = tmp_path / "study"
    args = ["--multirun", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1",
            *mini_args(mini_csv, cache, "data.train_fraction=0.2", "trainer.epochs=3", "trainer.precision=fp32"),
            "optimizer.lr=tag(log, interval(1e-4, 1e-2))", f"hydra.sweep.dir={sweep}"]
    if how == "sigkill":
        args += ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3"]
    proc = start(args, tmp_path / "first.log")
    wait_until(proc, lambda: saved_epoch(sweep / "0") == 1)
    study = optuna.load_study(study_name="study", storage=open_storage(str(sweep / JOURNAL_FILE)))
    if how == "ctrl_c":
        assert stop(proc, signal.SIGINT) == 130
        said = (tmp_path / "first.log").read_text()
        k = saved_epoch(sweep / "0")
        assert "Traceback" not in said and f"interrupted at epoch {k} of 3; run the same command to continue\n" in said
        assert said.strip().splitlines()[-1].endswith("trial 0: interrupted; queued again, the same command continues it")
        assert [t.state.name for t in study.get_trials()] == ["FAIL", "WAITING"]
    else:
        stop(proc)
        k = saved_epoch(sweep / "0")
        assert [t.state.name for t in study.get_trials()] == ["RUNNING"]

    again = run_cli(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed at epoch {k} of 3" in again.stdout + again.stderr
    study = optuna.load_study(study_name="study", storage=open_storage(str(sweep / JOURNAL_FILE)))
    failed, retry = study.get_trials()
    assert failed.state.name == "FAIL" and retry.state.name == "COMPLETE" and retry.params == failed.params
    assert sorted(retry.intermediate_values) == [1, 2, 3]
    result = json.loads((sweep / "1" / "result.json").read_text())
    assert result["restarts"] == 1 and result["epochs_run"] == 3 and result["trial"]["retry_of"] == 0


class Stop(Exception):
    pass


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_a_signal_during_a_checkpoint_save_arrives_after_the_file_is_whole(tmp_path):
    """submitit's requeue handler (SIGUSR2) or Ctrl-C raising inside torch.save would break the file and turn the
    interruption into a RuntimeError; atomic writes hold such signals until the file is in place."""
    from fer_sweep import results

    def stop(signum, frame):
        raise Stop()

    previous = signal.signal(signal.SIGUSR2, stop)
    try:
        def write(f):
            torch.save({"a": torch.ones(1000)}, f)
            os.kill(os.getpid(), signal.SIGUSR2)  # arrives mid-save
            torch.save({"b": torch.zeros(1000)}, f)

        with pytest.raises(Stop):
            results.atomic_write(tmp_path / "last.pt", write)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["a"], torch.ones(1000))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
