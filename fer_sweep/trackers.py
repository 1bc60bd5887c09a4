"""Experiment trackers, chosen by the `logger` config group: TensorBoard event files, MLflow runs and W&B runs.

    python -m fer_sweep logger=tensorboard                  # <run dir>/tensorboard/
    python -m fer_sweep --multirun logger=mlflow model=cnn,resnet9   # one MLflow experiment for the sweep

Each tracker is a training-loop Callback (fer_sweep/engine/callbacks.py): per epoch it logs train/val loss and
accuracy, the learning rate and the epoch time. Around the loop, train() (fer_sweep/app.py) calls `start(cfg)`
(the resolved config as parameters), `log_plan(cfg)` (a time budget's planned epochs, once they ran),
`log_result(result, plots_dir)` (result.json's metrics and the plots) and
`finish(status)` (completed, failed, diverged, pruned or killed), also when the job fails.

A run continued from its last.pt (fer_sweep/engine/resume.py) continues its trackers' runs too: the tracker's
`state_dict()` (MLflow's run id, TensorBoard's folder and last step) is in last.pt, and `load_state_dict()`
before `start` makes MLflow reopen that run and TensorBoard write on from the next epoch (steps after the
saved one are purged: no duplicate points).

A tracker is a side channel: `Trackers` wraps every call, so a tracker that fails (disk full, server down) logs
one warning and is off for the rest of the run, and training goes on. A tracker whose package is not installed
stops the run before it trains, with one line naming the extra to install (fer_sweep/extras.py).
"""
from __future__ import annotations

import contextlib
import logging
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from fer_sweep import tags as run_tags  # the run's labels (MLflow's own run tags are `tags` below)
from fer_sweep.engine.callbacks import Callback
from fer_sweep.errors import ConfigError, UnknownNameError
from fer_sweep.extras import require

log = logging.getLogger("fer_sweep")

# per epoch: history.csv's columns
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s")
FINAL_METRICS = ("test_acc", "test_loss", "best_val_acc", "best_epoch", "final_val_acc", "epochs_run",
                 "train_time_s", "params")  # result.json's numbers (and per_class_test_acc, by class)


@dataclass
class RunContext:
    """Where a run sits: its folder, the folder its sweep's shared files go to, job and trial numbers."""
    output_dir: Path
    root: Path                      # the sweep folder in a multirun, else the run folder
    sweep: bool
    job: Optional[int] = None
    trial: Optional[int] = None

    @property
    def experiment(self) -> str:
        """MLflow's default experiment name: the sweep folder (or the run folder) as given."""
        return str(self.root)

    @property
    def run_name(self) -> str:
        if not self.sweep:
            return self.output_dir.name
        return f"job-{self.job}" + (f"-trial-{self.trial}" if self.trial is not None else "")


def run_context(cfg: DictConfig, output_dir: Path) -> RunContext:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    output_dir = Path(output_dir)
    trial = cfg.trial.get("number") if cfg.get("trial") else None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return RunContext(output_dir, Path(hc.sweep.dir), True, hc.job.get("num"), trial)
    return RunContext(output_dir, output_dir, False, None, trial)


def job_config(cfg: DictConfig) -> Dict[str, Any]:
    """The resolved config a tracker records: the job's parameters, so without hydra's node, the Optuna
    bookkeeping (trial: its number is a tag) and logger (whose URLs may hold credentials)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in ("hydra", "trial", "logger"):
        plain.pop(key, None)
    return plain


def planned_later(cfg: DictConfig) -> bool:
    """A time budget plans trainer.epochs after the trackers start (engine/budget.py): its value at the start is
    the cap, so trackers log it once the plan has run (log_plan), not at the start."""
    return bool(cfg.trainer.get("time_budget_s")) if cfg.get("trainer") is not None else False


def start_params(cfg: DictConfig) -> Dict[str, Any]:
    """flat_config without what is planned later."""
    params = flat_config(cfg)
    if planned_later(cfg):
        params.pop("trainer.epochs", None)
    return params


def config_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(job_config(cfg)))


def flat_config(cfg: DictConfig) -> Dict[str, Any]:
    """job_config flattened: {"model.name": "cnn", "optimizer.lr": 0.001, ...}."""
    plain = job_config(cfg)
    flat: Dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(plain, "")
    return flat


def plain_value(value: Any) -> Any:
    """A value TensorBoard's hparams and MLflow's params take: numbers and strings as they are, the rest
    (None, booleans, lists) as text."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return value
    return str(value)


