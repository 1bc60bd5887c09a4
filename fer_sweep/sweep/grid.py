"""A grid sweeper that survives failed jobs.

Hydra's BasicSweeper re-raises the first failed job's exception after its batch, which drops every later batch
and skips on_multirun_end. This one runs every batch, records failures, then aggregates, reports, and only
then fails the command. Resume is per job (see fer_sweep.app.run_job): a completed job with the identical
config is skipped when the same sweep folder is run again.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from fer_sweep import results
from fer_sweep.sweep.finish import finish_sweep

log = logging.getLogger(__name__)


def record_unreported_failures(job_returns: Sequence[JobReturn]) -> None:
    """A job that failed before it could write its result.json (e.g. in Hydra itself) still gets a row."""
    for jr in job_returns:
        if jr.status != JobStatus.FAILED or jr.hydra_cfg is None:
            continue
        out = Path(jr.hydra_cfg.hydra.runtime.output_dir)
        if results.read_result(out) is None:
            error = jr._return_value
            results.write_json(out / results.RESULT_FILE, {
                "status": "failed", "error": f"{type(error).__name__}: {error}", "job": jr.hydra_cfg.hydra.job.num,
                "overrides": list(jr.overrides or []), "output_dir": str(out)})


class GridSweeper(BasicSweeper):
    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        params = self._parse_config()
        params.extend(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(params), self.max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        returns: List[Sequence[JobReturn]] = []
        job_idx = 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            batch_returns = self.launcher.launch(batch, initial_job_idx=job_idx)
            record_unreported_failures(batch_returns)  # and go on: never read r.return_value here
            job_idx += len(batch)
            returns.append(batch_returns)
        finish_sweep(sweep_dir, title="Grid sweep")
        return returns
