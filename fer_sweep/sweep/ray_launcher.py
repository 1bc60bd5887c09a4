"""`hydra/launcher=ray`: every job of a sweep batch as one Ray task, on a local Ray or a running cluster.

Why our own and not hydra-ray-launcher 1.2.2: that plugin pins cloudpickle<3 (joblib >= 1.5, which the joblib
launcher uses, needs cloudpickle >= 3), it passes object_store_memory to ray.init, which Ray refuses when
joining a running cluster (address=auto), and a job whose worker process dies past Ray's retries raises out of
its launch: the whole sweep stops with a traceback, without results.csv, and takes the jobs still running
down with it. This launcher uses only Ray's public API (ray.init, ray.remote, ray.put, ray.get) and keeps
fer_sweep's rules:

- each job gets `num_cpus` CPUs and `num_gpus` GPUs (a fraction, e.g. 0.25, puts four jobs on one GPU); Ray
  queues the rest of the batch until resources free up;
- a job whose worker dies (killed, out of memory, node lost) is run again by Ray, up to `max_retries` times
  (fer_sweep.app.run_job starts it over in the same folder); past that it comes back as a FAILED JobReturn, so
  the sweeper records it as failed and the other jobs complete;
- a Python exception in a job is not retried: it is the job's failure, as with every launcher.

The job folders are computed in the sweep process (hydra.sweep.dir made absolute) and written by the workers,
so on a cluster the sweep folder must be on a filesystem every node sees, as with SLURM.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

MISSING_RAY = "hydra/launcher=ray needs Ray, which is not installed: pip install 'fer_sweep[ray]'"


def _user_error(message: str) -> SystemExit:
    """A bad setting or a missing package: one line on stderr, exit status 2, no traceback (Hydra lets a
    SystemExit through)."""
    print(f"fer_sweep: error: {message}", file=sys.stderr, flush=True)
    return SystemExit(2)


def _import_ray() -> Any:
    """Ray, or the one-line error that names the extra to install."""
    try:
        import ray
    except ImportError:
        raise _user_error(MISSING_RAY) from None
    return ray


def fer_sweep_job(hydra_context: HydraContext, sweep_config: DictConfig, task_function: TaskFunction,
                  singleton_state: Dict[Any, Any], cwd: str) -> JobReturn:
    """Runs in a Ray worker: Hydra's globals and singletons as the sweep process has them, then the job.
    Named for the console: Ray prefixes a worker's lines with `(fer_sweep_job pid=...)`."""
    setup_globals()
    Singleton.set_state(singleton_state)
    if os.path.isdir(cwd):  # a local Ray (or a shared filesystem): relative paths as on the command line
        os.chdir(cwd)
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def job_output_dir(sweep_config: DictConfig) -> Path:
    """hydra.sweep.dir/hydra.sweep.subdir of a job's config, as run_job computes it (for ${hydra:...} in the
    subdir, HydraConfig holds this job's config meanwhile)."""
    hydra_config = HydraConfig.instance()
    saved = hydra_config.cfg
    try:
        hydra_config.set_config(sweep_config)
        return Path(os.path.abspath(os.path.join(str(sweep_config.hydra.sweep.dir),
                                                 str(sweep_config.hydra.sweep.subdir))))
    finally:
        hydra_config.cfg = saved


def crashed_job(sweep_config: DictConfig, overrides: Sequence[str], error: BaseException) -> JobReturn:
    """The JobReturn of a job Ray could not bring back (its worker died past its retries, its node was lost,
    or Hydra's job wrapper raised): FAILED, with the job's folder in hydra.runtime.output_dir, so
    fer_sweep.sweep.launch records it (result.json, one console line)."""
    out = job_output_dir(sweep_config)
    with read_write(sweep_config.hydra.runtime):
        sweep_config.hydra.runtime.output_dir = str(out)
    return JobReturn(overrides=list(overrides), cfg=None, hydra_cfg=sweep_config, working_dir=str(out),
                     task_name=str(sweep_config.hydra.job.name), status=JobStatus.FAILED,
                     _return_value=error)


def ray_failure(ray: Any, exc: BaseException) -> BaseException:
    """What a failed ray.get stands for: the job's own exception, or a RuntimeError saying the worker died."""
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(getattr(exc, "cause", None), Exception):
        return exc.cause
    lines = str(exc).strip().splitlines()
    return RuntimeError(f"Ray worker died: {lines[0] if lines else type(exc).__name__}")


