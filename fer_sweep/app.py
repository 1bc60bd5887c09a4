"""One training job: `train(cfg)` does the work; `main` adapts it to Hydra's command line.

    python -m fer_sweep model=resnet9 scheduler=onecycle trainer.epochs=30 data.path=fer2013.csv
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from fer_sweep import results, tags
from fer_sweep.augment import AUGMENTATIONS, build_augmentation
from fer_sweep.data import dataset_name, load_dataset, load_splits, resolve_path
from fer_sweep.data.batches import MEAN, STD, DeviceBatches
from fer_sweep.data.fingerprint import data_identity, describe
from fer_sweep.data.shift import shift_warning
from fer_sweep.engine.budget import FINISH_S, Deadline, epochs_within, estimate_epoch
from fer_sweep.engine.callbacks import CHECKPOINT_CHOICES, BestCheckpoint, Callback, LogEpochs, ProgressBar
from fer_sweep.engine.test_curve import TestEveryEpoch
from fer_sweep.engine.loop import evaluate, fit
from fer_sweep.engine.precision import describe_machine, resolve_device, resolve_precision
from fer_sweep.engine.techniques import EMA, AugmentationFinish, balanced_class_weights, check_tta
from fer_sweep.errors import ConfigError, UserError
from fer_sweep.models import build_model, count_parameters
from fer_sweep.models.input_crop import FACE_SIZE
from fer_sweep.optim import build_optimizer, build_schedule
from fer_sweep.saved_probs import save_probs
from fer_sweep.trackers import Trackers, build_trackers

log = logging.getLogger("fer_sweep")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"
if not CONFIG_DIR.is_dir():  # installed without the source tree: configs ship inside the package
    CONFIG_DIR = Path(__file__).resolve().parent / "conf"


def config_hash(cfg: DictConfig) -> str:
    """The resume key, 'the same job': the resolved config without where its output and its parsed-data cache
    go (environment details) and the Optuna bookkeeping, plus what it resolves to on this machine now (see
    runtime_identity). The data's content is compared apart (same_data): that needs the data loaded."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in ("hydra", "output_dir", "trial", "logger", "tags"):  # logger, tags: where results go, not the job
        plain.pop(key, None)
    (plain.get("data") or {}).pop("cache_dir", None)
    plain["runtime"] = runtime_identity(cfg)
    return hashlib.sha1(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:12]


def runtime_identity(cfg: DictConfig) -> Dict[str, str]:
    """What the same config may resolve to differently at run time: the data source (data.path, else
    $FER2013_PATH, else data/fer2013.csv, else the synthetic fallback), the device, and the precision
    (`auto` is bf16 on one machine and fp32 on another)."""
    source = "synthetic"
    if cfg.data.get("name") != "synthetic":
        path = resolve_path(cfg.data.get("path"))
        source = str(path.resolve()) if path is not None else "synthetic"
    device = resolve_device(cfg.trainer.device)
    return {"data_source": source, "device": str(device),
            "precision": resolve_precision(cfg.trainer.precision, device).name}


def same_data(previous: Dict[str, Any], cfg: DictConfig) -> bool:
    """Whether the data the job would load now has the fingerprint of the data its previous run trained on
    (a file changed in place keeps its path). Only asked before skipping a job, so a job loads its data once
    (loading is cached), except when the data did change."""
    now = data_identity(load_dataset(cfg.data))
    return all(previous.get(key) == now.get(key) for key in ("data_fingerprint", "labels_fingerprint"))


def seed_everything(seed: int) -> torch.Generator:
    """Seeds torch/numpy and returns the generator that drives batch order and augmentation."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def describe_run(cfg: DictConfig) -> Dict[str, Any]:
    """The run's identity in result.json and results.csv: component names and headline hyper-parameters."""
    return {"model": cfg.model.name, "scheduler": cfg.scheduler.name, "optimizer": cfg.optimizer.name,
            "labels": label_set(cfg.data),
            "augmentation": cfg.augmentation.name, "epochs": cfg.trainer.epochs, "lr": cfg.optimizer.lr,
            "batch_size": cfg.trainer.batch_size, "weight_decay": cfg.trainer.weight_decay,
            "seed": cfg.trainer.seed, "tags": tags.from_config(cfg)}


