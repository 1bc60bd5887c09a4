"""Hydra callbacks. Hydra swallows their exceptions as warnings, so nothing essential relies on them alone:
the sweepers aggregate once more at the end."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from fer_sweep import results
from fer_sweep.sweep import progress, results_csv

log = logging.getLogger(__name__)


class AggregateResults(Callback):
    """After each job of a multirun: that job's row into the sweep's results.csv (results_csv.update: it reads
    no other job's files, so the cost per job stays flat however long the sweep), then the sweep's progress line
    (progress.py). The sweeper rebuilds results.csv whole at the start and the end."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        out = OmegaConf.select(config, "hydra.runtime.output_dir", default=None)
        result = results.read_result(Path(out)) if out else None
        if result is None:  # failed before it wrote a record: the sweeper writes one after the launch
            return
        progress.report(sweep_dir, results_csv.update(sweep_dir, result))
