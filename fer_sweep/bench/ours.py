"""Section 2, our pipeline: the real ``fit`` loop (DeviceBatches, normalize, the ``seed`` augmentation) timed
per batch, and its ceiling: the bare model step on one fixed batch, with no data work at all."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from fer_sweep.augment import build_augmentation
from fer_sweep.bench.measure import LR, clock, images_per_s, make_model
from fer_sweep.data.arrays import FERArrays
from fer_sweep.data.batches import DeviceBatches, normalize
from fer_sweep.engine.callbacks import Callback
from fer_sweep.engine.loop import fit, train_step
from fer_sweep.engine.precision import Precision
from fer_sweep.optim import Schedule


def time_ceiling(name: str, data: FERArrays, device: torch.device, precision: Precision, batch_size: int,
                 warmup: int, steps: int) -> float:
    """images/s of the bare model step on one fixed, pre-normalised batch: no data work at all."""
    index = np.arange(batch_size) % len(data)
    x = normalize(torch.from_numpy(data.images[index]).to(device))
    y = torch.from_numpy(data.labels[index]).to(device)
    model = make_model(name, device, channels_last=True)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    marks: Dict[str, float] = {}
    for step in range(1, warmup + steps + 1):
        train_step(model, x, y, optimizer, precision)
        if step == warmup:
            marks["start"] = clock(device)
    marks["end"] = clock(device)
    return images_per_s(marks, steps, batch_size)


class StepTimer(Callback):
    """Marks the time (device synced) at the end of step `warmup` and of step `warmup + steps` of `fit`."""

    def __init__(self, device: torch.device, warmup: int, steps: int):
        self.device, self.warmup, self.steps = device, warmup, steps
        self.marks: Dict[str, float] = {}

    def on_batch_end(self, step: int, loss: Optional[float]) -> None:
        if step == self.warmup:
            self.marks["start"] = clock(self.device)
        elif step == self.warmup + self.steps:
            self.marks["end"] = clock(self.device)


def _wrapped(data: FERArrays, n: int) -> FERArrays:
    """The first n rows of data, cycling through it again when it has fewer."""
    return data.subset(np.arange(n) % len(data))


def time_ours(name: str, data: FERArrays, device: torch.device, precision: Precision, batch_size: int,
              warmup: int, steps: int, input_crop: Optional[int] = None) -> float:
    """images/s of the real training loop (`fit`: DeviceBatches, normalize, `seed` augmentation, the step);
    with input_crop, of the network on random input_crop x input_crop windows (model.input_crop)."""
    train = DeviceBatches(_wrapped(data, (warmup + steps) * batch_size), device)
    val = DeviceBatches(_wrapped(data, 8), device)  # evaluated after the last timed step; not timed
    model = make_model(name, device, channels_last=True, input_crop=input_crop)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    timer = StepTimer(device, warmup, steps)
    fit(model, train, val, optimizer, Schedule(), precision, epochs=1, batch_size=batch_size,
        augment=build_augmentation("seed", crop=input_crop or 0), generator=torch.Generator().manual_seed(0),
        callbacks=[timer])
    return images_per_s(timer.marks, steps, batch_size)
