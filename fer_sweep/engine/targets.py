"""What the loss trains on: one class per image (FER2013), or FER+ votes in one of the FER+ paper's modes.

The train split's `labels` are class indices, or for FER+ a float (N, C) row per face: the vote shares
(probability, crossentropy) or a 0/1 mask of acceptable classes (multi_target); see fer_sweep/data/ferplus.py.
Validation and test always score class indices.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

TARGET_MODES = ("label", "probability", "crossentropy", "multi_target")


def batch_targets(labels: torch.Tensor, mode: str, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The batch's targets: `probability` draws one class per face from its vote shares, each time it is seen."""
    if mode != "probability":
        return labels
    on_cpu = labels if generator is None or generator.device == labels.device else labels.cpu()
    return torch.multinomial(on_cpu, 1, generator=generator).squeeze(1).to(labels.device)


def per_sample_loss(logits: torch.Tensor, targets: torch.Tensor, mode: str = "label",
                    class_weights: Optional[torch.Tensor] = None, label_smoothing: float = 0.0) -> torch.Tensor:
    """(B,) losses. multi_target: -log of the highest probability among the acceptable classes (the paper's)."""
    if mode == "multi_target":
        log_probs = F.log_softmax(logits, dim=1).masked_fill(targets <= 0, float("-inf"))
        return -log_probs.max(dim=1).values
    return F.cross_entropy(logits, targets, weight=class_weights, label_smoothing=label_smoothing, reduction="none")


def correct(logits: torch.Tensor, targets: torch.Tensor, mode: str = "label") -> torch.Tensor:
    """(B,) bool: the prediction is an acceptable class (multi_target), else the class that dominates the target."""
    preds = logits.argmax(1)
    if mode == "multi_target":
        return targets.gather(1, preds[:, None]).squeeze(1) > 0
    return preds == (targets.argmax(1) if targets.dim() == 2 else targets)
