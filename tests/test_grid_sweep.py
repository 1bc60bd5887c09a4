"""Grid multiruns as a user runs them: results.csv, the report, failures that don't stop a sweep, resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from fer_sweep import results
from fer_sweep.report import main as report_main
from fer_sweep.report import pivot, summarize
from tests.conftest import ROOT, run_cli

TINY = ["data=synthetic", "data.n_train=140", "data.n_public=35", "data.n_private=35", "trainer.epochs=1",
        "trainer.batch_size=64", "trainer.threads=1", "trainer.plots=false"]
COLUMNS = ["job", "model", "scheduler", "optimizer", "augmentation", "data", "seed", "status", "error",
           "best_val_acc", "test_acc", "test_loss", "train_time_s", "params", "output_dir"]


def test_two_by_two_grid(tmp_path, capsys):
    proc = run_cli(["--multirun", *TINY, "model=cnn,resnet9", "scheduler=none,onecycle",
                    f"hydra.sweep.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr
    assert "Sweep finished: 4 completed" in proc.stdout
    frame = pd.read_csv(tmp_path / "results.csv")
    assert len(frame) == 4 and set(COLUMNS) <= set(frame.columns)
    assert frame["job"].tolist() == [0, 1, 2, 3]
    assert sorted(zip(frame["model"], frame["scheduler"])) == [("cnn", "none"), ("cnn", "onecycle"),
                                                               ("resnet9", "none"), ("resnet9", "onecycle")]
    assert (frame["status"] == "completed").all() and (frame["data"] == "synthetic").all()
    assert frame["trainer.epochs"].tolist() == [1, 1, 1, 1]  # overridden parameters get their own columns
    assert "| cnn |" in (tmp_path / "report.md").read_text()

    assert report_main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| model | none | onecycle |" in printed and "| resnet9 |" in printed
    assert (tmp_path / "report.png").exists()


def test_failed_job_does_not_stop_the_sweep_and_resume_reruns_it(tmp_path):
    args = ["--multirun", *TINY, "optimizer.lr=0.001,-1,0.002", f"hydra.sweep.dir={tmp_path}"]
    proc = run_cli(args)
    assert proc.returncode == 1
    assert "Sweep finished: 2 completed, 1 failed" in proc.stdout
    assert "job 1 failed: ValueError: Invalid learning rate: -1" in proc.stdout + proc.stderr  # as it fails
    assert "Traceback" not in proc.stderr  # one line says why the sweep failed, no Hydra internals
    assert proc.stderr.strip().splitlines()[-1].startswith("Sweep failed: 1 of 3 jobs failed")
    frame = pd.read_csv(tmp_path / "results.csv")
    assert frame["status"].tolist() == ["completed", "failed", "completed"]
    assert "Invalid learning rate: -1" in frame["error"][1]
    assert "Failed or diverged jobs" in (tmp_path / "report.md").read_text()

    first_times = frame["train_time_s"].tolist()
    again = run_cli(args)  # resume: completed jobs are skipped, the failed one runs (and fails) again
    assert again.returncode != 0
    assert (again.stdout + again.stderr).count("skipping (resume)") == 2
    frame2 = pd.read_csv(tmp_path / "results.csv")
    assert frame2["train_time_s"][0] == first_times[0] and frame2["train_time_s"][2] == first_times[2]
    assert len(frame2) == 3


def test_changed_config_is_not_skipped(tmp_path):
    run_cli(["--multirun", *TINY, "seed=0", f"hydra.sweep.dir={tmp_path}"])
    proc = run_cli(["--multirun", *TINY, "seed=1", f"hydra.sweep.dir={tmp_path}"])
    assert "skipping (resume)" not in proc.stdout + proc.stderr
    assert json.loads((tmp_path / "0" / "result.json").read_text())["seed"] == 1


def test_sigkill_half_way_then_resume(tmp_path):
    args = [sys.executable, "-m", "fer_sweep", "--multirun", *TINY, "seed=0,1,2", f"hydra.sweep.dir={tmp_path}"]
    env = {k: v for k, v in os.environ.items() if k != "FER2013_PATH"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while (results.read_result(tmp_path / "0") or {}).get("status") != "completed" and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "2" / "result.json").exists(), "the sweep finished before it could be killed"
    done_before = json.loads((tmp_path / "0" / "result.json").read_text())

    resumed = run_cli(args[3:])
    assert resumed.returncode == 0, resumed.stderr
    frame = pd.read_csv(tmp_path / "results.csv")
    assert frame["status"].tolist() == ["completed"] * 3
    assert frame["train_time_s"][0] == done_before["train_time_s"]  # job 0 was not redone


def test_report_mean_std_over_seeds():
    frame = pd.DataFrame({"model": ["cnn"] * 3 + ["resnet9"], "scheduler": ["none"] * 4,
                          "status": ["completed"] * 3 + ["failed"], "test_acc": [0.6, 0.7, 0.8, None]})
    summary = summarize(frame)
    assert summary["n"].tolist() == [3]  # the failed resnet9 job is left out
    assert summary["mean"][0] == pytest.approx(0.7) and summary["std"][0] == pytest.approx(0.1)
    assert pivot(summary, "model", "scheduler").loc["cnn", "none"] == "0.700 ± 0.100 (n=3)"


def test_report_cells_follow_the_precision_a_run_used_not_the_one_asked_for():
    frame = pd.DataFrame({"model": ["resnet9"] * 4, "scheduler": ["onecycle"] * 4, "status": ["completed"] * 4,
                          "trainer.precision": [None, "fp32", "fp32", "bf16"], "precision": ["fp32"] * 3 + ["bf16"],
                          "seed": [0, 1, 2, 0], "test_acc": [0.66, 0.67, 0.68, 0.69]})
    summary = summarize(frame)
    assert summary.attrs["split_by"] == ["precision"]
    assert summary[["precision", "n"]].values.tolist() == [["bf16", 1], ["fp32", 3]]


def test_report_averages_only_over_seeds_and_keeps_other_settings_apart(tmp_path, capsys):
    frame = pd.DataFrame({"model": ["cnn"] * 5, "scheduler": ["none"] * 5, "status": ["completed"] * 5,
                          "optimizer.lr": [0.001, 0.001, 0.1, 0.1, 0.1], "seed": [0, 1, 0, 1, 2],
                          "test_acc": [0.6, 0.7, 0.2, 0.3, 0.4]})
    summary = summarize(frame)
    assert summary.attrs["split_by"] == ["optimizer.lr"]
    assert summary[["optimizer.lr", "n"]].values.tolist() == [[0.001, 2], [0.1, 3]]  # not one cell of n=5
    assert summary["mean"].tolist() == pytest.approx([0.65, 0.3])
    table = pivot(summary, "model", "scheduler")
    assert table.loc[("cnn", 0.1), "none"] == "0.300 ± 0.100 (n=3)"

    frame.to_csv(tmp_path / "results.csv", index=False)
    report = [str(tmp_path / "results.csv"), "--chart", str(tmp_path / "report.png")]
    assert report_main(report) == 0
    out, err = capsys.readouterr()
    assert "| model | optimizer.lr | none |" in out and "| cnn | 0.001 | 0.650 ± 0.071 (n=2) |" in out
    assert "split by optimizer.lr" in err and "--filter" in err
    assert report_main([*report, "--filter", "optimizer.lr=1e-3"]) == 0
    out, err = capsys.readouterr()
    assert "| model | none |" in out and "| cnn | 0.650 ± 0.071 (n=2) |" in out and "split by" not in err
    assert report_main([*report, "--rows", "optimizer.lr"]) == 0
    assert "| 0.1 | 0.300 ± 0.100 (n=3) |" in capsys.readouterr().out
    assert report_main([*report, "--filter", "lr=1"]) == 2
    assert "no column 'lr'" in capsys.readouterr().err


def test_report_errors_are_clear(tmp_path, capsys):
    assert report_main([str(tmp_path / "nope")]) == 2
    assert "no such sweep folder" in capsys.readouterr().err
