"""One training job: `train(cfg)` does the work; `main` adapts it to Hydra's command line.

    python -m fer_sweep model=resnet9 scheduler=onecycle trainer.epochs=30 data.path=fer2013.csv
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

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
from fer_sweep.engine.budget import FINISH_S, Deadline, epochs_within, estimate_epoch, record_plan
from fer_sweep.engine import resume as run_state
from fer_sweep.engine.callbacks import (CHECKPOINT_CHOICES, BestCheckpoint, Callback, EarlyStopping, LogEpochs,
                                        ProgressBar)
from fer_sweep.engine.test_curve import TestEveryEpoch
from fer_sweep.engine.loop import History, evaluate, fit
from fer_sweep.engine.precision import cpu_kind, describe_machine, resolve_device, resolve_precision
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
    return key_of(resume_config(cfg))


def resume_config(cfg: DictConfig) -> Dict[str, Any]:
    """What config_hash hashes; last.pt keeps it to name the settings in which another run's config differs.
    Neither trainer.resume (how to start, not what runs) nor early stopping while off (its default) enters it."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    # logger, tags: where results are tracked and labels to find them, not the job; recipe: the name of what the
    # rest of the config says
    for key in ("hydra", "output_dir", "trial", "logger", "recipe", "tags"):
        plain.pop(key, None)
    (plain.get("data") or {}).pop("cache_dir", None)
    trainer = plain.get("trainer") or {}
    trainer.pop("resume", None)
    if not (trainer.get("early_stopping") or {}).get("patience"):
        trainer.pop("early_stopping", None)
    plain["runtime"] = runtime_identity(cfg)
    return plain


def key_of(plain: Dict[str, Any]) -> str:
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
            "seed": cfg.trainer.seed, "tags": tags.from_config(cfg), **run_settings(cfg)}


def run_settings(cfg: DictConfig) -> Dict[str, Any]:
    """What a run's numbers mean, recorded whether or not the command line typed them: the recipe, the split,
    which epoch was kept, the TTA, the time budget, the machine kind, and whether the val split was held out
    (data.split=full trains on it: then best_val_acc is left empty)."""
    split = cfg.data.get("split", "seed")
    return {"recipe": cfg.get("recipe"), "split": split, "checkpoint": cfg.trainer.get("checkpoint", "best_val"),
            "tta": cfg.trainer.get("tta", "none"), "time_budget_s": cfg.trainer.get("time_budget_s"),
            "cpu_kind": job_cpu_kind(cfg), "val_held_out": val_held_out(cfg)}


def val_held_out(cfg: DictConfig) -> bool:
    """False when the run trains on its val split (data.split=full): its val accuracy is not a held-out score."""
    return cfg.data.get("split", "seed") != "full"


def job_cpu_kind(cfg: DictConfig) -> Optional[str]:
    """cpu_kind of the device the job asks for; None where that can't be known (a failed job's record must
    still be written, whatever broke)."""
    try:
        return cpu_kind(resolve_device(cfg.trainer.device))
    except Exception:  # noqa: BLE001 - an unknown machine kind is an empty cell, not a second failure
        return None


def label_set(data_cfg: DictConfig) -> str:
    """fer2013, or ferplus/<mode> (the FER+ votes and how they are trained on)."""
    if data_cfg.get("labels", "fer2013") == "ferplus":
        return f"ferplus/{data_cfg.get('ferplus_mode', 'majority')}"
    return str(data_cfg.get("labels", "fer2013"))


