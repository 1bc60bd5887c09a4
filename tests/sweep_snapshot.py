"""A Hydra callback for tests: after each job, a copy of results.csv as the per-job update left it
(results.csv.after-<job>), since the sweep's end rewrites results.csv whole. Hydra calls on_job_end callbacks
last-listed first, so it must be listed before fer_sweep's AggregateResults."""
import shutil
from pathlib import Path

from hydra.experimental.callback import Callback


class Snapshot(Callback):
    def on_job_end(self, config, job_return, **kwargs):
        sweep = Path(config.hydra.sweep.dir)
        shutil.copy(sweep / "results.csv", sweep / f"results.csv.after-{config.hydra.job.num}")