def final_metrics(result: Mapping[str, Any]) -> Dict[str, float]:
    """The numbers of result.json a tracker logs at the end: FINAL_METRICS, and test_acc_<class> per class;
    never a best val accuracy of a run that trained on its val split (val_held_out false)."""
    out = {k: float(result[k]) for k in FINAL_METRICS if isinstance(result.get(k), (int, float))}
    if result.get("val_held_out") is False:
        out.pop("best_val_acc", None)
    for name, acc in (result.get("per_class_test_acc") or {}).items():
        out[f"test_acc_{name}"] = float(acc)
    return out


def plot_files(plots_dir: Optional[Path]) -> List[Path]:
    return sorted(Path(plots_dir).glob("*.png")) if plots_dir is not None and Path(plots_dir).is_dir() else []


class Tracker(Callback):
    """One tracker: start(cfg), the loop's callbacks, log_result(result, plots_dir), finish(status), and
    close()."""
    name = "tracker"

    def __init__(self, settings: Mapping[str, Any], context: RunContext):
        self.settings, self.context = dict(settings), context

    def start(self, cfg: DictConfig) -> None: ...

    def log_plan(self, cfg: DictConfig) -> None:
        """After training: a time budget's plan (trainer.epochs), left out of start's parameters (planned_later)."""

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def log_result(self, result: Mapping[str, Any], plots_dir: Optional[Path]) -> None: ...

    def finish(self, status: str) -> None: ...

    def close(self) -> None:
        """Release local resources only (no network): also called on a tracker that failed."""


class TensorBoardTracker(Tracker):
    """Event files in <run dir>/<log_dir>: scalars per epoch, hparams (the flattened config), result.json's
    metrics, the plots as images and the resolved config as text. `tensorboard --logdir <sweep dir>` shows
    every job of a sweep side by side, and its HPARAMS tab compares them."""
    name = "tensorboard"
    STATUS = {"completed": "STATUS_SUCCESS", "failed": "STATUS_FAILURE", "diverged": "STATUS_FAILURE",
              "pruned": "STATUS_UNKNOWN", "killed": "STATUS_UNKNOWN"}
    HPARAM_METRICS = ("test/acc", "test/loss", "val/best_acc")
    FINAL_TAGS = {"test_acc": "test/acc", "test_loss": "test/loss", "best_val_acc": "val/best_acc",
                  "final_val_acc": "val/final_acc"}  # the rest: result/<key>, and test/acc_<class>

    def __init__(self, settings: Mapping[str, Any], context: RunContext):
        super().__init__(settings, context)
        log_dir = Path(self.settings.get("log_dir") or "tensorboard")
        self.log_dir = log_dir if log_dir.is_absolute() else context.output_dir / log_dir
        self.writer = None
        self.last_epoch = 0
        self.purge_step: Optional[int] = None  # a continued run: the first epoch it logs again

    def state_dict(self) -> Dict[str, Any]:
        return {"log_dir": str(self.log_dir), "step": self.last_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("log_dir") == str(self.log_dir):
            self.last_epoch = int(state["step"])
            self.purge_step = self.last_epoch + 1

    def start(self, cfg: DictConfig) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=self.purge_step)
        if self.purge_step is not None:
            return  # continued: the folder holds this run's hparams from its first start (a budget's: log_plan's)
        if not planned_later(cfg):  # else log_plan writes them: TensorBoard keeps a run's first hparams only
            self._hparams(cfg)

    def _hparams(self, cfg: DictConfig) -> None:
        from torch.utils.tensorboard.summary import hparams

        values = {k: plain_value(v) for k, v in flat_config(cfg).items()}
        labels = run_tags.from_config(cfg)
        values["tags"] = run_tags.joined(labels) or ""  # one text field the HPARAMS tab can filter on
        held_out = cfg.data.get("split", "seed") != "full"  # else no best val accuracy to compare runs by
        metrics = [m for m in self.HPARAM_METRICS if held_out or m != "val/best_acc"]
        experiment, session_start, _ = hparams(values, {m: 0.0 for m in metrics})
        file_writer = self.writer._get_file_writer()
        file_writer.add_summary(experiment)
        file_writer.add_summary(session_start)
        self.writer.add_text("config", "```\n" + config_yaml(cfg) + "```")
        if labels:
            self.writer.add_text("tags", ", ".join(labels))

    def log_plan(self, cfg: DictConfig) -> None:
        if planned_later(cfg):
            self._hparams(cfg)

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        for key in EPOCH_METRICS:
            if key in metrics:
                split, _, what = key.partition("_")
                tag = f"{split}/{what}" if split in ("train", "val") else key
                self.writer.add_scalar(tag, float(metrics[key]), epoch)
        self.last_epoch = epoch
        self.writer.flush()  # before last.pt records this epoch: a killed run loses no logged epoch
        return False

    def on_train_end(self, history: Any) -> None:
        self.writer.flush()

    def log_result(self, result: Mapping[str, Any], plots_dir: Optional[Path]) -> None:
        import numpy as np
        from PIL import Image

        step = int(result.get("epochs_run") or self.last_epoch)
        for key, value in final_metrics(result).items():
            tag = self.FINAL_TAGS.get(key) or (key.replace("test_acc_", "test/acc_", 1)
                                               if key.startswith("test_acc_") else f"result/{key}")
            self.writer.add_scalar(tag, value, step)
        if self.settings.get("log_plots", True):
            for png in plot_files(plots_dir):
                with Image.open(png) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self.writer.add_image(f"plots/{png.stem}", pixels, step, dataformats="HWC")

    def finish(self, status: str) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        self.writer.add_text("status", status, self.last_epoch)
        code = api_pb2.Status.Value(self.STATUS.get(status, "STATUS_UNKNOWN"))
        end = plugin_data_pb2.SessionEndInfo(status=code, end_time_secs=time.time())
        content = plugin_data_pb2.HParamsPluginData(session_end_info=end,
                                                    version=metadata.PLUGIN_DATA_VERSION)
        smd = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME,
                                                                     content=content.SerializeToString()))
        self.writer._get_file_writer().add_summary(
            Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=smd)]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's own deprecation notices (e.g. SQLAlchemy 2.1's on MLflow's ORM mappings): not the user's to
    fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


