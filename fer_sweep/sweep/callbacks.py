"""Hydra callbacks. Hydra swallows their exceptions as warnings, so nothing essential relies on them alone:
the sweepers aggregate once more at the end."""
from __future__ import annotations

import logging
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from fer_sweep.sweep.aggregate import write_results_csv

log = logging.getLogger(__name__)


class AggregateResults(Callback):
    """After each job of a multirun, rewrite the sweep's results.csv so progress can be read while it runs;
    like the sweepers' own aggregation, only with the jobs the sweep's manifest lists (see aggregate.py)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            write_results_csv(config.hydra.sweep.dir)
