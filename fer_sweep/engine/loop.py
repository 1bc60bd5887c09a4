"""The training loop: plain PyTorch, one function to fit and one to evaluate.

Everything else (checkpoints, progress bars, pruning) reaches the loop through callbacks; the data comes as
device-resident uint8 batches and is normalised and augmented here, per batch, on the device.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from fer_sweep.data.batches import Batches, normalize
from fer_sweep.engine.callbacks import Callback
from fer_sweep.engine.precision import Precision
from fer_sweep.engine.targets import batch_targets, per_sample_loss
from fer_sweep.engine.targets import correct as count_correct
from fer_sweep.engine.techniques import EMA, mix_batch, tta_views
from fer_sweep.models import input_crop_of
from fer_sweep.optim import Schedule


@dataclass
class History:
    epochs: List[Dict[str, float]] = field(default_factory=list)  # one row per epoch (history.csv)
    batch_lr: List[float] = field(default_factory=list)           # lr at every batch (the article's lr plot)
    status: str = "completed"                                       # completed | diverged | pruned
    stopped_early: bool = False


@dataclass
class Evaluation:
    loss: float
    acc: float
    preds: torch.Tensor   # (N,) predicted class
    labels: torch.Tensor  # (N,)
    probs: torch.Tensor   # (N, C) softmax probabilities


@torch.no_grad()
def predict_logits(model: nn.Module, images_u8: torch.Tensor, precision: Precision, tta: str = "none") -> torch.Tensor:
    """fp32 logits for a uint8 batch; with test-time augmentation (flip, tencrop), the mean over the views."""
    views = tta_views(normalize(images_u8), tta, input_crop_of(model))
    with precision.autocast():
        return torch.stack([model(v.contiguous(memory_format=torch.channels_last)).float() for v in views]).mean(0)


@torch.no_grad()
def evaluate(model: nn.Module, data: Batches, precision: Precision, batch_size: int = 1024,
             tta: str = "none") -> Evaluation:
    """Exact loss and accuracy over every sample (sums, not a mean of batch means)."""
    was_training = model.training
    model.eval()
    total_loss, logits_all = 0.0, []
    for images, labels in data.batches(batch_size):
        logits = predict_logits(model, images, precision, tta)
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        logits_all.append(logits)
    model.train(was_training)
    logits = torch.cat(logits_all)
    preds = logits.argmax(1)
    return Evaluation(total_loss / len(data), (preds == data.labels).float().mean().item(), preds.cpu(),
                      data.labels.cpu(), logits.softmax(1).cpu())


def train_step(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, optimizer: torch.optim.Optimizer,
               precision: Precision, class_weights: Optional[torch.Tensor] = None, label_smoothing: float = 0.0,
               grad_clip_value: Optional[float] = None, grad_clip_norm: Optional[float] = None,
               target_mode: str = "label"):
    """One optimisation step on a ready (normalised, augmented) batch; returns (loss, logits).

    Targets are class indices or soft targets (mixup, FER+ votes; see engine/targets.py). The loss is computed in
    fp32 whatever the precision, as the plain mean of the per-sample (class-weighted) losses: PyTorch's weighted
    'mean' divides by the sum of the targets' weights for class indices but by the batch size for soft targets,
    so batches would not compare.
    """
    with precision.autocast():
        logits = model(x)
        loss = per_sample_loss(logits.float(), targets, target_mode, class_weights, label_smoothing).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip_value:
        nn.utils.clip_grad_value_(model.parameters(), grad_clip_value)
    if grad_clip_norm:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
    optimizer.step()
    return loss, logits


class EpochTotals:
    """What an epoch sums over its batches (on the device, read once at the epoch's end), and the lr of the
    last batch trained."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.lr = 0.0


def train_batch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
                schedule: Schedule, precision: Precision, totals: EpochTotals,
                augment: Optional[Callable[..., torch.Tensor]] = None, generator: Optional[torch.Generator] = None,
                grad_clip_value: Optional[float] = None, grad_clip_norm: Optional[float] = None,
                label_smoothing: float = 0.0, class_weights: Optional[torch.Tensor] = None,
                ema: Optional[EMA] = None, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                num_classes: int = 7, target_mode: str = "label", check_loss: bool = True) -> Optional[float]:
    """Everything one training batch costs, from the uint8 batch to the counts: normalise, augment, targets,
    mixup/cutmix, the optimisation step, the EMA update, the lr and schedule step, the loss and correct counts;
    with `check_loss`, the loss as a float (a device sync). fit trains with it, and the time budget's probe
    (engine/budget.py) times it, so the probe's epoch is the one the run pays for."""
    x = normalize(images)
    if augment is not None:
        x = augment(x, generator=generator)
    targets = batch_targets(labels, target_mode, generator)
    if mixup_alpha > 0 or cutmix_alpha > 0:
        x, targets = mix_batch(x, targets, num_classes, mixup_alpha, cutmix_alpha, generator)
    loss, logits = train_step(model, x, targets, optimizer, precision, class_weights, label_smoothing,
                              grad_clip_value, grad_clip_norm, target_mode)
    if ema is not None:
        ema.update(model)
    totals.lr = optimizer.param_groups[0]["lr"]
    schedule.after_batch()
    totals.loss_sum += loss.detach() * len(labels)
    totals.correct += count_correct(logits, targets, target_mode).sum()
    # Checking the loss syncs the device, so on accelerators fit looks only every 20 steps.
    return loss.item() if check_loss else None


