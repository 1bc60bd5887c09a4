"""Sweep records you can trust (issue #16): the resume key, stale records, exit status and failure lines."""
import json
import shutil

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict

import fer_sweep.app as app
from fer_sweep import results
from fer_sweep.app import CONFIG_DIR, run_job
from fer_sweep.report import main as report_main
from fer_sweep.sweep.aggregate import MANIFEST_FILE, Manifest, results_frame
from fer_sweep.sweep.callbacks import AggregateResults
from fer_sweep.sweep.finish import Tally, failure
from tests.conftest import run_cli

TRAINING = ["trainer.epochs=1", "trainer.batch_size=64", "trainer.threads=1", "trainer.plots=false"]
SYNTHETIC = ["data=synthetic", "data.n_train=140", "data.n_public=35", "data.n_private=35", *TRAINING]
FALLBACK = ["data.synthetic.n_train=140", "data.synthetic.n_public=35", "data.synthetic.n_private=35",
            *TRAINING]  # data=fer2013 (the default) finding no file


def job(make_cfg, tmp_path, *overrides):
    """run_job on one run folder (tmp_path/run), as a sweep job there would; returns result.json's content."""
    return run_job(make_cfg(*overrides, output_dir=tmp_path / "run"))


# --- 1. the resume key is what the job resolved to at run time -------------------------------------------

def test_resume_key_covers_the_data_source_and_its_content(make_cfg, tmp_path, folder_sample, monkeypatch,
                                                           caplog):
    data = tmp_path / "faces"
    shutil.copytree(folder_sample, data)
    monkeypatch.delenv("FER2013_PATH", raising=False)
    first = job(make_cfg, tmp_path, *FALLBACK)
    assert first["dataset"] == "synthetic"  # no data anywhere: the synthetic fallback

    monkeypatch.setenv("FER2013_PATH", str(data))  # the same config now finds real data
    real = job(make_cfg, tmp_path, *FALLBACK)
    assert real["dataset"] == "fer2013" and real["data_source"] == str(data)

    caplog.set_level("INFO", logger="fer_sweep")
    other_cache = job(make_cfg, tmp_path, *FALLBACK, f"data.cache_dir={tmp_path / 'other_cache'}")
    assert "skipping (resume)" in caplog.text  # where the parsed data is cached is no part of the job
    assert other_cache["train_time_s"] == real["train_time_s"]

    next(data.glob("train/happy/*.jpg")).unlink()  # the same path, other content
    changed = job(make_cfg, tmp_path, *FALLBACK)
    assert changed["data_fingerprint"] != real["data_fingerprint"]
    assert changed["split_sizes"] != real["split_sizes"]


