"""`hydra/launcher=ray` (fer_sweep/sweep/ray_launcher.py) on a real local Ray: the CLI in a subprocess starts
Ray for its sweep (2 CPUs, no dashboard) and stops it when it exits. Ray's start alone takes 10-20 s on a
busy 2-core machine, so one sweep (and the check that fails before any job) runs in the default suite, the
rest are marked slow."""
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import optuna
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from fer_sweep import results
from fer_sweep.app import CONFIG_DIR
from fer_sweep.sweep.storage import open_storage
from tests.conftest import ROOT, run_cli

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is an extra: pip install 'fer_sweep[ray]'")

TINY = ["data=synthetic", "data.n_train=140", "data.n_public=35", "data.n_private=35", "trainer.epochs=1",
        "trainer.batch_size=64", "trainer.threads=1", "trainer.plots=false"]
LOCAL_RAY = ["hydra/launcher=ray", "hydra.launcher.init.num_cpus=2"]
# a job long enough to be killed in the middle of its training (about 10 s of epochs on one core)
LONGER = ["data=synthetic", "data.n_train=700", "data.n_public=70", "data.n_private=70", "trainer.epochs=2",
          "trainer.batch_size=64", "trainer.threads=1", "trainer.plots=false"]


def test_ray_configs_compose_and_set_the_optuna_batch():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        local = compose("config", overrides=["hparams_search=optuna_lr", "hydra/launcher=ray"],
                        return_hydra_config=True)
        gpu = compose("config", overrides=["hparams_search=optuna_lr", "hydra/launcher=ray_gpu",
                                           "hydra.launcher.address=auto"], return_hydra_config=True)
    assert local.hydra.launcher._target_ == "hydra_plugins.fer_sweep_plugins.ray_launcher.RayLauncher"
    assert (local.hydra.launcher.address, local.hydra.launcher.num_gpus, local.hydra.sweeper.n_jobs) == (None, 0, -1)
    launcher = gpu.hydra.launcher
    assert (launcher.address, launcher.num_cpus, launcher.num_gpus, launcher.max_retries) == ("auto", 2, 0.25, 2)
    assert gpu.hydra.sweeper.n_jobs == 4  # four trials at once share the GPU


def test_without_ray_installed_the_sweep_says_which_extra_to_install(tmp_path):
    fake = tmp_path / "no_ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli(["--multirun", "hydra/launcher=ray", *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                   env_extra=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "fer_sweep: error: hydra/launcher=ray needs Ray, which is not installed: pip install 'fer_sweep[ray]'")
    assert "Traceback" not in proc.stderr


@needs_ray
def test_grid_sweep_on_a_local_ray_records_the_failed_job_and_completes_the_others(tmp_path):
    # 0.5 GPU a job on a Ray told it has one GPU: two jobs share it (no GPU here: the jobs train on the CPU,
    # but Ray schedules them only against the declared GPU, so a lost option would leave them waiting)
    proc = run_cli(["--multirun", *LOCAL_RAY, "hydra.launcher.init.num_gpus=1", "hydra.launcher.num_gpus=0.5",
                    *TINY, "optimizer.lr=0.001,-1,0.002", f"hydra.sweep.dir={tmp_path}"], timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]  # one job failed: reported, then the exit code says so
    assert "Sweep finished: 2 completed, 1 failed" in proc.stdout
    console = proc.stdout + proc.stderr
    assert "Started a local Ray instance" in console and "num_gpus=0.5" in console
    assert "job 1 failed: ValueError: Invalid learning rate: -1" in console  # the worker's line, shown
    frame = pd.read_csv(tmp_path / "results.csv")
    assert frame["job"].tolist() == [0, 1, 2]
    assert frame["status"].tolist() == ["completed", "failed", "completed"]
    assert frame["optimizer.lr"].tolist() == [0.001, -1, 0.002] and "Invalid learning rate" in frame["error"][1]
    assert (frame["best_val_acc"].notna() == [True, False, True]).all()
    assert (tmp_path / "report.md").exists()


@needs_ray
def test_a_job_asking_for_more_than_the_local_ray_has_is_an_error_not_a_wait(tmp_path):
    proc = run_cli(["--multirun", *LOCAL_RAY, "hydra.launcher.init.num_gpus=0", "hydra.launcher.num_gpus=1", *TINY,
                    f"hydra.sweep.dir={tmp_path}"], timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "fer_sweep: error: hydra.launcher.num_gpus=1 per job, but the local Ray has 0 GPUs "
        "(hydra.launcher.init.num_gpus, CUDA_VISIBLE_DEVICES); no job could start")
    assert "Traceback" not in proc.stderr and not (tmp_path / "0").exists()


# --- a worker killed in the middle of a job ------------------------------------------------------------------

