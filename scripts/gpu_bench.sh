#!/usr/bin/env bash
# NOT RUN YET. Written 2026-12-07 on a 2-core CPU machine for issue 51 item 7; no GPU was lent to that task, so no
# line of this script has run on a GPU and none of its numbers exist. Expect to fix small things on the first run.
#
# What it measures on one lent GPU (nvidia-h100-x1 or nvidia-h200 through the device tool), real FER2013:
#   solo         the epoch time of resnet9 and resnet9_wide alone on the GPU, eager and trainer.compile=true
#                (experiment=fast, EPOCHS epochs each; epoch 1 holds compile's warm-up, the median of the others
#                is the steady epoch)
#   concurrency  1, 2, 4 and 8 resnet9 jobs at once on the one GPU: joblib processes (hydra/launcher=joblib),
#                then Ray tasks with a 1/N share of the GPU each (hydra/launcher=ray_gpu) when Ray is there
#   seed_table   the article's four cells ({cnn, resnet9} x {none, onecycle}) x seeds 0-2 at 30 epochs
#                (experiment=seed_table seed=0,1,2), the 12 jobs at once
# Results: $W/summary.md and $W/summary.csv (one row per job: stage, model, compile, jobs at once, epoch 1 and
# median epoch seconds, images per second, test accuracy), every run folder without checkpoints in
# $OUT/gpu_bench.tgz, the GPU's name in $OUT/device.txt. Fold summary.md into docs/performance.md with the GPU named.
#
# Time (estimates from the H200 run of 2026-11-30, multirun/reference/gpu_h200: resnet9_wide ~3 s an epoch
# alone, resnet9 ~16 s an epoch with 13 jobs sharing the GPU; not measured for this script):
#   setup + data + smoke ~1 min; solo ~3 min (compile ~1 min a model); concurrency ~3 min with joblib, ~2 min
#   more with Ray (its start ~15 s); seed_table ~5-8 min (12 jobs x 30 epochs sharing the GPU).
# All of it is ~12-15 min: more than one device call (10 min) and about a whole 15-minute lease. Within one
# call of 10 minutes run two stages, e.g. STAGES="solo concurrency" (~7 min), and seed_table in a second lease,
# or cut it: SEED_EPOCHS=10 (~3 min). Each stage is bounded by `timeout`; a stage cut short still leaves the
# rows of its finished jobs.
#
# Ray: the image has no Ray, and Ray's wheel (ray-2.60.0 cp312 manylinux: 79 MB) is over the 64 MiB the device
# tool carries, so the Ray half of `concurrency` runs only where `python3 -c "import ray"` works there (or a
# trimmed wheel in $CARRY/whl); otherwise it prints that it was skipped.
#
# Run from the repository root. CARRY holds what that machine cannot fetch (made here, never committed):
#   CARRY/whl/   wheels of hydra-core, omegaconf, antlr4-python3-runtime, hydra-joblib-launcher
#                (pip wheel --no-deps NAME==VERSION -w CARRY/whl)
#   CARRY/pixels.xz, CARRY/labels.npz   (python -m fer_sweep.data.carry pack fer2013.csv CARRY)
# A dry run on any machine (CPU, the shared mini file, narrow resnet9, Ray told of one GPU it does not have;
# for the plumbing only, ~4 min on 2 cores):
#   CSV=$PWD/../shared/data/fer2013_mini.csv.gz EPOCHS=2 JOBS="1 2" COMPILES=false MODELS=resnet9 \
#     STAGES="solo concurrency" EXTRA="data.train_fraction=0.05 model.base_width=4" \
#     RAY_EXTRA=hydra.launcher.init.num_gpus=1 W=/tmp/gpu_bench_dry OUT=/tmp/gpu_bench_dry_out bash scripts/gpu_bench.sh
set -uo pipefail
STAGES=${STAGES:-"solo concurrency seed_table"}
CARRY=${CARRY:-.gpu}; OUT=${OUT:-/tmp/out}; W=${W:-/tmp/gpu_bench}; CSV=${CSV:-$W/fer2013.csv}
EPOCHS=${EPOCHS:-4}; SEED_EPOCHS=${SEED_EPOCHS:-30}; JOBS=${JOBS:-"1 2 4 8"}; COMPILES=${COMPILES:-"false true"}
MODELS=${MODELS:-"resnet9 resnet9_wide"}; RAY_EXTRA=${RAY_EXTRA:-}
CORES=$(nproc)
mkdir -p "$W" "$OUT"
if ls "$CARRY"/whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$CARRY"/whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 FER_SWEEP_CACHE=$W/cache
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
  echo "cores $CORES"; } | tee "$W/device.txt"
[ -f "$CSV" ] || python3 -m fer_sweep.data.carry unpack "$CARRY" "$CSV" || exit 1
DATA="data.path=$CSV trainer.plots=false ${EXTRA:-}"
# Real data for a few seconds first (and the parsed-data cache every job then reads): fail fast, not late.
python3 -m fer_sweep experiment=fast $DATA data.train_fraction=0.05 trainer.epochs=1 trainer.time_budget_s=null \
  trainer.tta=none hydra.run.dir=$W/smoke > $W/smoke.log 2>&1 || { tail -40 $W/smoke.log; exit 1; }
grep -h "device\|completed" $W/smoke.log | head -3; rm -rf $W/smoke
# The runs: today's recipe (experiment=fast) for a few epochs, no time budget, no TTA (test time is not epoch time)
RUN="experiment=fast trainer.time_budget_s=null trainer.tta=none trainer.epochs=$EPOCHS $DATA"
START=$(date +%s)

