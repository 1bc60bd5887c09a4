"""A network trained on crops of the face, kept inside the model so evaluate, predict and the exports feed it
48x48 faces as before.

``input_crop=40`` trains on random 40x40 windows of the (augmented) 48x48 face (augment.py) and scores the centre
window, as torchvision's RandomCrop/CenterCrop pair and Khaireddin & Chen's ten 40x40 crops do. 40x40 is 0.69x the
pixels of 48x48, so a step is cheaper and a time budget holds more epochs (measured: README "Accuracy per
CPU-hour"). Ten-crop test-time augmentation then takes its crops at the network's size (engine/techniques.py).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from fer_sweep.errors import ConfigError

FACE_SIZE = 48


class CenterCropInput(nn.Module):
    """`net` behind a centre crop to size x size; inputs already that small (training crops) pass unchanged."""

    def __init__(self, net: nn.Module, size: int):
        super().__init__()
        self.net, self.size = net, int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h > self.size or w > self.size:
            top, left = (h - self.size) // 2, (w - self.size) // 2
            x = x[..., top:top + self.size, left:left + self.size]
        return self.net(x)


def with_input_crop(net: nn.Module, input_crop: Optional[int] = None) -> nn.Module:
    """`net` behind CenterCropInput, after checking it takes input_crop x input_crop images at all."""
    if not input_crop or int(input_crop) == FACE_SIZE:
        return net
    size = int(input_crop)
    if not 0 < size < FACE_SIZE:
        raise ConfigError(f"model.input_crop={input_crop}: expected a size below {FACE_SIZE} (null: the whole face)")
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, _in_channels(net), size, size))
    except RuntimeError as exc:
        raise ConfigError(f"model.input_crop={size}: this network does not take {size}x{size} inputs "
                          f"({str(exc).splitlines()[0]}); resnet9 takes 40-48") from None
    finally:
        net.train(was_training)
    return CenterCropInput(net, size)


def input_crop_of(model: nn.Module) -> Optional[int]:
    """The crop size a model's network sees, through any wrappers (EMA copies, renormalising, torch.compile)."""
    return next((m.size for m in model.modules() if isinstance(m, CenterCropInput)), None)


def _in_channels(net: nn.Module) -> int:
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 1
