"""Section 2, the classic pipeline: a DataLoader with worker processes building a PIL image per sample and
applying the article's torchvision transforms, then a plain fp32 step."""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np
import torch

from fer_sweep.bench.measure import LR, clock, images_per_s, make_model
from fer_sweep.data.arrays import FERArrays
from fer_sweep.engine.loop import train_step
from fer_sweep.engine.precision import Precision


class ClassicDataset(torch.utils.data.Dataset):
    """The classic per-sample path: a PIL image per sample, transformed by torchvision in the worker."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def article_transforms():
    """The article's training transforms (torchvision, one PIL image at a time)."""
    import torchvision.transforms as T

    return T.Compose([T.RandomCrop(48, padding=4, padding_mode="reflect"), T.RandomRotation(15),
                      T.RandomAffine(0, translate=(0.01, 0.12), shear=(0.01, 0.03)), T.RandomHorizontalFlip(),
                      T.ToTensor()])



def time_classic(name: str, data: FERArrays, device: torch.device, precision: Precision, batch_size: int,
                 warmup: int, steps: int, num_workers: int = 2) -> float:
    """images/s of the classic loop: DataLoader (workers, PIL, torchvision transforms) and a plain step."""
    from torch.utils.data import DataLoader, RandomSampler

    total = warmup + steps
    dataset = ClassicDataset(data.images, data.labels, article_transforms())
    sampler = RandomSampler(dataset, num_samples=total * batch_size, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True,
                        pin_memory=device.type == "cuda")
    channels_last = precision.name != "fp32"  # the classic fp32 run keeps torch's default contiguous format
    model = make_model(name, device, channels_last)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    marks: Dict[str, float] = {}
    for step, (x, y) in enumerate(loader, start=1):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        train_step(model, x, y, optimizer, precision)[0].item()
        if step == warmup:
            marks["start"] = clock(device)
        elif step == total:
            marks["end"] = clock(device)
    return images_per_s(marks, steps, batch_size)
