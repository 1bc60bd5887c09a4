"""Models by name. Each module registers its builders; `build_model` is the one entry point.

Models are plain nn.Modules taking normalised (B, 1, 48, 48) float input and returning (B, classes) logits
(with input_crop, the network inside sees the centre crop of that, or a training crop: input_crop.py).
"""
from __future__ import annotations

from typing import Optional

import torch.nn as nn

from fer_sweep.models.input_crop import input_crop_of, with_input_crop
from fer_sweep.models.input_norm import INPUT_NORMS, with_input_norm
from fer_sweep.models.registry import MODELS
from fer_sweep.models import cnn, resnet, vgg  # noqa: F401  (imported for their registrations)

__all__ = ["INPUT_NORMS", "MODELS", "build_model", "count_parameters", "input_crop_of"]


def build_model(name: str, num_classes: int = 7, input_norm: str = "none", input_crop: Optional[int] = None,
                **kwargs) -> nn.Module:
    """The registered model `name`, behind per-image standardisation when input_norm asks for it (input_norm.py),
    and behind a centre crop when input_crop asks for one (input_crop.py: the crop comes first, so the
    standardisation sees what the network sees)."""
    net = with_input_norm(MODELS.build(name, num_classes=num_classes, **kwargs), input_norm)
    return with_input_crop(net, input_crop)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
