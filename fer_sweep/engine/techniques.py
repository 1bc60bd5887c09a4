"""Training and test-time techniques beyond the article: weight EMA, mixup/cutmix, a lighter augmentation to
finish on, ten-crop and ten-shift TTA, class weights.

Each is off by default and switched on from the trainer config; the loop calls them, knowing no details.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fer_sweep.augment import Augmentation
from fer_sweep.engine.callbacks import Callback
from fer_sweep.errors import ConfigError

log = logging.getLogger(__name__)

TTA_MODES = ("none", "flip", "tencrop", "tenshift")


class EMA:
    """An exponential moving average of the weights (and a copy of the buffers), evaluated and checkpointed
    instead of the raw weights: it smooths the noise of the last steps, usually worth a little accuracy.

    The decay warms up as TensorFlow's ExponentialMovingAverage(num_updates=step) does:
    min(decay, (1 + step) / (10 + step)). Without it the random initial weights fade only as decay**steps
    (12% left after 10 epochs of 220 steps at 0.999), so short runs would score a half-random model.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.model = copy.deepcopy(model).eval()
        self.decay = decay
        self.step = 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.step) / (10 + self.step))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        for ema_v, v in zip(self.model.state_dict().values(), model.state_dict().values()):
            if ema_v.dtype.is_floating_point:
                ema_v.lerp_(v, 1 - decay)
            else:
                ema_v.copy_(v)
        self.step += 1


def mix_batch(x: torch.Tensor, labels: torch.Tensor, num_classes: int, mixup_alpha: float, cutmix_alpha: float,
              generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix (one at random when both are on): returns the mixed batch and soft targets."""
    onehot = labels.float() if labels.dim() == 2 else F.one_hot(labels, num_classes).float()  # or vote shares
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or torch.rand(1, generator=generator).item() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    if use_cutmix:
        h, w = x.shape[-2:]
        cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
        cy, cx = (int(v) for v in torch.randint(0, min(h, w), (2,), generator=generator))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = lam * x + (1 - lam) * x[perm]
    return x, lam * onehot + (1 - lam) * onehot[perm]


class AugmentationFinish(Callback):
    """The training augmentation, then a lighter one (`finish`) for the last `fraction` of the planned epochs.

    The schedule's last, low-learning-rate epochs then fit faces closer to what the test shows (flips and shifted
    crops, not rotations or shears). Pass it to the loop as both the augmentation and a callback: it re-reads the
    plan after every epoch, as a time budget may re-plan (engine/budget.py).
    """

    def __init__(self, augment: Augmentation, finish: Augmentation, fraction: float, planned: Callable[[], int]):
        if not 0 <= fraction < 1:
            raise ConfigError(f"trainer.finish_fraction={fraction}: a fraction of the epochs in [0, 1)")
        self.full, self.finish, self.fraction, self.planned = augment, finish, fraction, planned
        self.current = augment
        self.next_epoch = 1  # the epoch the current choice is for; a continued run restores it

    def state_dict(self) -> Dict[str, Any]:
        return {"next_epoch": self.next_epoch, "finishing": self.current is self.finish}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.next_epoch = int(state["next_epoch"])
        self.current = self.finish if state["finishing"] else self.full

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.current(x, generator=generator)

    def finish_starts(self) -> int:
        """The first epoch (from 1) of the finish under the current plan."""
        planned = self.planned()
        return planned - round(self.fraction * planned) + 1

    def on_train_start(self, num_batches: int) -> None:
        self._choose(next_epoch=self.next_epoch)

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        self._choose(next_epoch=epoch + 1)
        return False

    def _choose(self, next_epoch: int) -> None:
        self.next_epoch = next_epoch
        current = self.finish if next_epoch >= self.finish_starts() else self.full
        if current is not self.current:
            what = f"augmentation {self.finish.name}" if current is self.finish else \
                f"augmentation {self.full.name} again (the plan grew)"
            log.info("from epoch %d of %d: %s", next_epoch, self.planned(), what)
        self.current = current


def check_tta(mode) -> None:
    """A ConfigError for an unknown trainer.tta: runs check it before training, not at the test pass an hour on."""
    if mode not in (*TTA_MODES, False, True, None):
        raise ConfigError(f"unknown trainer.tta {mode!r}; expected one of {list(TTA_MODES)}")


def tta_views(x: torch.Tensor, mode: str, crop: Optional[int] = None) -> list:
    """The views whose predictions are averaged: the image; + its mirror; ten crops (4 corners and the centre,
    each with its mirror); or ten shifts (the same five windows at full size, of the image padded by reflection).

    A network that sees `crop` x `crop` windows (models/input_crop.py) gets its ten crops at that size, as
    Khaireddin & Chen score the test set (ten 40x40 crops of a network trained on 40x40 crops); one that sees
    whole faces gets them at 44x44, resized back to 48x48: a 1.09x zoom. `tenshift` keeps the scale: its windows
    are the image moved by up to 2 pixels each way, as training's RandomCrop(48, padding=4) moves it, so a network
    that ended on unzoomed faces (trainer.finish_augmentation) is scored on views like those it trained on.
    """
    check_tta(mode)
    if mode in ("none", False, None):
        return [x]
    if mode in ("flip", True):
        return [x, torch.flip(x, dims=[-1])]
    size = x.shape[-1]
    if mode == "tenshift":  # full-size windows of the face padded by 2 px: shifts, no zoom
        x, crop, resize = F.pad(x, (2, 2, 2, 2), mode="reflect"), size, False
    else:
        resize = not crop or crop >= size
        crop = size - 4 if resize else crop
    far = x.shape[-1] - crop
    mid = far // 2
    views = []
    for dy, dx in [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]:
        view = x[..., dy:dy + crop, dx:dx + crop]
        if resize:
            view = F.interpolate(view, size=(size, size), mode="bilinear", align_corners=False)
        views += [view, torch.flip(view, dims=[-1])]
    return views


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Loss weights inversely proportional to class frequency (mean weight 1), for rare classes like Disgust."""
    labels = labels.argmax(1) if labels.dim() == 2 else labels  # FER+ vote shares: their top class
    counts = torch.bincount(labels.cpu(), minlength=num_classes).float().clamp(min=1)
    return counts.sum() / (num_classes * counts)
