"""Section 2: training throughput per model, classic vs ceiling vs ours, interleaved when repeated."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from fer_sweep.bench.classic import time_classic
from fer_sweep.bench.ours import time_ceiling, time_ours
from fer_sweep.data.arrays import FERArrays
from fer_sweep.engine.precision import Precision


def bench_train(data: FERArrays, models: Sequence[str], device: torch.device, precision: Precision,
                batch_size: int, warmup: int, steps: int, classic_bf16: bool = False, repeats: int = 1,
                log: Callable[[str], None] = print, input_crop: Optional[int] = None) -> Dict[str, Dict[str, Any]]:
    """images/s per model: classic, ceiling and ours (and classic at our precision if asked; and ours training
    on input_crop x input_crop windows, model.input_crop, if given).

    With repeats > 1 the measurements are interleaved (ceiling, ours, classic, ceiling, ...) and the best of
    each is reported, which damps what other processes on a shared machine do to any single measurement;
    every run's figure is kept under "runs".
    """
    fp32 = Precision(device, "fp32")
    sizes = dict(batch_size=batch_size, warmup=warmup, steps=steps)
    timers = [("ceiling", precision.name, lambda n: time_ceiling(n, data, device, precision, **sizes)),
              ("ours", precision.name, lambda n: time_ours(n, data, device, precision, **sizes)),
              ("classic", "fp32, DataLoader with 2 workers", lambda n: time_classic(n, data, device, fp32, **sizes))]
    if classic_bf16 and precision.name != "fp32":
        timers.append(("classic_lowp", f"classic at {precision.name}",
                       lambda n: time_classic(n, data, device, precision, **sizes)))
    if input_crop:  # timed right after ours on whole faces, so the pair sees the same machine
        timers.insert(2, ("ours_crop", f"{precision.name}, {input_crop}x{input_crop} crops",
                          lambda n: time_ours(n, data, device, precision, **sizes, input_crop=input_crop)))
    out: Dict[str, Dict[str, Any]] = {}
    for name in models:
        runs: Dict[str, List[float]] = {key: [] for key, _, _ in timers}
        # Whatever is measured first would also pay the process-wide first-use costs (kernel selection and
        # JIT for this model's shapes, allocator growth), so run the bare step once, untimed, beforehand.
        log(f"  {name}: untimed warm-up of the model step...")
        time_ceiling(name, data, device, precision, batch_size, warmup, 1)
        for r in range(repeats):
            for key, what, timer in timers:
                log(f"  {name}: {key} ({what})" + (f", run {r + 1}/{repeats}" if repeats > 1 else "") + "...")
                runs[key].append(timer(name))
        row: Dict[str, Any] = {key: max(values) for key, values in runs.items()}
        row["ours_vs_classic"] = row["ours"] / row["classic"]
        row["ours_vs_ceiling"] = row["ours"] / row["ceiling"]
        if input_crop:
            row["crop_vs_whole"] = row["ours_crop"] / row["ours"]
        if repeats > 1:
            row["runs"] = runs
        out[name] = row
    return out