@contextlib.contextmanager
def _file_lock(path: Optional[Path]) -> Iterator[None]:
    """Serialise the first use of a local SQLite store across a sweep's parallel jobs (table creation, the
    experiment's get-or-create); no lock for a server, or where fcntl is missing."""
    if path is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class MLflowTracker(Tracker):
    """One MLflow run per job, in one experiment per sweep (named after the sweep folder), in a local SQLite
    store by default (<sweep or run folder>/mlflow.db, artifacts in mlartifacts/ beside it) or at
    `tracking_uri`.
    Params: the flattened config. Metrics: per epoch (step = epoch), then result.json's. Tags: job, trial,
    status, and the run's tags (`tags`: a;b, and `tag.<name>`: true for each). Artifacts: plots/*.png,
    history.csv, config.yaml. The run ends FINISHED (completed), KILLED (pruned) or FAILED (failed, diverged)."""
    name = "mlflow"
    STATUS = {"completed": "FINISHED", "failed": "FAILED", "diverged": "FAILED", "pruned": "KILLED",
              "killed": "KILLED"}
    BATCH = 100  # MLflow's log_batch takes at most 100 params or tags (1000 metrics) per call
    MAX_PARAM = 6000

    def __init__(self, settings: Mapping[str, Any], context: RunContext):
        super().__init__(settings, context)
        self.client = None
        self.run_id: Optional[str] = None
        self.continue_run: Optional[str] = None  # a continued run: the MLflow run it logged to
        self.db_path: Optional[Path] = None
        uri = self.settings.get("tracking_uri")
        if not uri:
            self.db_path = (context.root / "mlflow.db").resolve()
            uri = f"sqlite:///{self.db_path}"
        elif str(uri).startswith("sqlite:///"):
            self.db_path = Path(str(uri)[len("sqlite:///"):]).resolve()
        self.tracking_uri = str(uri)

    def _artifact_location(self) -> Optional[str]:
        if self.settings.get("artifact_location"):
            return str(self.settings["artifact_location"])
        if self.db_path is not None:  # a local store: artifacts beside it, not in the current folder
            return (self.db_path.parent / "mlartifacts").as_uri()
        return None  # a server: its own default artifact root

    def _check_server(self) -> None:
        """Fail fast (one warning, none of MLflow's retries with back-off) when an http(s) tracking server
        does not answer."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return
        timeout = float(self.settings.get("connect_timeout_s") or 10)
        try:
            urllib.request.urlopen(self.tracking_uri.rstrip("/") + "/health", timeout=timeout).close()
        except urllib.error.HTTPError:
            pass  # it answered (a proxy or an auth layer may refuse /health): the server is there
        except OSError as exc:
            raise ConnectionError(f"no MLflow server answers at {self.tracking_uri}: {exc}") from exc

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return self.client.create_experiment(name, artifact_location=self._artifact_location())
            except MlflowException:  # another job created it meanwhile (a server: no file lock)
                experiment = self.client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def state_dict(self) -> Dict[str, Any]:
        return {"run_id": self.run_id, "tracking_uri": self.tracking_uri}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("run_id") and state.get("tracking_uri") == self.tracking_uri:
            self.continue_run = str(state["run_id"])

    def _reopen(self) -> bool:
        """Continue the run of the saved run id, if the store still has it: RUNNING again, params as logged."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(self.continue_run)
        except MlflowException:
            log.warning("logger mlflow: run %s is not in %s any more; logging to a new run", self.continue_run,
                        self.tracking_uri)
            return False
        if run.info.lifecycle_stage == "deleted":
            return False
        self.run_id = run.info.run_id
        self.client.update_run(self.run_id, status="RUNNING")
        self.client.set_tag(self.run_id, "status", "running")
        return True

    def start(self, cfg: DictConfig) -> None:
        self._check_server()
        with _quiet():
            from mlflow import MlflowClient
            from mlflow.entities import Param

            if self.db_path is not None:
                self.db_path.parent.mkdir(parents=True, exist_ok=True)
            lock = self.db_path.with_name(f".{self.db_path.name}.lock") if self.db_path is not None else None
            ctx = self.context
            with _file_lock(lock):  # the client creates a new store's tables at once
                self.client = MlflowClient(tracking_uri=self.tracking_uri)
                experiment_id = self._experiment_id(self.settings.get("experiment_name") or ctx.experiment)
            if self.continue_run and self._reopen():
                return
            tags = {"status": "running", "output_dir": str(ctx.output_dir), "model": cfg.model.name,
                    "scheduler": cfg.scheduler.name, "optimizer": cfg.optimizer.name}
            if ctx.sweep:
                tags["sweep_dir"] = str(ctx.root)
            if ctx.job is not None:
                tags["job"] = str(ctx.job)
            if ctx.trial is not None:
                tags["trial"] = str(ctx.trial)
            labels = run_tags.from_config(cfg)  # the run's tags: one `tags` tag, and tag.<name> for each
            if labels:
                tags.update({"tags": run_tags.joined(labels), **{f"tag.{t}": "true" for t in labels}})
            tags.update({str(k): str(v) for k, v in (self.settings.get("tags") or {}).items()})
            run_name = self.settings.get("run_name") or ctx.run_name
            run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
            self.run_id = run.info.run_id
            params = [Param(k, str(plain_value(v))[:self.MAX_PARAM]) for k, v in start_params(cfg).items()]
            for i in range(0, len(params), self.BATCH):
                self.client.log_batch(self.run_id, params=params[i:i + self.BATCH])
            self.client.log_text(self.run_id, config_yaml(cfg), "config.yaml")

    def log_plan(self, cfg: DictConfig) -> None:
        if planned_later(cfg):  # MLflow's params are set once: the plan that ran, and the config as it ran
            with _quiet():
                self.client.log_param(self.run_id, "trainer.epochs", str(cfg.trainer.epochs))
                self.client.log_text(self.run_id, config_yaml(cfg), "config.yaml")

    def _metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with _quiet():
            metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
            self.client.log_batch(self.run_id, metrics=metrics)

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        self._metrics({k: metrics[k] for k in EPOCH_METRICS if k in metrics}, epoch)
        return False

    def log_result(self, result: Mapping[str, Any], plots_dir: Optional[Path]) -> None:
        from mlflow.entities import RunTag

        self._metrics(final_metrics(result), int(result.get("epochs_run") or 0))
        with _quiet():
            tags = {k: str(result[k]) for k in ("dataset", "device", "precision", "cpu_kind", "recipe", "split",
                                                 "checkpoint", "tta", "val_held_out")
                    if result.get(k) is not None}
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            if self.settings.get("log_plots", True):
                for png in plot_files(plots_dir):
                    self.client.log_artifact(self.run_id, str(png), "plots")
            history = self.context.output_dir / "history.csv"
            if history.is_file():
                self.client.log_artifact(self.run_id, str(history))

    def finish(self, status: str) -> None:
        if self.run_id is None:
            return
        with _quiet():
            self.client.set_tag(self.run_id, "status", status)
            self.client.set_terminated(self.run_id, self.STATUS.get(status, "FAILED"))


