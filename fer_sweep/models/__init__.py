"""Models by name. Each module registers its builders; `build_model` is the one entry point.

Models are plain nn.Modules taking normalised (B, 1, 48, 48) float input and returning (B, classes) logits.
"""
from __future__ import annotations

import torch.nn as nn

from fer_sweep.models.input_norm import INPUT_NORMS, with_input_norm
from fer_sweep.models.registry import MODELS
from fer_sweep.models import cnn, resnet, vgg  # noqa: F401  (imported for their registrations)

__all__ = ["INPUT_NORMS", "MODELS", "build_model", "count_parameters"]


def build_model(name: str, num_classes: int = 7, input_norm: str = "none", **kwargs) -> nn.Module:
    """The registered model `name`, behind per-image standardisation when input_norm asks for it (input_norm.py)."""
    return with_input_norm(MODELS.build(name, num_classes=num_classes, **kwargs), input_norm)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