def remote_options(num_cpus: float, num_gpus: float, memory: Optional[int], max_retries: int,
                   remote: Mapping[str, Any]) -> Dict[str, Any]:
    """ray.remote's options for one job; `remote` (any other ray.remote option) wins."""
    options: Dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": int(max_retries),
                               "retry_exceptions": False}
    if memory:
        options["memory"] = int(memory)
    options.update(remote)
    return options


class RayLauncher(Launcher):
    """Hydra launcher: one Ray task per job (see the module doc). Settings: conf/hydra/launcher/ray.yaml."""

    def __init__(self, address: Optional[str] = None, num_cpus: float = 1, num_gpus: float = 0,
                 memory: Optional[int] = None, max_retries: int = 2, n_jobs: int = -1,
                 dedup_logs: bool = False, init: Optional[Mapping[str, Any]] = None,
                 remote: Optional[Mapping[str, Any]] = None):
        self.address = address
        self.options = remote_options(num_cpus, num_gpus, memory, max_retries, _plain(remote))
        self.n_jobs = n_jobs  # not used here: the Optuna sweeper's trials per batch (hydra.sweeper.n_jobs)
        self.dedup_logs = bool(dedup_logs)
        self.init = _plain(init)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def start_ray(self) -> Any:
        """ray.init once per sweep process: a local Ray (address null and no RAY_ADDRESS), or the cluster."""
        if not self.dedup_logs and "ray" not in sys.modules:
            # Ray folds log lines that differ only in numbers ("job 3 failed" into "job 1 failed"); a sweep's
            # per-job lines must all show. Read once, when ray is first imported.
            os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs = {k: v for k, v in self.init.items() if v is not None}
            if self.address:
                kwargs["address"] = self.address
            log.info("Ray: %s", "joining " + str(self.address) if self.address else "starting a local Ray")
            ray.init(**kwargs)
        return ray

    def check_fits(self, ray: Any) -> None:
        """A local Ray has what this machine has, and a job asking for more CPUs or GPUs than that would wait
        forever (Ray only logs, every half minute, that no node fits it): say so at once. A cluster is not
        checked: its autoscaler may add the nodes."""
        if self.address or os.environ.get("RAY_ADDRESS"):
            return
        total = ray.cluster_resources()
        for option, resource, where in (("num_cpus", "CPU", "hydra.launcher.init.num_cpus"),
                                         ("num_gpus", "GPU", "hydra.launcher.init.num_gpus, CUDA_VISIBLE_DEVICES")):
            want, have = float(self.options.get(option) or 0), float(total.get(resource, 0))
            if want > have:
                raise _user_error(f"hydra.launcher.{option}={want:g} per job, but the local Ray has {have:g} "
                                  f"{resource}s ({where}); no job could start")

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(os.path.abspath(str(self.config.hydra.sweep.dir)))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        ray = self.start_ray()
        self.check_fits(ray)
        log.info("Ray is launching %d jobs (per job: %s), sweep output dir: %s", len(job_overrides),
                 ", ".join(f"{k}={v}" for k, v in self.options.items()), sweep_dir)

        task = ray.remote(fer_sweep_job).options(**self.options)
        shared = [ray.put(self.hydra_context), ray.put(self.task_function), ray.put(Singleton.get_state())]
        configs: List[DictConfig] = []
        refs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
                sweep_config.hydra.job.num = idx
                sweep_config.hydra.sweep.dir = str(sweep_dir)  # the same folder whatever a worker's cwd
            configs.append(sweep_config)
            refs.append(task.remote(shared[0], sweep_config, shared[1], shared[2], os.getcwd()))

        returns = []
        for ref, sweep_config, overrides in zip(refs, configs, job_overrides):
            try:
                returns.append(ray.get(ref))
            except ray.exceptions.RayError as exc:  # the worker died past max_retries, or the node was lost
                returns.append(crashed_job(sweep_config, overrides, ray_failure(ray, exc)))
        return returns


def _plain(node: Any) -> Dict[str, Any]:
    if node is None:
        return {}
    if isinstance(node, DictConfig):
        return dict(OmegaConf.to_container(node, resolve=True))
    return dict(node)
