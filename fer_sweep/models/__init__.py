"""Models by name. Each module registers its builders; `build_model` is the one entry point.

Models are plain nn.Modules taking normalised (B, 1, 48, 48) float input and returning (B, classes) logits.
"""
from __future__ import annotations

import torch.nn as nn

from fer_sweep.models.registry import MODELS
from fer_sweep.models import cnn, resnet, vgg  # noqa: F401  (imported for their registrations)

__all__ = ["MODELS", "build_model", "count_parameters"]


def build_model(name: str, num_classes: int = 7, **kwargs) -> nn.Module:
    return MODELS.build(name, num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
