"""A flat per-job cost (issue 51): each job adds its own row to results.csv without reading the other jobs'
files, the per-job text equals the full rebuild's, Hydra composes each job once, and a sweep says how far it is."""
import builtins
import json
import re
from pathlib import Path

import pandas as pd

from fer_sweep import results
from fer_sweep.sweep import results_csv
from fer_sweep.sweep.aggregate import MANIFEST_FILE, Manifest, write_results_csv
from tests.conftest import run_cli

TINY = ["data=synthetic", "data.n_train=70", "data.n_public=35", "data.n_private=35", "trainer.epochs=1",
        "trainer.batch_size=64", "trainer.threads=1", "trainer.plots=false", "model.name=cnn"]


def result(sweep: Path, job: int, **extra):
    out = sweep / str(job)
    return {"job": job, "status": "completed", "best_val_acc": 0.25 + job / 1000, "test_acc": 0.5,
            "best_epoch": 2, "seed": job, "choices": {"model": "cnn", "scheduler": "none"},
            "overrides": [f"seed={job}"], "confusion_matrix": [[1, 0], [0, 1]], "output_dir": str(out), **extra}


def test_a_jobs_row_is_added_from_the_csv_alone_and_equals_the_rebuild(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    for job in (0, 1, 3, 4):
        results.write_json(sweep / str(job) / results.RESULT_FILE, result(sweep, job))
    Manifest(sweep, [sweep / str(j) for j in (0, 1, 2, 3, 4)])
    write_results_csv(sweep)

    opened = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(Path(file).name)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    # job 2 ends, out of order, with a parameter no other job has and a failure; then job 0 is run again
    late = result(sweep, 2, status="failed", error="RuntimeError: boom, twice\nsecond line",
                  overrides=["seed=2", "optimizer.lr=0.01"], best_epoch=None, test_acc=None, tags=["a", "b"])
    rows = results_csv.update(sweep, late)
    again = result(sweep, 0, test_acc=0.75)
    results_csv.update(sweep, again)
    monkeypatch.setattr(builtins, "open", real_open)
    assert results.RESULT_FILE not in opened, opened  # only results.csv (and its lock) were read
    assert len(rows) == 5

    incremental = (sweep / "results.csv").read_text()
    for job, data in ((2, late), (0, again)):
        results.write_json(sweep / str(job) / results.RESULT_FILE, data)
    write_results_csv(sweep)
    assert (sweep / "results.csv").read_text() == incremental
    frame = pd.read_csv(sweep / "results.csv")
    assert frame["job"].tolist() == [0, 1, 2, 3, 4]
    assert frame["test_acc"].tolist()[:2] == [0.75, 0.5] and pd.isna(frame.loc[2, "test_acc"])
    assert frame.loc[2, "optimizer.lr"] == 0.01 and frame.loc[2, "error"].endswith("second line")
    assert frame["best_epoch"].dropna().tolist() == [2, 2, 2, 2]  # ints stay ints beside an empty cell
    assert list(frame.columns).index("optimizer.lr") < list(frame.columns).index("status")


def test_without_results_csv_the_update_rebuilds_from_the_manifest(tmp_path):
    sweep = tmp_path / "sweep"
    for job in (0, 1):
        results.write_json(sweep / str(job) / results.RESULT_FILE, result(sweep, job))
    results.write_json(sweep / "9" / results.RESULT_FILE, result(sweep, 9))  # an older command's job
    Manifest(sweep, [sweep / "0", sweep / "1", sweep / "2"])
    results_csv.update(sweep, result(sweep, 2))
    assert pd.read_csv(sweep / "results.csv")["job"].tolist() == [0, 1, 2]


def test_a_real_sweep_writes_per_job_rows_equal_to_the_rebuild_and_prints_its_progress(tmp_path):
    sweep = tmp_path / "sweep"
    # Hydra calls on_job_end callbacks last-listed first: fer_sweep's callback listed again after the snapshot
    proc = run_cli(["--multirun", *TINY, "seed=0,1,2", f"hydra.sweep.dir={sweep}", "~hydra.callbacks.aggregate",
                    "+hydra.callbacks.snapshot._target_=tests.sweep_snapshot.Snapshot",
                    "+hydra.callbacks.rows._target_=fer_sweep.sweep.callbacks.AggregateResults"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("jobs ")]
    assert [line.split(" (")[0] for line in lines] == ["jobs 1/3 done", "jobs 2/3 done", "jobs 3/3 done"]
    assert re.fullmatch(r"jobs 1/3 done \(1 completed, 0 failed\), about \d+ (s|min) left", lines[0]), lines
    assert lines[-1] == "jobs 3/3 done (3 completed, 0 failed)"
    assert len(pd.read_csv(sweep / "results.csv.after-0")) == 1
    after_last = (sweep / "results.csv.after-2").read_text()
    write_results_csv(sweep)
    assert (sweep / "results.csv").read_text() == after_last
    assert json.loads((sweep / MANIFEST_FILE).read_text())["jobs"] == ["0", "1", "2"]


def test_a_bad_choice_in_a_later_job_still_stops_the_sweep_before_any_job(tmp_path):
    """Hydra's check of every job's config before launching now composes only jobs with new overrides."""
    sweep = tmp_path / "sweep"
    proc = run_cli(["--multirun", *TINY, "seed=0,1", "augmentation=seed,nosuchaugmentation",
                    f"hydra.sweep.dir={sweep}"])
    assert proc.returncode != 0
    assert "nosuchaugmentation" in proc.stderr
    assert not list(sweep.glob("*/result.json"))


def test_the_bench_measures_the_overhead_of_real_sweeps(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli(["--sweep-overhead", "--sizes", "2,3", "--aggregate-jobs", "40", "--output", str(out)],
                   module="fer_sweep.bench")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert [s["jobs"] for s in res["sweeps"]] == [2, 3]
    for sweep in res["sweeps"]:
        assert sweep["compose_calls"] == sweep["jobs"] + 1  # one check of `seed=...`, then one per job
        assert sweep["timers"]["aggregation"]["calls"] == sweep["jobs"]
        assert 0 < sweep["overhead_sweep_s"] < sweep["wall_s"]
    assert res["aggregation"]["jobs"] == 40 and 0 < res["aggregation"]["update_median_s"] < 1
    assert "overhead per job in the sweep at 3 jobs vs 2" in proc.stdout


def test_report_is_the_full_rebuild_of_a_sweeps_results_csv(tmp_path):
    """A sweep killed before its end keeps the rows it added; `fer_sweep.report SWEEP` rewrites results.csv whole
    from every job's result.json."""
    sweep = tmp_path / "sweep"
    for job in (0, 1, 2):
        results.write_json(sweep / str(job) / results.RESULT_FILE, result(sweep, job))
    Manifest(sweep, [sweep / str(j) for j in (0, 1, 2)])
    (sweep / "results.csv").write_text("job,status\n0,running\n")  # what a killed sweep left
    proc = run_cli([str(sweep), "--format", "csv"], module="fer_sweep.report")
    assert proc.returncode == 0, proc.stderr
    rebuilt = pd.read_csv(sweep / "results.csv")
    assert rebuilt["job"].tolist() == [0, 1, 2] and set(rebuilt["status"]) == {"completed"}