def label_set(data_cfg: DictConfig) -> str:
    """fer2013, or ferplus/<mode> (the FER+ votes and how they are trained on)."""
    if data_cfg.get("labels", "fer2013") == "ferplus":
        return f"ferplus/{data_cfg.get('ferplus_mode', 'majority')}"
    return str(data_cfg.get("labels", "fer2013"))


def train(cfg: DictConfig, output_dir: Optional[Path] = None, callbacks: Sequence[Callback] = ()) -> Dict[str, Any]:
    """Train and test one model as cfg says; writes the run-folder files and returns result.json's content.

    The experiment trackers of cfg.logger (fer_sweep/trackers.py) follow the run, and their runs end with its
    status (failed when train raises)."""
    out = Path(output_dir or cfg.output_dir)
    trackers = build_trackers(cfg, out)
    trackers.start(cfg)
    try:
        result = _train(cfg, out, callbacks, trackers)
    except BaseException as exc:
        trackers.finish("failed" if isinstance(exc, Exception) else "killed")
        raise
    trackers.log_result(result, out / "plots")
    trackers.finish(result["status"])
    return result


def _train(cfg: DictConfig, out: Path, callbacks: Sequence[Callback], trackers: Trackers) -> Dict[str, Any]:
    t = cfg.trainer
    tic = time.perf_counter()
    keep = checkpoint_choice(cfg)
    check_tta(t.tta)
    if t.get("finish_fraction") and t.finish_augmentation not in AUGMENTATIONS:
        raise ConfigError(f"trainer.finish_augmentation={t.finish_augmentation!r}: not an augmentation preset; "
                          f"known: {', '.join(AUGMENTATIONS.names())}")
    if t.threads:
        torch.set_num_threads(int(t.threads))
    device = resolve_device(t.device)
    precision = resolve_precision(t.precision, device)
    generator = seed_everything(int(t.seed))

    splits = load_splits(cfg.data, seed=int(t.seed))
    class_names = list(splits.train.class_names)
    dataset = dataset_name(splits.train)
    log.info("data: %s (%s) split=%s sizes %s; device %s, precision %s", dataset, splits.train.source,
             cfg.data.get("split", "seed"), splits.sizes(), device, precision.name)
    if dataset != "synthetic":
        log.info("data: %s", describe(splits.train))
    if cfg.data.get("split") == "full":
        log.info("data: split=full trains on the val split (PublicTest) too: val accuracy is not held out, and the "
                 "run keeps its last epoch")
    train_set, val_set, test_set = (DeviceBatches(s, device) for s in (splits.train, splits.val, splits.test))

    model_kwargs = {k: v for k, v in cfg.model.items() if k != "name"}
    shift = shift_warning(splits.train, splits.test) if dataset != "synthetic" else None
    if shift:
        log.warning("DATA: %s", shift)
    model = build_model(cfg.model.name, num_classes=len(class_names), **model_kwargs)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optimizer, model.parameters(), weight_decay=t.weight_decay)
    augment = build_augmentation(**train_augmentation(cfg))
    # FER+ votes train as the data config says (engine/targets.py); FER2013 and FER+ majority: one class each
    target_mode = cfg.data.get("ferplus_mode", "label") if splits.train.targets is not None else "label"
    if target_mode == "multi_target" and (t.mixup_alpha or t.cutmix_alpha or t.class_weights or t.label_smoothing):
        raise ConfigError("data.ferplus_mode=multi_target trains on sets of acceptable classes: it takes no mixup, "
                         "cutmix, class weights or label smoothing")
    # a time budget: the epochs that fit on this machine, and a deadline that keeps to it (engine/budget.py)
    epoch_cap = int(t.epochs)
    reserve_s = None
    if t.get("time_budget_s"):
        reserve_s = fit_epochs_to_budget(cfg, model, train_set, val_set, test_set, precision, augment, target_mode,
                                         tic)
    steps_per_epoch = train_set.num_batches(t.batch_size)
    schedule = build_schedule(cfg.scheduler, optimizer, t.epochs, steps_per_epoch)

    def checkpoint_payload() -> Dict[str, Any]:  # the config as of the save: a time budget may have re-planned
        return {"model": cfg.model.name, "model_kwargs": model_kwargs, "class_names": class_names,
                "normalization": {"mean": MEAN, "std": STD}, "dataset": dataset,
                "config": OmegaConf.to_container(cfg, resolve=True)}

    ema = EMA(model, t.ema_decay) if t.ema_decay else None
    scored_model = ema.model if ema else model  # what validation, the checkpoint and the test score use
    best = BestCheckpoint(scored_model, out / results.CHECKPOINT_FILE, checkpoint_payload, keep=keep)
    run_callbacks: List[Callback] = [LogEpochs(lambda: t.epochs), ProgressBar(), best, trackers, *callbacks]
    tester = None
    if t.get("test_every_epoch"):  # benchmarks only (engine/test_curve.py); first, so the others see test_acc
        tester = TestEveryEpoch(scored_model, test_set, precision, t.tta, start=tic)
        run_callbacks.insert(0, tester)
    if reserve_s is not None:  # the deadline's clock leaves out a benchmark's test scoring, as elapsed_s does
        clock = (lambda: time.perf_counter() - tester.scoring_s) if tester else time.perf_counter
        run_callbacks.append(Deadline(float(t.time_budget_s), tic, int(t.epochs), reserve_s, schedule,
                                      steps_per_epoch, cap=epoch_cap, clock=clock,
                                      on_replan=lambda epochs: setattr(t, "epochs", epochs)))
    train_augment = None if augment.is_identity else augment
    if t.get("finish_fraction") and train_augment is not None:  # after the Deadline: it reads the re-planned length
        finish = build_augmentation(t.finish_augmentation, crop=augment.crop)  # a cropped network keeps its window
        train_augment = AugmentationFinish(augment, finish, float(t.finish_fraction), lambda: t.epochs)
        run_callbacks.append(train_augment)
    class_weights = None
    if t.class_weights == "balanced":
        class_weights = balanced_class_weights(train_set.labels, len(class_names)).to(device)
    elif t.class_weights:
        raise ConfigError(f"trainer.class_weights={t.class_weights!r}; expected null or balanced")

    # torch.compile pays back on accelerators; on a CPU: +4% for resnet9 in fp32, slower epochs in bf16 (README).
    trained = torch.compile(model) if t.get("compile") else model  # same parameters; checkpoints use `model`
    history = fit(trained, train_set, val_set, optimizer, schedule, precision, lambda: t.epochs, t.batch_size,
                  augment=train_augment, generator=generator,
                  grad_clip_value=t.grad_clip_value, grad_clip_norm=t.grad_clip_norm,
                  label_smoothing=t.label_smoothing, class_weights=class_weights, ema=ema,
                  mixup_alpha=t.mixup_alpha, cutmix_alpha=t.cutmix_alpha, num_classes=len(class_names),
                  target_mode=target_mode, callbacks=run_callbacks)
    status = history.status
    if history.stopped_early and any(getattr(cb, "pruned", False) for cb in callbacks):
        status = "pruned"

    result: Dict[str, Any] = {"status": status, "dataset": dataset, "data_source": splits.train.source,
                              **data_identity(splits.train), **describe_run(cfg),
                              "params": count_parameters(model), "device": str(device),
                              "precision": precision.name, "machine": describe_machine(device),
                              "tta": t.tta, "time_budget_s": t.get("time_budget_s"), "split_sizes": splits.sizes(),
                              "class_names": class_names, "epochs_run": len(history.epochs),
                              "best_epoch": best.best_epoch or None,
                              "best_val_acc": best.best if best.best_epoch else None,
                              "final_val_acc": history.epochs[-1]["val_acc"] if history.epochs else None}
    if best.best_epoch:  # score the test split with the kept (best-val or last) weights
        state = torch.load(out / results.CHECKPOINT_FILE, weights_only=True)["state_dict"]
        scored_model.load_state_dict(state)
        test = evaluate(scored_model, test_set, precision, tta=t.tta)
        save_probs(out / results.PROBS_FILE, test.probs, test.labels, class_names, "PrivateTest", t.tta,
                   data_identity(splits.train), source=str(out), data_cfg=cfg.data)
        matrix = confusion_matrix(test.labels.numpy(), test.preds.numpy(), len(class_names))
        per_class = matrix.diagonal() / np.maximum(matrix.sum(1), 1)
        result.update(test_acc=test.acc, test_loss=test.loss,
                      per_class_test_acc={c: float(a) for c, a in zip(class_names, per_class)},
                      confusion_matrix=matrix.tolist())
    else:
        result.update(test_acc=None, test_loss=None, per_class_test_acc=None)
    result["train_time_s"] = time.perf_counter() - tic
    result["error"] = "loss became NaN/inf" if status == "diverged" else None

    results.write_history(out, history.epochs)
    if t.plots:
        from fer_sweep.plots import plot_confusion, plot_history

        plot_history(history.epochs, history.batch_lr, out / "plots")
        if result.get("confusion_matrix"):
            title = f"{cfg.model.name} / {cfg.scheduler.name}: test acc {result['test_acc']:.3f}"
            plot_confusion(np.array(result["confusion_matrix"]), class_names, out / "plots/confusion.png", title)
    log.info("%s: best val acc %s (epoch %s), test acc %s, %.0fs", status, _fmt(result["best_val_acc"]),
             result["best_epoch"], _fmt(result["test_acc"]), result["train_time_s"])
    return result