def test_resume_key_covers_the_resolved_precision(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr("fer_sweep.engine.precision.bf16_is_fast", lambda device: False)
    assert job(make_cfg, tmp_path, *SYNTHETIC, "trainer.precision=auto")["precision"] == "fp32"
    monkeypatch.setattr("fer_sweep.engine.precision.bf16_is_fast", lambda device: True)  # another machine
    bf16 = job(make_cfg, tmp_path, *SYNTHETIC, "trainer.precision=auto")
    assert bf16["precision"] == "bf16"  # not the fp32 row of the same config
    again = job(make_cfg, tmp_path, *SYNTHETIC, "trainer.precision=auto")
    assert again["train_time_s"] == bf16["train_time_s"]  # and now it resumes


# --- 2. no stale records -----------------------------------------------------------------------------------

def test_a_started_job_replaces_its_previous_record_before_it_trains(make_cfg, tmp_path, monkeypatch):
    out = tmp_path / "run"
    job(make_cfg, tmp_path, *SYNTHETIC)
    assert (out / results.CHECKPOINT_FILE).exists()

    def killed(cfg, output_dir, callbacks, resume=None):  # what a rerun sees when it starts training, then SIGKILL
        record = results.read_result(output_dir)
        assert record["status"] == "running" and record["seed"] == 1 and record["config_hash"]
        assert not (output_dir / results.CHECKPOINT_FILE).exists()
        assert not (output_dir / results.HISTORY_FILE).exists()
        raise KeyboardInterrupt
    monkeypatch.setattr(app, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        job(make_cfg, tmp_path, *SYNTHETIC, "seed=1")
    assert results.read_result(out)["status"] == "running"
    assert results_frame(tmp_path)["status"].tolist() == ["running"]  # not the old run's "completed"
    monkeypatch.undo()
    assert job(make_cfg, tmp_path, *SYNTHETIC, "seed=1")["status"] == "completed"  # resume runs it


def test_a_smaller_sweep_in_a_reused_folder_reports_only_its_own_jobs(tmp_path):
    run_cli(["--multirun", *SYNTHETIC, "seed=0,1", f"hydra.sweep.dir={tmp_path}"])
    proc = run_cli(["--multirun", *SYNTHETIC, "seed=2", f"hydra.sweep.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Sweep finished: 1 completed." in proc.stdout
    frame = pd.read_csv(tmp_path / "results.csv")
    assert frame["seed"].tolist() == [2] and (tmp_path / "1" / "result.json").exists()  # job 1 is an old one
    assert "Jobs: 1 completed" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / MANIFEST_FILE).read_text()) == {"jobs": ["0"]}


def write_jobs(sweep_dir, n):
    for i in range(n):
        results.write_json(sweep_dir / str(i) / results.RESULT_FILE, {
            "job": i, "status": "completed", "test_acc": 0.5,
            "choices": {"model": "cnn", "scheduler": "none"}, "output_dir": str(sweep_dir / str(i))})


def test_the_callback_honours_the_manifest_and_old_folders_report_whole(tmp_path, capsys):
    write_jobs(tmp_path, 2)
    assert report_main([str(tmp_path)]) == 0  # a folder from before manifests: every job folder counts
    assert "0.500 ± 0.000 (n=2)" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "results.csv")["job"].tolist() == [0, 1]  # report is the full rebuild
    (tmp_path / "results.csv").unlink()

    Manifest(tmp_path, [tmp_path / "1"])
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.runtime.output_dir = str(tmp_path / "1")  # job 1 just ended; no results.csv yet: rebuilt first
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        AggregateResults().on_job_end(cfg, job_return=None)
    finally:
        HydraConfig.instance().cfg = saved
    assert pd.read_csv(tmp_path / "results.csv")["job"].tolist() == [1]


# --- 9, 10. one exit rule; a failed job is one line, a failed sweep one line and no traceback -----------

def test_the_exit_rule():
    assert failure(Tally(completed=2, failed=0, total=2), 0.0) is None
    assert "1 of 3 jobs failed" in failure(Tally(2, 1, 3), 0.0)  # the grid's default: any failure
    assert failure(Tally(2, 1, 3), 0.5) is None  # the Optuna sweeper's default tolerates it
    assert "no job completed" in failure(Tally(0, 2, 2), 1.0)  # never exit 0 with nothing completed
    assert "no job completed" in failure(Tally(0, 0, 0), 1.0)


@pytest.mark.parametrize("sweeper", [["optimizer.lr=-1,-2"],
                                     ["hydra/sweeper=optuna", "optimizer.lr=choice(-1,-2)",
                                      "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.name=grid"]],
                         ids=["grid", "optuna"])
def test_a_sweep_where_nothing_completed_exits_non_zero(tmp_path, sweeper):
    proc = run_cli(["--multirun", *SYNTHETIC, *sweeper, "hydra.sweeper.max_failure_rate=1.0",
                    f"hydra.sweep.dir={tmp_path}"])
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("Sweep failed: no job completed (2 of 2 failed)")
    log = proc.stdout + proc.stderr
    for n in (0, 1):  # (Optuna's grid sampler draws the points in its own order)
        assert f"job {n} failed: ValueError: Invalid learning rate: -" in log
        job_log = next((tmp_path / str(n)).glob("*.log")).read_text()
        assert f"job {n} failed: ValueError" in job_log
    assert pd.read_csv(tmp_path / "results.csv")["status"].tolist() == ["failed", "failed"]
