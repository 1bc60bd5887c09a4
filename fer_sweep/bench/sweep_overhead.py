"""--sweep-overhead: what the sweep framework itself costs per job, and whether that stays flat as a sweep grows.

For each size N (default 10, 100, 1,000) one real grid sweep runs, `python -m fer_sweep --multirun ... seed=range(0,N)`,
of tiny jobs (JOB: 70 synthetic faces, one epoch of a width-4 resnet9, one thread), with timers around its steps
(sweep_timers.py). Per size it reports:

- overhead per job, in the sweep: from the sweeper's start (multirun.yaml written) to the last job's end, less the
  jobs' train_time_s, per job: what the framework costs a job, work done before the first job included (Hydra
  composing every job's config to check it, for one), process start and the sweep's end left out;
- overhead per job, steady: the mean gap between consecutive jobs' ends (their result.json written) less the later
  job's own train_time_s: what the n-th job costs beyond its training, once jobs run;
- overhead per job, whole command: (wall time - the jobs' train_time_s) / N, process start and end included;
- where a job's overhead goes, per job: Hydra composing configs, Hydra's job setup (job folder, .hydra/*.yaml,
  logging), the job outside its training (resume key, records, trackers), and the per-job results.csv update
  with the progress line (aggregation); data from the cache is inside train_time_s and shown apart.

Then, in a folder of A (default 5,000) synthetic jobs (a real job's result.json, copied), the time of one
aggregation after a job (the incremental row update) and of one full rebuild of results.csv.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

from fer_sweep import results

JOB = ["data=synthetic", "data.n_train=70", "data.n_public=35", "data.n_private=35", "model=resnet9",
       "model.base_width=4", "trainer.epochs=1", "trainer.batch_size=64", "trainer.threads=1", "trainer.plots=false",
       "trainer.device=cpu", "trainer.precision=fp32"]
UPDATES = 7  # incremental updates timed at the aggregation size (the median and the slowest are reported)


def bench_sweep_overhead(sizes: Sequence[int], aggregate_jobs: int, workdir: Path,
                         log: Callable[[str], None]) -> Dict[str, Any]:
    res: Dict[str, Any] = {"job": " ".join(JOB), "sweeps": []}
    template = None
    for n in sizes:
        log(f"a sweep of {n} jobs...")
        sweep = time_sweep(n, workdir / f"sweep_{n}")
        log(f"  {n} jobs: {sweep['wall_s']:.1f} s wall, {sweep['train_s']:.1f} s training, overhead per job "
            f"{sweep['overhead_sweep_s']:.3f} s in the sweep, {sweep['overhead_steady_s']:.3f} s steady, "
            f"{sweep['overhead_command_s']:.3f} s whole command")
        res["sweeps"].append(sweep)
        template = results.read_result(workdir / f"sweep_{n}" / "0")
    if aggregate_jobs:
        log(f"aggregation in a folder of {aggregate_jobs:,} jobs...")
        res["aggregation"] = time_aggregation(aggregate_jobs, workdir / "aggregate", template)
    return res


def time_sweep(n: int, folder: Path) -> Dict[str, Any]:
    timers = folder.with_suffix(".timers.json")
    cmd = [sys.executable, "-m", "fer_sweep.bench.sweep_timers", str(timers), "--multirun", *JOB,
           f"seed=range(0,{n})", f"hydra.sweep.dir={folder}"]
    env = {k: v for k, v in os.environ.items() if k != "FER2013_PATH"}
    tic = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - tic
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"the sweep of {n} jobs failed (exit {proc.returncode}): " + " | ".join(tail))
    jobs = sorted(((results.read_result(folder / str(i)) or {}, (folder / str(i) / results.RESULT_FILE).stat().st_mtime)
                   for i in range(n)), key=lambda item: item[1])  # by when each ended
    train = [float(r.get("train_time_s") or 0.0) for r, _ in jobs]
    ends = [end for _, end in jobs]
    gaps = [ends[i + 1] - ends[i] - train[i + 1] for i in range(n - 1)]
    spent = json.loads(timers.read_text())
    per_job = {k: v["s"] / n for k, v in spent.items()}
    job_outside_training = per_job["job"] - sum(train) / n
    hydra_setup = per_job["hydra_job"] - per_job["job"] - per_job["aggregation"]
    parts = {"compose": per_job["compose"], "hydra_setup": hydra_setup, "job_outside_training": job_outside_training,
             "aggregation": per_job["aggregation"]}
    steady = statistics.fmean(gaps) if gaps else float("nan")
    started = (folder / "multirun.yaml").stat().st_mtime  # the sweeper's first write: process start is behind
    in_sweep = (ends[-1] - started - sum(train)) / n
    return {"jobs": n, "wall_s": wall, "train_s": sum(train), "train_per_job_s": sum(train) / n,
            "overhead_steady_s": steady, "overhead_sweep_s": in_sweep, "overhead_command_s": (wall - sum(train)) / n,
            "parts_per_job_s": parts,
            "data_per_job_s": per_job["data"], "hydra_config_files_per_job_s": per_job["hydra_config_files"],
            "hydra_logging_per_job_s": per_job["hydra_logging"], "compose_calls": spent["compose"]["calls"],
            "sweep_end_s": spent["sweep_end"]["s"], "timers": spent}


def synthetic_sweep(folder: Path, n: int, template: Dict[str, Any]) -> None:
    """A sweep folder of n jobs, each a copy of `template` (a real job's result.json) with its own job number,
    seed, accuracy and folder, and the manifest listing them."""
    from fer_sweep.sweep.aggregate import Manifest

    if folder.exists():
        shutil.rmtree(folder)
    for i in range(n):
        out = folder / str(i)
        out.mkdir(parents=True)
        record = {**template, "job": i, "seed": i, "output_dir": str(out), "best_val_acc": (i % 97) / 97,
                  "overrides": [f"seed={i}" if o.startswith("seed=") else o for o in template.get("overrides", [])]}
        (out / results.RESULT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    Manifest(folder, [folder / str(i) for i in range(n)])


def time_aggregation(n: int, folder: Path, template: Dict[str, Any] | None) -> Dict[str, Any]:
    """One full rebuild of results.csv, then UPDATES incremental updates (a job in the middle, ended again)."""
    from fer_sweep.sweep import results_csv
    from fer_sweep.sweep.aggregate import find_results, write_results_csv

    template = template or {"status": "completed", "test_acc": 0.5, "overrides": ["seed=0"]}
    synthetic_sweep(folder, n, template)
    tic = time.perf_counter()
    found = find_results(folder)
    read_s = time.perf_counter() - tic
    tic = time.perf_counter()
    write_results_csv(folder, found)
    render_s = time.perf_counter() - tic
    updates: List[float] = []
    middle = results.read_result(folder / str(n // 2))
    for k in range(UPDATES):
        tic = time.perf_counter()
        results_csv.update(folder, {**middle, "test_acc": 0.1 * k})
        updates.append(time.perf_counter() - tic)
    tic = time.perf_counter()
    write_results_csv(folder)
    rebuild_s = time.perf_counter() - tic
    return {"jobs": n, "update_median_s": statistics.median(updates), "update_max_s": max(updates),
            "rebuild_s": rebuild_s, "rebuild_read_s": read_s, "rebuild_write_s": render_s,
            "csv_bytes": (folder / "results.csv").stat().st_size}


def format_sweep_overhead(res: Dict[str, Any]) -> str:
    from fer_sweep.bench.report import _table

    m = res["machine"]
    lines = ["fer_sweep.bench --sweep-overhead: the sweep framework's own cost per job", "",
             f"  cpu      {m['cpu']} ({m['cpu_cores']} cores)",
             f"  command  {res['command']}", f"  job      {res['job']}", ""]
    rows = [["jobs", "wall s", "train s/job", "overhead s/job", "(steady)", "(whole cmd)", "compose", "hydra setup",
             "job w/o train", "aggregation", "data (in train)", "composes"]]
    for s in res["sweeps"]:
        p = s["parts_per_job_s"]
        rows.append([f"{s['jobs']:,}", f"{s['wall_s']:.1f}", f"{s['train_per_job_s']:.3f}",
                     f"{s['overhead_sweep_s']:.3f}", f"{s['overhead_steady_s']:.3f}", f"{s['overhead_command_s']:.3f}",
                     f"{p['compose']:.3f}",
                     f"{p['hydra_setup']:.3f}", f"{p['job_outside_training']:.3f}", f"{p['aggregation']:.4f}",
                     f"{s['data_per_job_s']:.3f}", str(s["compose_calls"])])
    lines += _table(rows)
    sweeps = res["sweeps"]
    if len(sweeps) > 1:
        first, last = sweeps[0], sweeps[-1]
        change = last["overhead_sweep_s"] / first["overhead_sweep_s"] - 1
        lines += ["", f"  overhead per job in the sweep at {last['jobs']:,} jobs vs {first['jobs']:,}: {change:+.1%} "
                      "(goal: within 10%)"]
    agg = res.get("aggregation")
    if agg:
        lines += ["", f"  aggregation in a folder of {agg['jobs']:,} jobs (results.csv {agg['csv_bytes'] / 1e6:.1f} MB):",
                  f"    one job's row (incremental update): median {agg['update_median_s'] * 1000:.1f} ms, "
                  f"slowest of {UPDATES} {agg['update_max_s'] * 1000:.1f} ms (goal: < 50 ms)",
                  f"    full rebuild: {agg['rebuild_s']:.2f} s (reading the result.json files "
                  f"{agg['rebuild_read_s']:.2f} s, then writing {agg['rebuild_write_s']:.2f} s, first time)"]
    return "\n".join(lines) + "\n"
