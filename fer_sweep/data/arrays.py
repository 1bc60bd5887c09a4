"""The in-memory dataset every reader returns: uint8 images, int labels, Usage tags and class names."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

#: FER2013's label order (the `emotion` column of the Kaggle CSV).
EMOTIONS: Tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: The three Usage groups of FER2013.
USAGES: Tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIZE = 48


@dataclass
class FERArrays:
    """A whole FER-style dataset held as compact arrays.

    images: uint8 (N, 48, 48); labels: int64 (N,) indexing class_names; usage: int8 (N,) indexing USAGES.
    source: where it came from ("synthetic" or a path); used in every output so results name their data.
    targets: optional float32 (N, C) training targets for labels that are not one class per image (FER+ votes:
    a distribution, or a 0/1 mask of acceptable classes); labels then hold the majority class, or -1 for none.
    """

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    class_names: Tuple[str, ...] = EMOTIONS
    source: str = ""
    meta: Dict[str, object] = field(default_factory=dict)
    targets: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"images must be uint8 (N, 48, 48), got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != n or len(self.usage) != n or (self.targets is not None and len(self.targets) != n):
            raise ValueError("images, labels, usage and targets must have the same length")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> "FERArrays":
        return FERArrays(self.images[index], self.labels[index], self.usage[index], self.class_names,
                         self.source, dict(self.meta), None if self.targets is None else self.targets[index])

    def counts(self) -> Dict[str, Dict[str, int]]:
        """Rows per Usage and class name, e.g. {"Training": {"angry": 496, ...}, ...}."""
        out: Dict[str, Dict[str, int]] = {}
        for u, usage_name in enumerate(USAGES):
            mask = self.usage == u
            if mask.any():
                labels = self.labels[mask]
                binc = np.bincount(labels[labels >= 0], minlength=len(self.class_names))
                out[usage_name] = {c: int(k) for c, k in zip(self.class_names, binc)}
        return out
