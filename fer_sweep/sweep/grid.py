"""A grid sweeper that survives failed jobs.

Hydra's BasicSweeper re-raises the first failed job's exception after its batch, which drops every later batch
and skips on_multirun_end. This one runs every batch, records failures (one console line each), then
aggregates, reports, and only then applies the exit rule of fer_sweep.sweep.finish: exit status 1 when no job
completed or more than `max_failure_rate` of the jobs failed (default 0: any failed job), with a one-line
reason and no traceback. Resume is per job (see fer_sweep.app.run_job): a completed job with the identical
config, data, device and precision is skipped when the same sweep folder is run again. results.csv holds
exactly this command's jobs (the manifest, see fer_sweep.sweep.aggregate), also in a reused folder: it is
rewritten whole at the start and the end, and gets each job's row as the job ends (fer_sweep.sweep.callbacks),
with a progress line (fer_sweep.sweep.progress).

Before launching, Hydra's BasicSweeper composes every job's config once more to catch a bad override early, which
doubles the cost of composition (Hydra's largest per-job cost). `validate` composes only the jobs that bring an
override not seen yet in a job composed already, with a config group's choices told apart by value and other
keys by key alone (their value cannot make composition fail; a wrong key, a `+` or a `~` can).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from fer_sweep.sweep import progress
from fer_sweep.sweep.aggregate import Manifest, write_results_csv
from fer_sweep.sweep.finish import finish_sweep
from fer_sweep.sweep.launch import launch_batch

log = logging.getLogger(__name__)


class GridSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None,
                 max_failure_rate: float = 0.0):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.max_failure_rate = float(max_failure_rate)
        self._validated: Set[str] = set()
        self._groups: Dict[str, bool] = {}

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
        write_results_csv(sweep_dir, [])  # this command's rows only, as each job ends
        progress.start(sweep_dir, sum(len(batch) for batch in self.overrides))

        returns: List[Sequence[JobReturn]] = []
        job_idx = 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate(batch)
            returns.append(launch_batch(self.launcher, batch, job_idx, manifest, self.hydra_context,
                                        self.config))
            job_idx += len(batch)
        finish_sweep(sweep_dir, "Grid sweep", self.max_failure_rate)
        return returns

    def validate(self, batch: Sequence[Sequence[str]]) -> None:
        """Hydra's validate_batch_is_legal, on the jobs that bring an override not composed yet (module doc)."""
        todo = []
        for overrides in batch:
            new = {self._signature(o) for o in overrides} - self._validated
            if new or not self._validated:
                todo.append(overrides)
                self._validated |= new | {""}
        self.validate_batch_is_legal(todo)

    def _signature(self, override: str) -> str:
        """The override itself for a config group's choice; its key and operator (+, ~) for any other key."""
        key, _, _ = override.partition("=")
        group = key.lstrip("+~").split("@")[0]
        if group not in self._groups:
            self._groups[group] = bool(self.hydra_context.config_loader.get_group_options(group))
        return override if self._groups[group] else key