def fit(model: nn.Module, train: Batches, val: Batches, optimizer: torch.optim.Optimizer,
        schedule: Schedule, precision: Precision, epochs: Union[int, Callable[[], int]], batch_size: int,
        augment: Optional[Callable[..., torch.Tensor]] = None, generator: Optional[torch.Generator] = None,
        grad_clip_value: Optional[float] = None, grad_clip_norm: Optional[float] = None,
        label_smoothing: float = 0.0, class_weights: Optional[torch.Tensor] = None, ema: Optional[EMA] = None,
        mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, num_classes: Optional[int] = None,
        target_mode: str = "label", callbacks: Sequence[Callback] = (), start: Optional[History] = None,
        save_state: Optional[Callable[[History], None]] = None) -> History:
    """Train for `epochs`; returns the per-epoch history. Stops with status 'diverged' on a non-finite loss.

    `start`, the history of a run continued from its last.pt (engine/resume.py), goes on after its last epoch
    (the model, optimizer, schedule and random streams are restored by the caller); a run that had stopped early
    trains no more. `save_state(history)` runs after every epoch's callbacks, once the epoch's outcome (stopped
    early or not) is known: it writes last.pt.

    `epochs` may be a callable, read before every epoch: a time budget re-plans the length while training
    (engine/budget.py), and a longer plan must train its extra epochs, not end on the first plan's count.

    train_loss is the mean over the epoch's samples of the loss as optimised (class weights, label smoothing and
    mixed targets included); train_acc scores each prediction against the label that dominates its target (for a
    mixup/cutmix batch, the argmax of the soft target), as the network was asked to predict it.
    With `ema`, validation scores the averaged weights (ema.model), which is what a checkpoint should keep;
    validation never uses test-time augmentation. `target_mode` says how train labels become targets (FER+ modes,
    engine/targets.py); for multi_target, train_acc counts a prediction among the acceptable classes as correct.
    """
    history = start if start is not None else History()
    steps_per_epoch = train.num_batches(batch_size)
    num_classes = num_classes or (train.labels.shape[1] if train.labels.dim() == 2 else int(train.labels.max()) + 1)
    for cb in callbacks:
        cb.on_train_start(steps_per_epoch)
    planned = epochs if callable(epochs) else (lambda: epochs)
    step, epoch = len(history.batch_lr), len(history.epochs)  # one lr per optimisation step
    while epoch < planned() and not history.stopped_early:
        epoch += 1
        model.train()
        tic = time.perf_counter()
        totals = EpochTotals(train.device)
        for images, labels in train.batches(batch_size, shuffle=True, generator=generator):
            step += 1
            loss_value = train_batch(model, images, labels, optimizer, schedule, precision, totals, augment=augment,
                                     generator=generator, grad_clip_value=grad_clip_value,
                                     grad_clip_norm=grad_clip_norm, label_smoothing=label_smoothing,
                                     class_weights=class_weights, ema=ema, mixup_alpha=mixup_alpha,
                                     cutmix_alpha=cutmix_alpha, num_classes=num_classes, target_mode=target_mode,
                                     check_loss=train.device.type == "cpu" or step % 20 == 0)
            history.batch_lr.append(totals.lr)
            if loss_value is not None and not math.isfinite(loss_value):
                history.status = "diverged"
                break
            for cb in callbacks:
                cb.on_batch_end(step, loss_value)
        train_loss = totals.loss_sum.item() / len(train)
        if history.status == "diverged" or not math.isfinite(train_loss):
            history.status = "diverged"
            break
        val_eval = evaluate(ema.model if ema else model, val, precision, batch_size=max(batch_size, 512))
        metrics = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
                   "train_acc": totals.correct.item() / len(train), "val_loss": val_eval.loss,
                   "val_acc": val_eval.acc,
                   "epoch_time_s": time.perf_counter() - tic}
        history.epochs.append(metrics)
        schedule.after_epoch(val_eval.loss)
        stop = [cb.on_epoch_end(epoch, metrics) for cb in callbacks]  # every callback sees every epoch
        if any(stop):
            history.stopped_early = True
        if save_state is not None:
            save_state(history)
        if history.stopped_early:
            break
    for cb in callbacks:
        cb.on_train_end(history)
    return history
