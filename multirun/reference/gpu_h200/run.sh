#!/usr/bin/env bash
# The GPU check of "Accuracy per CPU-hour": one command on a lent H200 (the device tool: 15 minutes in all).
# Run from the repository root. CARRY holds what that machine cannot fetch (made here, never committed):
#   CARRY/whl/   wheels of hydra-core, omegaconf, antlr4-python3-runtime, hydra-joblib-launcher
#                (pip wheel --no-deps NAME==VERSION -w CARRY/whl)
#   CARRY/pixels.xz, CARRY/labels.npz
#                (python -m fer_sweep.data.carry pack fer2013.csv CARRY)
# Seventeen jobs share the GPU at once (thirteen levers, two seeds, two scaled-up runs; the H200 run of 2026-11-30
# ran ten, when experiment=fast_levers had six levers), each within BUDGET seconds (the time budget cuts epochs that
# do not fit):
#   - experiment=fast_levers, seed 0: experiment=fast and one lever at a time, at most 72 epochs;
#   - experiment=fast, at most 72 epochs, seeds 1 and 2 (with the levers' baseline, seeds 0-2 as on the CPU);
#   - the recipe scaled up: resnet9_wide (8.9M parameters), batch 128, max_lr 3e-3, with the article's and
#     with the strong augmentation, as many epochs as fit.
# Then the seeds' ensemble under each TTA, and all runs' ensemble. All but checkpoints come back in runs.tgz.
# A dry run on any machine (CPU, the shared mini file):
#   CSV=fer2013_mini.csv.gz BUDGET=100 EXTRA="trainer.tta=flip data.train_fraction=0.05" bash run.sh
set -uo pipefail
CARRY=${CARRY:-.gpu}; BUDGET=${BUDGET:-420}; OUT=${OUT:-/tmp/out}; W=/tmp/gpu_h200; CSV=${CSV:-$W/fer2013.csv}
mkdir -p "$W" "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$CARRY"/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 FER_SWEEP_CACHE=$W/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), flush=True)"
[ -f "$CSV" ] || python3 -m fer_sweep.data.carry unpack "$CARRY" "$CSV" || exit 1
DATA="data.path=$CSV trainer.threads=1 ${EXTRA:-}"
# A few seconds of real data first (and the parsed-data cache every job then reads): fail fast, not late.
python3 -m fer_sweep experiment=fast $DATA data.train_fraction=0.05 trainer.epochs=1 \
  trainer.time_budget_s=null hydra.run.dir=$W/smoke > $W/smoke.log 2>&1 || { tail -40 $W/smoke.log; exit 1; }
grep -h "device\|completed" $W/smoke.log | head -3; rm -rf $W/smoke/checkpoints
START=$(date +%s)
T="timeout $((BUDGET + 45))"
$T python3 -m fer_sweep --multirun experiment=fast_levers seed=0 trainer.time_budget_s=$BUDGET $DATA \
  hydra/launcher=joblib hydra.launcher.n_jobs=13 hydra.sweep.dir=$W/levers > $W/levers.log 2>&1 &
$T python3 -m fer_sweep --multirun experiment=fast seed=1,2 trainer.epochs=72 \
  trainer.time_budget_s=$BUDGET $DATA hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweep.dir=$W/seeds \
  > $W/seeds.log 2>&1 &
for AUG in seed strong; do
  $T python3 -m fer_sweep experiment=fast model=resnet9_wide augmentation=$AUG trainer.batch_size=128 \
    optimizer.lr=0.003 trainer.epochs=300 trainer.time_budget_s=$BUDGET seed=0 $DATA \
    hydra.run.dir=$W/wide_$AUG > $W/wide_$AUG.log 2>&1 &
done
wait
echo "all jobs ended after $(( $(date +%s) - START )) s"
for TTA in none flip tencrop; do
  python3 -m fer_sweep.evaluate $W/levers/0 $W/seeds --data $CSV --tta $TTA \
    -o $W/ensemble_seeds012_tta_$TTA.json > $W/ensemble_$TTA.log 2>&1 || tail -5 $W/ensemble_$TTA.log
done
python3 -m fer_sweep.evaluate $W --data $CSV --tta tencrop \
  -o $W/ensemble_all_tta_tencrop.json > $W/ensemble_all.log 2>&1 || tail -5 $W/ensemble_all.log
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader > $W/nvidia_smi.txt
python3 - "$W" <<'PY'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
print(f"{'run':34} {'status':10} {'epochs':>6} {'time_s':>7} {'test':>6}")
for f in sorted(root.glob("*/result.json")) + sorted(root.glob("*/*/result.json")):
    r = json.loads(f.read_text())
    if "smoke" in str(f):
        continue
    name = str(f.parent.relative_to(root)) + " " + " ".join(o for o in r.get("overrides", []) if "lever" in o)
    print(f"{name:34} {r.get('status', '?'):10} {r.get('epochs_run', 0):>6} {r.get('train_time_s') or 0:7.0f} "
          f"{r.get('test_acc') or 0:6.3f}")
for f in sorted(root.glob("ensemble_*.json")):
    s = json.loads(f.read_text())["scores"]
    print(f"{f.stem:34} ensemble {s[-1]['acc']:.3f} of {len(s) - 1}")
PY
tar czf "$OUT/runs.tgz" --exclude='*.pt' --exclude=fer2013.csv --exclude=cache -C /tmp gpu_h200
ls -la "$OUT"
