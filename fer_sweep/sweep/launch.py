"""What every sweeper does around a launch: keep the manifest of its job folders (fer_sweep.sweep.aggregate)
and give every failed job a result.json and a line on the console."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, open_dict

from fer_sweep import results
from fer_sweep.sweep.aggregate import Manifest

log = logging.getLogger(__name__)


def launch_batch(launcher: Any, jobs: Sequence[Sequence[str]], initial_job_idx: int,
                 manifest: Optional[Manifest] = None, hydra_context: Any = None,
                 config: Optional[DictConfig] = None) -> Sequence[JobReturn]:
    """launcher.launch, with the jobs' folders in the manifest: before, where they will run (so the per-job
    callback's results.csv shows the whole batch), after, where they ran (what counts in the end)."""
    planned = planned_dirs(hydra_context, config, jobs, initial_job_idx) if manifest is not None else []
    if manifest is not None:
        manifest.add(planned)
    job_returns = launcher.launch(jobs, initial_job_idx=initial_job_idx)
    if manifest is not None:
        manifest.add([Path(jr.hydra_cfg.hydra.runtime.output_dir) for jr in job_returns
                      if jr.hydra_cfg is not None], replacing=planned)
    record_unreported_failures(job_returns)  # never read a failed job's return_value: it re-raises
    return job_returns


def planned_dirs(hydra_context: Any, config: Optional[DictConfig], jobs: Sequence[Sequence[str]],
                 initial_job_idx: int) -> List[Path]:
    """hydra.sweep.dir/hydra.sweep.subdir of each job's config, computed as Hydra's launchers do (job.num =
    its index). Best effort, for progress only: launch_batch records the real folders afterwards."""
    if hydra_context is None or config is None:
        return []
    hydra_config = HydraConfig.instance()
    saved, dirs = hydra_config.cfg, []
    try:
        for idx, overrides in enumerate(jobs, start=initial_job_idx):
            job_cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
            with open_dict(job_cfg):
                job_cfg.hydra.job.id = job_cfg.hydra.job.num = idx
            hydra_config.set_config(job_cfg)  # for ${hydra:...} in the subdir
            dirs.append(Path(os.path.abspath(os.path.join(str(job_cfg.hydra.sweep.dir),
                                                          str(job_cfg.hydra.sweep.subdir)))))
    except Exception as exc:  # noqa: BLE001 - an exotic subdir must not stop the sweep
        log.debug("could not tell the job folders before launching: %s: %s", type(exc).__name__, exc)
    finally:
        hydra_config.cfg = saved
    return dirs


def record_unreported_failures(job_returns: Sequence[JobReturn]) -> None:
    """A job that failed before it could write its result.json (e.g. in Hydra itself) still gets a row, and
    its line on the console (fer_sweep.app.run_job prints it for the others)."""
    for jr in job_returns:
        if jr.status != JobStatus.FAILED or jr.hydra_cfg is None:
            continue
        out = Path(jr.hydra_cfg.hydra.runtime.output_dir)
        if (results.read_result(out) or {}).get("status") != "failed":  # none, or a previous run's record
            error = jr._return_value
            job = jr.hydra_cfg.hydra.job.num
            results.write_json(out / results.RESULT_FILE, {
                "status": "failed", "error": f"{type(error).__name__}: {error}", "job": job,
                "overrides": list(jr.overrides or []), "output_dir": str(out)})
            log.error("job %s failed: %s: %s", job, type(error).__name__, error)
