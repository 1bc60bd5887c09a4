"""What every sweeper does around a launch: keep the manifest of its job folders (fer_sweep.sweep.aggregate)
and give every failed job a result.json and a line on the console."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict

from fer_sweep import results
from fer_sweep.sweep.aggregate import Manifest

log = logging.getLogger(__name__)


def launch_batch(launcher: Any, jobs: Sequence[Sequence[str]], initial_job_idx: int,
                 manifest: Optional[Manifest] = None, hydra_context: Any = None,
                 config: Optional[DictConfig] = None) -> Sequence[JobReturn]:
    """launcher.launch, with the jobs' folders in the manifest: before, where they will run (so the per-job
    callback's results.csv shows the whole batch), after, where they ran (what counts in the end). A job that
    failed before writing its result.json gets one, and its row in results.csv."""
    planned = planned_dirs(hydra_context, config, jobs, initial_job_idx) if manifest is not None else []
    if manifest is not None:
        manifest.add(planned)
    job_returns = launcher.launch(jobs, initial_job_idx=initial_job_idx)
    if manifest is not None:
        manifest.add([Path(jr.hydra_cfg.hydra.runtime.output_dir) for jr in job_returns
                      if jr.hydra_cfg is not None], replacing=planned)
    recorded = record_unreported_failures(job_returns)  # never read a failed job's return_value: it re-raises
    if manifest is not None:
        from fer_sweep.sweep import results_csv

        for result in recorded:
            results_csv.update(manifest.sweep_dir, result)
    return job_returns


def planned_dirs(hydra_context: Any, config: Optional[DictConfig], jobs: Sequence[Sequence[str]],
                 initial_job_idx: int) -> List[Path]:
    """hydra.sweep.dir/hydra.sweep.subdir of each job's config, computed as Hydra's launchers do (job.num =
    its index). Best effort, for progress only: launch_batch records the real folders afterwards. With the default
    subdir (the job number) and no job overriding hydra.sweep/hydra.job, no config is composed: composing one
    costs about as much as Hydra's own setup of the job."""
    if hydra_context is None or config is None:
        return []
    subdir = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
    if subdir == "${hydra.job.num}" and not any(_touches_job_dir(o) for job in jobs for o in job):
        root = os.path.abspath(str(config.hydra.sweep.dir))
        return [Path(root) / str(idx) for idx in range(initial_job_idx, initial_job_idx + len(jobs))]
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


def _touches_job_dir(override: str) -> bool:
    return override.lstrip("+~").startswith(("hydra.sweep", "hydra.job", "hydra/"))


def record_unreported_failures(job_returns: Sequence[JobReturn]) -> List[dict]:
    """A job that failed before it could write its result.json (e.g. in Hydra itself) still gets a row, and
    its line on the console (fer_sweep.app.run_job prints it for the others); returns the records written."""
    written = []
    for jr in job_returns:
        if jr.status != JobStatus.FAILED or jr.hydra_cfg is None:
            continue
        out = Path(jr.hydra_cfg.hydra.runtime.output_dir)
        if (results.read_result(out) or {}).get("status") != "failed":  # none, or a previous run's record
            error = jr._return_value
            job = jr.hydra_cfg.hydra.job.num
            record = {"status": "failed", "error": f"{type(error).__name__}: {error}", "job": job,
                      "overrides": list(jr.overrides or []), "output_dir": str(out)}
            results.write_json(out / results.RESULT_FILE, record)
            written.append(record)
            log.error("job %s failed: %s: %s", job, type(error).__name__, error)
    return written
