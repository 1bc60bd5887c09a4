"""A job that SLURM preempts (or that nears its time limit) is requeued and completes (issue 50, item 4).

SLURM tells a job with USR2 (submitit's preemption signal); submitit then asks the job's `checkpoint()`
(hydra-submitit-launcher's: the same job again, as a DelayedSubmission), saves it and requeues it. submitit's
local executor does the same on one machine: the task exits with code 144 and its controller starts it again.
Here a real `--multirun` through `hydra/launcher=submitit_local` is sent that signal in its second epoch.
"""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FAST, ROOT

EPOCHS = 3


def job_text(sweep: Path) -> str:
    """What the sweep's jobs said: hydra's job logs and submitit's task logs."""
    files = [*sweep.glob("*/*.log"), *sweep.glob(".submitit/*/*_log.*")]
    return "\n".join(f.read_text(errors="replace") for f in files if f.is_file())


def submitit_tasks(sweep: Path):
    """The pids of the submitit tasks running this sweep's jobs (their command line names its .submitit folder)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in cmdline and any(str(sweep).encode() in part for part in cmdline):
            pids.append(int(proc.name))
    return pids


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (exit {proc.returncode}) before {what}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_submitit_job_interrupted_by_the_preemption_signal_is_requeued_and_completes(tmp_path):
    sweep = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if k != "FER2013_PATH"}
    env.update(PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "fer_sweep", "--multirun", "hydra/launcher=submitit_local", *FAST,
               "model=cnn", f"trainer.epochs={EPOCHS}", "trainer.plots=false", f"hydra.sweep.dir={sweep}"]
    with open(tmp_path / "sweep.out", "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            wait_for(lambda: f"epoch 1/{EPOCHS}" in job_text(sweep), 300, "the job's first epoch", proc)
            [task] = wait_for(lambda: submitit_tasks(sweep), 30, "the job's submitit task", proc)
            os.kill(task, signal.SIGUSR2)  # what SLURM sends signal_delay_s before the limit, or on preemption
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    said = (tmp_path / "sweep.out").read_text() + job_text(sweep)
    assert proc.returncode == 0, said[-3000:]
    assert "Requeued job" in said and "this job is preempted" in said  # submitit's own lines
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs_run"] == EPOCHS
    assert not submitit_tasks(sweep)
    if importlib.util.find_spec("fer_sweep.engine.resume") is not None:
        # With last.pt (issue 50, items 1-2; fer_sweep/engine/resume.py) the requeued job continues from its last
        # finished epoch instead of starting over.
        assert "resumed at epoch" in said, said[-3000:]
    else:
        # Before last.pt: the requeued job starts over in its folder and completes.
        assert said.count(f"epoch 1/{EPOCHS}") >= 2, said[-3000:]


def test_the_slurm_launcher_requeues_jobs_near_their_time_limit():
    """max_num_timeout > 0: hydra-submitit-launcher's default (0) fails a job at its time limit; ours requeues it
    (signal_delay_s before the limit) up to that many times."""
    from hydra import compose, initialize_config_dir

    from fer_sweep.app import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm_gpu"], return_hydra_config=True)
    assert cfg.hydra.launcher.max_num_timeout >= 1 and cfg.hydra.launcher.signal_delay_s >= 60
