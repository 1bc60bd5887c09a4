"""A grid sweeper that survives failed jobs.

Hydra's BasicSweeper re-raises the first failed job's exception after its batch, which drops every later batch
and skips on_multirun_end. This one runs every batch, records failures (one console line each), then
aggregates, reports, and only then applies the exit rule of fer_sweep.sweep.finish: exit status 1 when no job
completed or more than `max_failure_rate` of the jobs failed (default 0: any failed job), with a one-line
reason and no traceback. Resume is per job (see fer_sweep.app.run_job): a completed job with the identical
config, data, device and precision is skipped when the same sweep folder is run again. results.csv holds
exactly this command's jobs (the manifest, see fer_sweep.sweep.aggregate), also in a reused folder.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from fer_sweep.sweep.aggregate import Manifest
from fer_sweep.sweep.finish import finish_sweep
from fer_sweep.sweep.launch import launch_batch

log = logging.getLogger(__name__)


class GridSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None,
                 max_failure_rate: float = 0.0):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.max_failure_rate = float(max_failure_rate)

    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        params = self._parse_config()
        params.extend(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(params), self.max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        manifest = Manifest(sweep_dir)

        returns: List[Sequence[JobReturn]] = []
        job_idx = 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            returns.append(launch_batch(self.launcher, batch, job_idx, manifest, self.hydra_context,
                                        self.config))
            job_idx += len(batch)
        finish_sweep(sweep_dir, "Grid sweep", self.max_failure_rate)
        return returns