def train(cfg: DictConfig, output_dir: Optional[Path] = None, callbacks: Sequence[Callback] = (),
          resume: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Train and test one model as cfg says; writes the run-folder files and returns result.json's content.

    `resume`, a run state read from last.pt (engine/resume.py, found by run_job), continues that run: its
    remaining epochs, then the test pass. Every epoch writes last.pt; the finished run removes it.
    The experiment trackers of cfg.logger (fer_sweep/trackers.py) follow the run, and their runs end with its
    status (failed when train raises); a continued run continues theirs."""
    out = Path(output_dir or cfg.output_dir)
    trackers = build_trackers(cfg, out)
    if resume is not None:
        trackers.load_state_dict((resume.get("callbacks") or {}).get(trackers.state_key) or {})
    trackers.start(cfg)
    try:
        result = _train(cfg, out, callbacks, trackers, resume)
    except BaseException as exc:
        trackers.finish("failed" if isinstance(exc, Exception) else "killed")
        raise
    trackers.log_plan(cfg)  # a time budget's plan is known now (trainer.epochs): logged once, as it ran
    trackers.log_result(result, out / "plots")
    trackers.finish(result["status"])
    run_state.remove_state(out)  # the run is over: best.pt, history and result are its record
    return result


def _train(cfg: DictConfig, out: Path, callbacks: Sequence[Callback], trackers: Trackers,
           resume: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    t = cfg.trainer
    tic = time.perf_counter()
    progress: Dict[str, Any] = {"epoch": None}  # the last completed epoch, for an interruption's message
    try:
        return _train_run(cfg, out, callbacks, trackers, resume, tic, progress)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (main: run_state.sigterm_interrupts)
        signum = exc.signum if isinstance(exc, run_state.Interrupted) else signal.SIGINT
        raise run_state.Interrupted(signum, progress["epoch"], int(t.epochs)) from None


def _train_run(cfg: DictConfig, out: Path, callbacks: Sequence[Callback], trackers: Trackers,
               resume: Optional[Dict[str, Any]], tic: float, progress: Dict[str, Any]) -> Dict[str, Any]:
    t = cfg.trainer
    plain_config = resume_config(cfg)
    key = key_of(plain_config)
    spent_before = float(resume["train_time_s"]) if resume else 0.0  # earlier attempts' train time
    restarts = int(resume["restarts"]) + 1 if resume else 0
    progress["epoch"] = int(resume["epoch"]) if resume else None
    keep = checkpoint_choice(cfg)
    check_held_out_objective(cfg)
    patience = early_stopping_patience(cfg)
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
    identity = data_identity(splits.train)
    if resume is not None and resume.get("data") and resume["data"] != identity:
        raise UserError(f"{resume['path']} holds a run on other data (fingerprint "
                        f"{resume['data'].get('data_fingerprint')} -> {identity.get('data_fingerprint')}); use "
                        "another run folder or trainer.resume=never")
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
    reserve_s = epoch_s = None
    if resume is not None:  # a continued run keeps its plan
        t.epochs = int(resume["planned"])
        reserve_s = resume.get("reserve_s")
        planned_on = ((resume.get("callbacks") or {}).get("Deadline") or {}).get("machine")
        if reserve_s is not None and planned_on != cpu_kind(device):  # its pace says nothing here: probe again
            _, epoch_s = fit_epochs_to_budget(cfg, model, train_set, val_set, test_set, precision, augment,
                                              target_mode, tic, num_classes=len(class_names))
            t.epochs = int(resume["planned"])  # the Deadline re-plans from the probe's pace as it loads its state
    elif t.get("time_budget_s"):
        reserve_s, epoch_s = fit_epochs_to_budget(cfg, model, train_set, val_set, test_set, precision, augment,
                                                  target_mode, tic, num_classes=len(class_names))
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
    early = EarlyStopping(patience, float(t.early_stopping.get("min_delta") or 0.0)) if patience else None
    if early is not None:
        run_callbacks.append(early)
    tester = None
    if t.get("test_every_epoch"):  # benchmarks only (engine/test_curve.py); first, so the others see test_acc
        tester = TestEveryEpoch(scored_model, test_set, precision, t.tta, start=tic)
        run_callbacks.insert(0, tester)
    if reserve_s is not None:  # the deadline's clock leaves out a benchmark's test scoring, as elapsed_s does
        clock = (lambda: time.perf_counter() - tester.scoring_s) if tester else time.perf_counter
        # the Deadline's own state carries the time earlier attempts spent (Deadline.load_state_dict)
        run_callbacks.append(Deadline(float(t.time_budget_s), tic, int(t.epochs), reserve_s, schedule,
                                      steps_per_epoch, cap=epoch_cap, clock=clock, epoch_s=epoch_s,
                                      machine=cpu_kind(device),
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
    start = None
    if resume is not None:
        run_state.restore(resume, model=model, optimizer=optimizer, schedule=schedule, ema=ema, generator=generator,
                          callbacks=run_callbacks)
        start = run_state.history_of(resume, History)
        log.info("resumed at epoch %d of %d from %s", len(start.epochs), int(t.epochs), resume["path"])
    progress["epoch"] = len(start.epochs) if start else 0
    trial = cfg.trial.get("number") if cfg.get("trial") else None
    saver = run_state.RunStateSaver(
        out / run_state.LAST_FILE, key=key, config=plain_config, model=model, optimizer=optimizer,
        schedule=schedule, ema=ema, generator=generator, callbacks=run_callbacks, planned=lambda: t.epochs,
        train_time_s=lambda: spent_before + time.perf_counter() - tic, restarts=restarts,
        extra={"data": identity, "trial": trial, "reserve_s": reserve_s})

    def save_state(history: History) -> None:
        saver(history)
        progress["epoch"] = len(history.epochs)

    history = fit(trained, train_set, val_set, optimizer, schedule, precision, lambda: t.epochs, t.batch_size,
                  augment=train_augment, generator=generator,
                  grad_clip_value=t.grad_clip_value, grad_clip_norm=t.grad_clip_norm,
                  label_smoothing=t.label_smoothing, class_weights=class_weights, ema=ema,
                  mixup_alpha=t.mixup_alpha, cutmix_alpha=t.cutmix_alpha, num_classes=len(class_names),
                  target_mode=target_mode, callbacks=run_callbacks, start=start, save_state=save_state)
    status = history.status
    if reserve_s is not None:  # the kept weights may predate the last re-plan: their config says the plan that ran
        record_plan(out / results.CHECKPOINT_FILE, int(t.epochs))
    if history.stopped_early and any(getattr(cb, "pruned", False) for cb in callbacks):
        status = "pruned"

    result: Dict[str, Any] = {"status": status, "dataset": dataset, "data_source": splits.train.source,
                              **data_identity(splits.train), **describe_run(cfg),
                              "params": count_parameters(model), "device": str(device),
                              "precision": precision.name, "machine": describe_machine(device),
                              "cpu_kind": cpu_kind(device), "split_sizes": splits.sizes(),
                              "class_names": class_names, "epochs_run": len(history.epochs),
                              "best_epoch": best.best_epoch or None,
                              "best_val_acc": best.best if best.best_epoch and val_held_out(cfg) else None,
                              "final_val_acc": history.epochs[-1]["val_acc"] if history.epochs else None,
                              "stopped_early": bool(early and early.stopped), "restarts": restarts}
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
    result["train_time_s"] = spent_before + time.perf_counter() - tic  # the sum over attempts
    result["error"] = "loss became NaN/inf" if status == "diverged" else None

    results.write_history(out, history.epochs)
    if t.plots:
        from fer_sweep.plots import plot_confusion, plot_history

        plot_history(history.epochs, history.batch_lr, out / "plots")
        if result.get("confusion_matrix"):
            title = f"{cfg.model.name} / {cfg.scheduler.name}: test acc {result['test_acc']:.3f}"
            plot_confusion(np.array(result["confusion_matrix"]), class_names, out / "plots/confusion.png", title)
    if val_held_out(cfg):
        log.info("%s: best val acc %s (epoch %s), test acc %s, %.0fs", status, _fmt(result["best_val_acc"]),
                 result["best_epoch"], _fmt(result["test_acc"]), result["train_time_s"])
    else:
        log.info("%s: kept epoch %s (val acc %s, not held out: trained on), test acc %s, %.0fs", status,
                 result["best_epoch"], _fmt(result["final_val_acc"]), _fmt(result["test_acc"]),
                 result["train_time_s"])
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
                         tic: float, num_classes: int = 7) -> Tuple[float, float]:
    """Set cfg.trainer.epochs to the most that fit in trainer.time_budget_s (counted from `tic`, the run's start),
    capped at its current value (the run's Deadline keeps it up to date as the run goes on), so the schedule,
    the logs, result.json and the checkpoint's config all say what ran.
    Returns the seconds to keep free after the last epoch (the test pass and the run's files) and the probe's
    time of an epoch. The probe trains batches as fit will (the same options), on throwaway copies."""
    t = cfg.trainer
    make_optimizer = functools.partial(build_optimizer, cfg.optimizer, weight_decay=t.weight_decay)
    steps_per_epoch = train_set.num_batches(t.batch_size)
    class_weights = None
    if t.class_weights == "balanced":
        class_weights = balanced_class_weights(train_set.labels, num_classes).to(train_set.device)
    options = dict(grad_clip_value=t.grad_clip_value, grad_clip_norm=t.grad_clip_norm,
                   label_smoothing=t.label_smoothing, class_weights=class_weights, mixup_alpha=t.mixup_alpha,
                   cutmix_alpha=t.cutmix_alpha, num_classes=num_classes)
    estimate = estimate_epoch(model, make_optimizer, train_set, val_set, test_set, precision, int(t.batch_size),
                              None if augment.is_identity else augment, t.tta, target_mode,
                              make_schedule=lambda opt: build_schedule(cfg.scheduler, opt, t.epochs, steps_per_epoch),
                              ema_decay=t.ema_decay, options=options)
    epochs = epochs_within(float(t.time_budget_s), time.perf_counter() - tic, estimate, cap=int(t.epochs))
    log.info("time budget %.0f s: an epoch takes ~%.1f s here (%d steps of %.0f ms, validation %.1f s), the test "
             "pass ~%.0f s -> %d epochs (trainer.epochs=%d is the cap)", float(t.time_budget_s), estimate.epoch_s,
             estimate.steps_per_epoch, estimate.step_s * 1000, estimate.val_s, estimate.test_s, epochs,
             int(t.epochs))
    t.epochs = epochs
    return estimate.test_s + FINISH_S, estimate.epoch_s


def early_stopping_patience(cfg: DictConfig) -> Optional[int]:
    """trainer.early_stopping.patience (null: off), checked against the split: data.split=full trains on the val
    faces, so no val accuracy can say when to stop."""
    settings = cfg.trainer.get("early_stopping") or {}
    patience = settings.get("patience")
    if patience is None:
        return None
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
        raise ConfigError(f"trainer.early_stopping.patience={patience!r}; expected null (off) or a whole number of "
                          "epochs >= 1")
    if cfg.data.get("split") == "full":
        raise ConfigError("trainer.early_stopping.patience is set but data.split=full trains on PublicTest, the val "
                          "split, so val accuracy cannot say when to stop: use another data.split or "
                          "trainer.early_stopping.patience=null")
    return patience


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


NOT_HELD_OUT = ("best_val_acc", "final_val_acc")  # result.json's val metrics: trained on with data.split=full


def check_held_out_objective(cfg: DictConfig) -> None:
    """An Optuna trial may not be judged on val accuracy its run trained on (the sweeper refuses this before any
    trial; this is the job's own check, for a study started otherwise)."""
    if not cfg.get("trial") or val_held_out(cfg):
        return
    objective = [cfg.objective] if isinstance(cfg.objective, str) else list(cfg.objective)
    used = [name for name in objective if name in NOT_HELD_OUT]
    if used:
        raise ConfigError(f"objective={','.join(used)} with data.split=full: the val split is trained on, so its "
                          "accuracy is no score to optimise; use data.split=seed or official")


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

    A completed job of the same config is skipped. A job whose folder holds a last.pt of its config continues
    from it (trainer.resume=auto; engine/resume.py); a last.pt of another config is refused. A job that starts
    afresh first replaces its folder's previous record with status `running` (and removes the previous
    checkpoint and history), atomically, so a run killed half-way never leaves an earlier run's `completed` row
    or weights behind, and the next attempt continues it or runs it again."""
    out = Path(cfg.output_dir)
    identity = job_identity()
    if cfg.get("trial"):  # an Optuna trial: the sweeper adds its state and value(s) after telling the study
        identity["trial"] = {"number": cfg.trial.number, "study": cfg.trial.study}
    try:
        mode = run_state.resume_mode(cfg.trainer)
        plain = resume_config(cfg)
        identity = {"config_hash": key_of(plain), **identity}
        previous = results.read_result(out)
        if (previous and previous.get("status") == "completed"
                and previous.get("config_hash") == identity["config_hash"] and same_data(previous, cfg)):
            log.info("%s already completed for this config: skipping (resume)", out)
            return previous
        if mode == "auto" and cfg.get("trial") and cfg.trial.get("resume_from"):  # an Optuna retry (sweeper)
            run_state.adopt_state(Path(cfg.trial.resume_from), out, identity["config_hash"])
        state = run_state.find_state(out, identity["config_hash"], plain, mode)
        results.write_json(out / results.RESULT_FILE, {"status": "running", **describe_run(cfg), **identity,
                                                       "output_dir": str(out)})
        if state is None:
            for stale in (results.CHECKPOINT_FILE, results.HISTORY_FILE, results.PROBS_FILE):
                (out / stale).unlink(missing_ok=True)
        result = {**train(cfg, out, callbacks, resume=state), **identity, "output_dir": str(out)}
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

        callbacks.append(TrialPruning.from_config(cfg.trial, job_dir=str(Path(cfg.output_dir).resolve())))
    try:
        with run_state.sigterm_interrupts():
            result = run_job(cfg, callbacks)
    except run_state.Interrupted as exc:  # last.pt holds the last completed epoch: no traceback, 130 or 143
        print(exc.message(), file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
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
