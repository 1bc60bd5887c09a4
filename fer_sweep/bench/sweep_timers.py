"""`python -m fer_sweep.bench.sweep_timers TIMERS.json <fer_sweep arguments>`: the fer_sweep command, with timers
around the steps a sweep takes for each job; their totals (seconds, calls) go to TIMERS.json at exit.

For the bench's --sweep-overhead mode (sweep_overhead.py), which reads them per job. Timers, not a profiler: a
profiler slows Python code several-fold, and the figures here are what a sweep costs without one.
"""
from __future__ import annotations

import atexit
import functools
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

# label -> where it is looked up (module, attribute path). Only modules outside Hydra's plugin packages: Hydra
# re-executes those when it scans for plugins, and they then import these (already wrapped) names afresh.
TIMED: Dict[str, List[Tuple[str, str]]] = {
    "compose": [("hydra._internal.config_loader_impl", "ConfigLoaderImpl.load_sweep_config")],
    "hydra_job": [("hydra.core.utils", "run_job")],
    "job": [("fer_sweep.app", "run_job")],
    "data": [("fer_sweep.app", "load_splits")],
    "aggregation": [("fer_sweep.sweep.callbacks", "AggregateResults.on_job_end")],
    "hydra_config_files": [("hydra.core.utils", "_save_config")],
    "hydra_logging": [("hydra.core.utils", "configure_log")],
    "sweep_end": [("fer_sweep.sweep.finish", "finish_sweep")],
}


def install(totals: Dict[str, List[float]]) -> None:
    """Wrap every TIMED function so that its calls add to totals[label] = [seconds, calls]."""
    for label, places in TIMED.items():
        totals[label] = [0.0, 0]
        for module_name, path in places:
            owner: Any = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            setattr(owner, name, _timed(getattr(owner, name), totals[label]))


def _timed(fn: Callable, total: List[float]) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tic = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - tic
            total[1] += 1
    return wrapper


def main() -> None:
    out = Path(sys.argv[1])
    totals: Dict[str, List[float]] = {}
    atexit.register(lambda: out.write_text(json.dumps({k: {"s": v[0], "calls": v[1]} for k, v in totals.items()})))
    sys.argv = ["fer_sweep", *sys.argv[2:]]
    install(totals)
    from fer_sweep.__main__ import run

    run()


if __name__ == "__main__":
    main()