def train_augmentation(cfg: DictConfig) -> Dict[str, Any]:
    """cfg.augmentation, plus the random crop that a network seeing model.input_crop windows trains on."""
    fields = dict(cfg.augmentation)
    crop = cfg.model.get("input_crop")
    if crop and int(crop) < FACE_SIZE:  # as with_input_crop reads it: the face's own size means no crop
        if fields.get("crop") not in (None, 0, crop):
            raise ConfigError(f"augmentation.crop={fields['crop']} but model.input_crop={crop}: the network trains "
                              "on the crops it is built for; set model.input_crop alone")
        fields["crop"] = int(crop)
    return fields


def fit_epochs_to_budget(cfg: DictConfig, model, train_set, val_set, test_set, precision, augment, target_mode: str,
                         tic: float) -> float:
    """Set cfg.trainer.epochs to the most that fit in trainer.time_budget_s (counted from `tic`, the run's start),
    capped at its current value (the run's Deadline keeps it up to date as the run goes on), so the schedule,
    the logs, result.json and the checkpoint's config all say what ran.
    Returns the seconds to keep free after the last epoch (the test pass and the run's files)."""
    t = cfg.trainer
    make_optimizer = functools.partial(build_optimizer, cfg.optimizer, weight_decay=t.weight_decay)
    estimate = estimate_epoch(model, make_optimizer, train_set, val_set, test_set, precision, int(t.batch_size),
                              None if augment.is_identity else augment, t.tta, target_mode)
    epochs = epochs_within(float(t.time_budget_s), time.perf_counter() - tic, estimate, cap=int(t.epochs))
    log.info("time budget %.0f s: an epoch takes ~%.1f s here (%d steps of %.0f ms, validation %.1f s), the test "
             "pass ~%.0f s -> %d epochs (trainer.epochs=%d is the cap)", float(t.time_budget_s), estimate.epoch_s,
             estimate.steps_per_epoch, estimate.step_s * 1000, estimate.val_s, estimate.test_s, epochs,
             int(t.epochs))
    t.epochs = epochs
    return estimate.test_s + FINISH_S


