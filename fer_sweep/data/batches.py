"""The whole split as one uint8 tensor on the training device; batches are index slices of a permutation.

This replaces a DataLoader for data that fits in memory (all of FER2013 is 83 MB as uint8): no workers, no
per-image Python, no host-device copies per batch. Conversion to float and normalisation happen per batch.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from fer_sweep.data.arrays import FERArrays

#: Fixed input normalisation; stored in checkpoints so predict/export apply the same.
MEAN, STD = 0.5, 0.25


def normalize(images_u8: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, 48, 48) or (B, 1, 48, 48) -> normalised float (B, 1, 48, 48), channels_last."""
    x = images_u8 if images_u8.dim() == 4 else images_u8.unsqueeze(1)
    x = (x.to(dtype) / 255.0 - MEAN) / STD
    return x.contiguous(memory_format=torch.channels_last)


class Batches:
    """What the loop needs of a split: `device`, `labels` on it, a length, and batches (see DeviceBatches)."""

    device: torch.device
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last else -(-n // batch_size)

    def batches(self, batch_size: int, shuffle: bool = False, generator: Optional[torch.Generator] = None,
                drop_last: bool = False) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError


class DeviceBatches(Batches):
    """Images and labels (or FER+ targets) of one split, resident on `device`."""

    def __init__(self, data: FERArrays, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        images = torch.from_numpy(np.ascontiguousarray(data.images))
        # FER+ soft targets (float (N, C)) stand in for the labels in training; engine/targets.py reads them
        labels = torch.from_numpy(np.ascontiguousarray(data.labels if data.targets is None else data.targets))
        if self.device.type == "cuda":
            images, labels = images.pin_memory(), labels.pin_memory()
        self.images = images.to(self.device, non_blocking=True)
        self.labels = labels.to(self.device, non_blocking=True)

    def batches(self, batch_size: int, shuffle: bool = False, generator: Optional[torch.Generator] = None,
                drop_last: bool = False) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Yield (uint8 images (B,1,48,48), int64 labels (B,)); shuffled by a permutation from `generator`."""
        n = len(self)
        order = torch.randperm(n, generator=generator).to(self.device) if shuffle else None
        for k in range(self.num_batches(batch_size, drop_last)):
            sl = slice(k * batch_size, min((k + 1) * batch_size, n))
            if order is None:
                yield self.images[sl].unsqueeze(1), self.labels[sl]
            else:
                idx = order[sl]
                yield self.images[idx].unsqueeze(1), self.labels[idx]