def worker_of(job_dir: Path) -> Optional[int]:
    """The pid of the Ray worker running the job of job_dir: the process holding the job's app.log open."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
                continue
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                if os.readlink(fd).startswith(str(job_dir) + os.sep):
                    return int(pid)
        except OSError:
            continue
    return None


def kill_mid_training(job_dir: Path, sweep: subprocess.Popen, timeout: float = 180) -> int:
    """SIGKILL the worker of job_dir once the job has begun training (its data is loaded, its result.json
    says running)."""
    deadline = time.monotonic() + timeout
    log = job_dir / "app.log"
    while time.monotonic() < deadline and sweep.poll() is None:
        pid = worker_of(job_dir)
        if (pid is not None and (results.read_result(job_dir) or {}).get("status") == "running"
                and log.is_file() and "data: synthetic" in log.read_text()):
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.2)
    pytest.fail(f"no Ray worker ran {job_dir} within {timeout} s")


def start_sweep(tmp_path: Path, sweep_dir: Path, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "FER2013_PATH"}
    env["PYTHONUNBUFFERED"] = "1"
    with open(tmp_path / f"{sweep_dir.name}.out", "a") as out:
        return subprocess.Popen([sys.executable, "-m", "fer_sweep", "--multirun", *LOCAL_RAY, *LONGER,
                                 "optimizer.lr=0.001,0.002", f"hydra.sweep.dir={sweep_dir}", *extra],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)


def finish(sweep: subprocess.Popen, timeout: float = 300) -> int:
    try:
        return sweep.wait(timeout=timeout)
    finally:
        if sweep.poll() is None:  # a hung sweep: its process group (the driver and the Ray it started)
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()


@needs_ray
@pytest.mark.slow
def test_a_killed_workers_job_is_run_again_by_ray(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep(tmp_path, sweep_dir)
    try:
        kill_mid_training(sweep_dir / "0", sweep)
    finally:
        returncode = finish(sweep)
    output = (tmp_path / "sweep.out").read_text()
    assert returncode == 0, output[-3000:]
    assert "Sweep finished: 2 completed" in output
    frame = pd.read_csv(sweep_dir / "results.csv")
    assert frame["status"].tolist() == ["completed", "completed"]
    log_text = (sweep_dir / "0" / "app.log").read_text()
    assert log_text.count("data: synthetic") == 2  # job 0 started twice: killed, then run again from the start
    assert (sweep_dir / "1" / "app.log").read_text().count("data: synthetic") == 1


@needs_ray
@pytest.mark.slow
def test_a_job_whose_worker_dies_past_its_retries_fails_alone_and_a_rerun_resumes(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep(tmp_path, sweep_dir, "hydra.launcher.max_retries=0")
    try:
        kill_mid_training(sweep_dir / "0", sweep)
    finally:
        returncode = finish(sweep)
    output = (tmp_path / "sweep.out").read_text()
    assert returncode == 1, output[-3000:]
    assert "Sweep finished: 1 completed, 1 failed" in output and "Traceback" not in output
    assert "job 0 failed: RuntimeError: Ray worker died" in output
    frame = pd.read_csv(sweep_dir / "results.csv")
    assert frame["status"].tolist() == ["failed", "completed"]
    assert frame["error"][0].startswith("RuntimeError: Ray worker died")

    # the same command again: job 1 is skipped (resume), job 0 runs to the end
    rerun = start_sweep(tmp_path, sweep_dir, "hydra.launcher.max_retries=0")
    assert finish(rerun) == 0, (tmp_path / "sweep.out").read_text()[-3000:]
    output = (tmp_path / "sweep.out").read_text()[len(output):]
    assert "already completed for this config: skipping (resume)" in output
    assert pd.read_csv(sweep_dir / "results.csv")["status"].tolist() == ["completed", "completed"]


@needs_ray
@pytest.mark.slow
def test_optuna_sweep_on_a_local_ray_reports_epochs_to_its_trials(tmp_path):
    proc = run_cli(["--multirun", *LOCAL_RAY, "hydra/sweeper=optuna", *TINY, "trainer.epochs=2",
                    "optimizer.lr=tag(log, interval(1e-4, 1e-1))", "hydra.sweeper.n_trials=3",
                    "hydra.launcher.n_jobs=2", "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.pruner.name=median",
                    f"hydra.sweep.dir={tmp_path}"], timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "results.csv")
    assert frame["trial"].tolist() == [0, 1, 2]
    assert set(frame["trial_state"]) <= {"COMPLETE", "PRUNED"}
    study = optuna.load_study(study_name=tmp_path.name, storage=open_storage(str(tmp_path / "optuna_journal.log")))
    assert len(study.trials) == 3
    # every trial told the study its epochs from its Ray worker: what the pruner decides on
    assert all(t.intermediate_values for t in study.trials)