class WandbTracker(Tracker):
    """One W&B run per job, offline by default: <sweep or run folder>/wandb/offline-run-*/ holds it, no account
    or network needed (`wandb sync <that folder>` uploads it later); `mode: online` logs to the server at once.
    Runs of a sweep share a group (the sweep folder, as given), named job-N (job-N-trial-M for Optuna).
    Config: the resolved config (without hydra, trial and logger) plus job, trial and output_dir. Metrics per
    epoch, step = epoch, under TensorBoard's names (train/loss, val/acc, lr, ...); the plots as images at the
    last epoch. Summary: result.json's metrics (test_acc, test_loss, best_val_acc, test_acc_<class>, ...),
    dataset, device, precision and status. Tags: cfg.tags and the tracker's own. The run ends with exit code 0
    when the job completed or was pruned, 1 otherwise (W&B shows it as failed)."""
    name = "wandb"
    MODES = ("offline", "online", "disabled")
    MAX_TAG = 64  # W&B's limit on a tag
    MAX_GROUP = 128

    def __init__(self, settings: Mapping[str, Any], context: RunContext):
        super().__init__(settings, context)
        mode = str(self.settings.get("mode") or "offline")
        if mode not in self.MODES:
            raise ConfigError(f"logger.wandb.mode={mode!r}: expected one of {', '.join(self.MODES)}")
        self.mode = mode
        folder = Path(self.settings.get("dir") or context.root)
        self.dir = folder if folder.is_absolute() else Path.cwd() / folder
        self.run = None
        self.last_epoch = 0

    def tags(self, cfg: DictConfig) -> List[str]:
        tags = [str(t) for t in (cfg.get("tags") or [])] + [str(t) for t in (self.settings.get("tags") or [])]
        return list(dict.fromkeys(t[:self.MAX_TAG] for t in tags if t))

    def start(self, cfg: DictConfig) -> None:
        import wandb  # installed: build_trackers required it (the `trackers` extra)

        ctx = self.context
        config = job_config(cfg)
        config.update({k: v for k, v in (("job", ctx.job), ("trial", ctx.trial)) if v is not None})
        config["output_dir"] = str(ctx.output_dir)
        group = self.settings.get("group") or (str(ctx.root)[-self.MAX_GROUP:] if ctx.sweep else None)
        self.dir.mkdir(parents=True, exist_ok=True)
        run_settings = {"console": str(self.settings.get("console") or "off"),
                        **(self.settings.get("settings") or {})}
        self.run = wandb.init(mode=self.mode, project=self.settings.get("project") or "fer_sweep",
                              entity=self.settings.get("entity"), dir=str(self.dir), group=group,
                              name=self.settings.get("name") or ctx.run_name,
                              job_type=self.settings.get("job_type") or "train", config=config,
                              tags=self.tags(cfg), reinit="create_new", settings=wandb.Settings(**run_settings))

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        values = {}
        for key in EPOCH_METRICS:
            if key in metrics:
                split, _, what = key.partition("_")
                values[f"{split}/{what}" if split in ("train", "val") else key] = float(metrics[key])
        self.run.log(values, step=epoch)
        self.last_epoch = epoch
        return False

    def log_result(self, result: Mapping[str, Any], plots_dir: Optional[Path]) -> None:
        import wandb

        summary: Dict[str, Any] = dict(final_metrics(result))
        summary.update({k: str(result[k]) for k in ("dataset", "device", "precision") if result.get(k) is not None})
        self.run.summary.update(summary)
        if self.settings.get("log_plots", True):
            images = {f"plots/{png.stem}": wandb.Image(str(png)) for png in plot_files(plots_dir)}
            if images:
                self.run.log(images, step=max(self.last_epoch, int(result.get("epochs_run") or 0)))

    def finish(self, status: str) -> None:
        if self.run is None:
            return
        run, self.run = self.run, None
        run.summary["status"] = status
        run.finish(exit_code=0 if status in ("completed", "pruned") else 1)


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}
TRACKER_MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # the `trackers` extra