stage() { case " $STAGES " in *" $1 "*) echo "== $1 ($(( $(date +%s) - START )) s in)"; return 0;; esac; return 1; }

if stage solo; then
  for MODEL in $MODELS; do
    for COMPILE in $COMPILES; do
      timeout 300 python3 -m fer_sweep $RUN model=$MODEL trainer.compile=$COMPILE \
        hydra.run.dir=$W/solo/${MODEL}_compile_$COMPILE > $W/solo_${MODEL}_$COMPILE.log 2>&1 \
        || tail -5 $W/solo_${MODEL}_$COMPILE.log
    done
  done
fi

if stage concurrency; then
  for N in $JOBS; do  # each job gets an equal share of the cores for its augmentation and loading
    timeout 300 python3 -m fer_sweep --multirun $RUN model=resnet9 "seed=range(0,$N)" \
      trainer.threads=$(( CORES / N > 0 ? CORES / N : 1 )) hydra/launcher=joblib hydra.launcher.n_jobs=$N \
      hydra.sweep.dir=$W/joblib/$N > $W/joblib_$N.log 2>&1 || tail -5 $W/joblib_$N.log
  done
  if python3 -c "import ray" 2>/dev/null; then
    for N in $JOBS; do
      SHARE=$(python3 -c "print(1 / $N)"); CPUS=$(( CORES / N > 0 ? CORES / N : 1 ))
      timeout 300 python3 -m fer_sweep --multirun $RUN model=resnet9 "seed=range(0,$N)" trainer.threads=$CPUS \
        hydra/launcher=ray_gpu hydra.launcher.num_gpus=$SHARE hydra.launcher.num_cpus=$CPUS \
        hydra.launcher.init.num_cpus=$CORES $RAY_EXTRA hydra.sweep.dir=$W/ray/$N > $W/ray_$N.log 2>&1 \
        || tail -5 $W/ray_$N.log
    done
  else
    echo "Ray is not installed on this machine: the Ray half of the concurrency stage was skipped" | tee $W/ray_skipped.txt
  fi
fi

if stage seed_table; then
  timeout 540 python3 -m fer_sweep --multirun experiment=seed_table seed=0,1,2 trainer.epochs=$SEED_EPOCHS $DATA \
    trainer.threads=1 hydra/launcher=joblib hydra.launcher.n_jobs=12 hydra.sweep.dir=$W/seed_table \
    > $W/seed_table.log 2>&1 || tail -5 $W/seed_table.log
  python3 -m fer_sweep.report $W/seed_table > $W/seed_table_report.md 2>&1 || tail -5 $W/seed_table_report.md
fi
echo "all stages ended after $(( $(date +%s) - START )) s"
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader > $W/nvidia_smi.txt 2>/dev/null

python3 - "$W" <<'PY'
"""One row per job with a history.csv: where it ran, its epoch times, images per second and test accuracy."""
import json, statistics, sys
from pathlib import Path

import pandas as pd

root = Path(sys.argv[1])
device = (root / "device.txt").read_text().splitlines()[0]
rows = []
for history in sorted(root.glob("**/history.csv")):
    run = history.parent
    parts = run.relative_to(root).parts
    stage = parts[0] if parts[0] in ("solo", "seed_table") else f"{parts[0]} x{parts[1]}"
    result = json.loads((run / "result.json").read_text()) if (run / "result.json").is_file() else {}
    times = pd.read_csv(history)["epoch_time_s"].tolist()
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    train = (result.get("split_sizes") or {}).get("train")
    overrides = " ".join(o for o in result.get("overrides", []) if o.startswith(("model=", "scheduler=", "seed=")))
    rows.append({"stage": stage, "run": "/".join(parts), "model": result.get("model"),
                 "compile": "compile_true" in run.name, "jobs_at_once": int(parts[1]) if len(parts) > 2 and
                 parts[0] in ("joblib", "ray") else 1, "status": result.get("status"), "epochs": len(times),
                 "epoch1_s": round(times[0], 2), "epoch_s": round(steady, 2),
                 "images_per_s": round(train / steady) if train else None,
                 "test_acc": round(result["test_acc"], 4) if result.get("test_acc") is not None else None,
                 "precision": result.get("precision"), "overrides": overrides, "device": device})
frame = pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """A pipe table without pandas' optional tabulate."""
    cells = [[str(c) for c in table.columns]] + [["" if pd.isna(v) else str(v) for v in r] for r in table.values]
    return "\n".join(["| " + " | ".join(cells[0]) + " |", "|" + " --- |" * len(table.columns)]
                     + ["| " + " | ".join(r) + " |" for r in cells[1:]])



frame.to_csv(root / "summary.csv", index=False)
lines = [f"# GPU bench: {device}", ""]
if not frame.empty:
    lines += [markdown(frame.drop(columns=["device"])), ""]
    many = frame[frame["stage"].str.contains(" x")]
    if not many.empty:  # all jobs together: how much one GPU does at N jobs
        total = many.groupby("stage").agg(jobs=("run", "size"), epoch_s=("epoch_s", "median"),
                                          images_per_s=("images_per_s", "sum"))
        lines += ["## Jobs at once: the GPU's total", "", markdown(total.reset_index()), ""]
(root / "summary.md").write_text("\n".join(lines))
print("\n".join(lines))
PY
cp "$W/summary.md" "$W/summary.csv" "$W/device.txt" "$OUT"/ 2>/dev/null
cp "$W/seed_table_report.md" "$OUT"/ 2>/dev/null
tar czf "$OUT/gpu_bench.tgz" --exclude='*.pt' --exclude='*.npz' --exclude='fer2013.csv' --exclude=cache \
  -C "$(dirname "$W")" "$(basename "$W")"
ls -la "$OUT"