def checkpoint_choice(cfg: DictConfig) -> str:
    """best_val or last: which epoch's weights the run keeps and tests (trainer.checkpoint), checked against the
    split: with data.split=full the val faces are trained on, so only the last epoch is an honest choice."""
    choice = cfg.trainer.get("checkpoint", "best_val")
    if choice not in CHECKPOINT_CHOICES:
        raise ConfigError(f"trainer.checkpoint={choice!r}; expected best_val or last")
    if cfg.data.get("split") == "full" and choice != "last":
        raise ConfigError("data.split=full trains on PublicTest, the val split, so its best-val epoch is picked on "
                          "training faces: add trainer.checkpoint=last")
    return choice


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels * num_classes + preds, minlength=num_classes**2).reshape(num_classes, num_classes)


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def objective_value(result: Dict[str, Any], objective) -> Any:
    """What the job returns to a sweeper: one metric (float) or several (list) named by cfg.objective."""
    names = [objective] if isinstance(objective, str) else list(objective)
    values = [result.get(n) for n in names]
    values = [float("nan") if v is None else float(v) for v in values]
    return values[0] if isinstance(objective, str) else values


def run_job(cfg: DictConfig, callbacks: Sequence[Callback] = ()) -> Dict[str, Any]:
    """train() plus what a job in a sweep needs: job identity in result.json, resume, and failure records.

    A job that is not skipped first replaces its folder's previous record with status `running` (and removes
    the previous checkpoint and history), atomically, so a run killed half-way never leaves an earlier run's
    `completed` row or weights behind, and resume runs it again."""
    out = Path(cfg.output_dir)
    identity = job_identity()
    if cfg.get("trial"):  # an Optuna trial: the sweeper adds its state and value(s) after telling the study
        identity["trial"] = {"number": cfg.trial.number, "study": cfg.trial.study}
    try:
        identity = {"config_hash": config_hash(cfg), **identity}
        previous = results.read_result(out)
        if (previous and previous.get("status") == "completed"
                and previous.get("config_hash") == identity["config_hash"] and same_data(previous, cfg)):
            log.info("%s already completed for this config: skipping (resume)", out)
            return previous
        results.write_json(out / results.RESULT_FILE, {"status": "running", **describe_run(cfg), **identity,
                                                       "output_dir": str(out)})
        for stale in (results.CHECKPOINT_FILE, results.HISTORY_FILE, results.PROBS_FILE):
            (out / stale).unlink(missing_ok=True)
        result = {**train(cfg, out, callbacks), **identity, "output_dir": str(out)}
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        result = {"status": "failed", **describe_run(cfg), "error": error, **identity, "output_dir": str(out)}
        results.write_json(out / results.RESULT_FILE, result)
        log.error("%s failed: %s", "run" if identity.get("job") is None else f"job {identity['job']}",
                  error.splitlines()[0] if error.strip() else error)
        log.debug("job failed:\n%s", traceback.format_exc())
        raise
    results.write_json(out / results.RESULT_FILE, result)
    return result


def job_identity() -> Dict[str, Any]:
    """Job number, command-line overrides and group choices when running under Hydra; empty otherwise."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    return {"job": hc.job.get("num"), "overrides": list(hc.overrides.task),
            "choices": {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/")}}


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> Any:
    callbacks = []
    if cfg.get("trial"):  # launched by the Optuna sweeper: report each epoch to the trial, stop when pruned
        from fer_sweep.sweep.pruning import TrialPruning

        callbacks.append(TrialPruning.from_config(cfg.trial))
    try:
        result = run_job(cfg, callbacks)
    except UserError as exc:
        if not single_run() or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise  # a sweep records the job's failure; HYDRA_FULL_ERROR=1 asks for the traceback
        print(f"fer_sweep: error: {exc}", file=sys.stderr)  # bad input, not a bug: no traceback
        raise SystemExit(2) from None
    return objective_value(result, cfg.objective)


def single_run() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return not HydraConfig.initialized() or HydraConfig.get().mode == RunMode.RUN


if __name__ == "__main__":
    main()