class Trackers(Callback):
    """The run's trackers as one Callback. Every call is wrapped: the first exception of a tracker logs one
    warning and turns that tracker off for the rest of the run; training never fails because of one."""

    def __init__(self, trackers: Sequence[Tracker] = ()):
        self.trackers = list(trackers)
        self.failed: Dict[str, str] = {}  # tracker name -> the method it failed in

    def _each(self, method: str, *args: Any) -> None:
        for tracker in self.trackers:
            if tracker.name in self.failed:
                continue
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # a side channel: never let it stop training
                self.failed[tracker.name] = method
                error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                log.warning("logger %s failed in %s and is off for the rest of this run (training goes on): "
                            "%s", tracker.name, method, error)
                log.debug("logger %s failed", tracker.name, exc_info=True)

    state_key = "trackers"

    def start(self, cfg: DictConfig) -> None:
        self._each("start", cfg)

    def state_dict(self) -> Dict[str, Any]:
        return {t.name: t.state_dict() for t in self.trackers if t.name not in self.failed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for tracker in self.trackers:
            if state.get(tracker.name):
                tracker.load_state_dict(state[tracker.name])

    def on_train_start(self, num_batches: int) -> None:
        self._each("on_train_start", num_batches)

    def on_batch_end(self, step: int, loss: Optional[float]) -> None:
        self._each("on_batch_end", step, loss)

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        self._each("on_epoch_end", epoch, metrics)
        return False

    def on_train_end(self, history: Any) -> None:
        self._each("on_train_end", history)

    def log_plan(self, cfg: DictConfig) -> None:
        self._each("log_plan", cfg)

    def log_result(self, result: Mapping[str, Any], plots_dir: Optional[Path]) -> None:
        self._each("log_result", result, plots_dir)

    def finish(self, status: str) -> None:
        """End every tracker's run with the job's status, then release what each holds (failed ones too).
        A tracker that failed after its start is still asked, quietly, to end its run, so that the run is not
        left RUNNING."""
        for tracker in self.trackers:
            if self.failed.get(tracker.name) not in (None, "start", "finish"):
                try:
                    tracker.finish(status)
                except Exception:
                    log.debug("logger %s: finish after a failure failed too", tracker.name, exc_info=True)
        self._each("finish", status)
        for tracker in self.trackers:
            try:
                tracker.close()
            except Exception:
                log.debug("logger %s: close failed", tracker.name, exc_info=True)


def build_trackers(cfg: DictConfig, output_dir: Path) -> Trackers:
    """The trackers cfg.logger names (logger=none: none). An unknown name fails at once, with the known ones;
    a tracker set to null (e.g. `~logger.mlflow`) is left out."""
    settings = cfg.get("logger") or {}
    unknown = sorted(set(settings) - set(TRACKERS))
    if unknown:
        raise UnknownNameError(f"unknown logger {unknown[0]!r}; known loggers: {', '.join(sorted(TRACKERS))}")
    chosen = {name: s for name, s in settings.items() if s is not None}
    if not chosen:
        return Trackers()
    for name in chosen:  # a tracker whose package is not installed: one line naming the extra, before training
        if name in TRACKER_MODULES:
            require(TRACKER_MODULES[name], f"logger={name}")
    context = run_context(cfg, output_dir)
    return Trackers([TRACKERS[name](OmegaConf.to_container(s, resolve=True), context)
                     for name, s in chosen.items()])
