"""Turn a whole dataset into train / val / test index sets.

``seed`` (the article's protocol): Training+PublicTest shuffled with the run's seed and split 80/20 into
train/val; PrivateTest is the test set. ``official``: Training / PublicTest / PrivateTest as published.
``full``: train on Training+PublicTest for a final run (PublicTest stays the val split, so val accuracy is no
longer held out and the run keeps its last epoch: ``trainer.checkpoint=last``); PrivateTest is the test set.
``train_fraction`` < 1 keeps a class-stratified, seeded part of train only (val and test stay whole): short
hyper-parameter searches see every face they are scored on, at a fraction of the cost.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict

import numpy as np

from fer_sweep.data.arrays import USAGES, FERArrays
from fer_sweep.data.errors import DataError

SPLITS = ("seed", "official", "full")


@dataclass
class Splits:
    train: FERArrays
    val: FERArrays
    test: FERArrays

    def sizes(self) -> Dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def merge_disgust_into_angry(data: FERArrays) -> FERArrays:
    """The article's suggestion: Disgust has few samples, so fold it into Angry (6 classes)."""
    names = list(data.class_names)
    if not {"angry", "disgust"} <= set(names):
        raise DataError(f"data.merge_disgust folds FER2013's disgust into angry; these labels are {names}")
    angry, disgust = names.index("angry"), names.index("disgust")
    labels = np.where(data.labels == disgust, angry, data.labels)
    labels = np.where(labels > disgust, labels - 1, labels)
    return FERArrays(data.images, labels.astype(np.int64), data.usage,
                     tuple(n for n in names if n != "disgust"), data.source, dict(data.meta))


def stratified_part(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a seeded `fraction` of each class of `labels` (at least one face per class)."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:max(1, int(round(fraction * (labels == c).sum())))]
            for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def make_splits(data: FERArrays, split: str = "seed", seed: int = 0, val_fraction: float = 0.2,
                train_fraction: float = 1.0) -> Splits:
    usage = {name: np.flatnonzero(data.usage == u) for u, name in enumerate(USAGES)}
    if split == "seed":
        pool = np.concatenate([usage["Training"], usage["PublicTest"]])
        pool = pool[np.random.default_rng(seed).permutation(len(pool))]
        n_val = int(round(len(pool) * val_fraction))
        train, val = np.sort(pool[n_val:]), np.sort(pool[:n_val])
    elif split == "official":
        train, val = usage["Training"], usage["PublicTest"]
    elif split == "full":
        train, val = np.sort(np.concatenate([usage["Training"], usage["PublicTest"]])), usage["PublicTest"]
    else:
        raise DataError(f"unknown data.split {split!r}; expected one of {list(SPLITS)}")
    test = usage["PrivateTest"]
    # Faces without one label (FER+ votes with no majority) score nowhere; they train only through soft targets.
    val, test = val[data.labels[val] >= 0], test[data.labels[test] >= 0]
    trainable = data.labels >= 0 if data.targets is None else data.targets.sum(1) > 0
    train = train[trainable[train]]
    if not 0 < train_fraction <= 1:
        raise DataError(f"data.train_fraction={train_fraction}; expected a fraction in (0, 1]")
    if train_fraction < 1:
        train = train[stratified_part(data.labels[train], train_fraction, seed)]
    empty = [name for name, idx in (("train", train), ("val", val), ("test", test)) if len(idx) == 0]
    if empty:
        raise DataError(f"{data.source}: the {split!r} split leaves {', '.join(empty)} empty "
                        f"(rows per Usage: { {k: len(v) for k, v in usage.items()} })")
    scored = (replace(data.subset(index), targets=None) for index in (val, test))  # scored on one class each
    return Splits(data.subset(train), *scored)

