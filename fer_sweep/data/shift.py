"""Check a FER2013 copy for a shift between its splits (contrast and sharpness), and say which copy it is.

    python -m fer_sweep.data.shift /data/fer2013.csv          # or an image folder (train/, test/)

The original Kaggle fer2013.csv has none: its three splits have the same pixel std (about 54) and sharpness
(about 0.26). One widely copied image-folder version has a blurred, low-contrast Training split (sharpness 0.10),
which costs a model trained on it 15-20 points of test accuracy. Every training run calls `shift_warning`, so a
user with such a copy learns it from the first run. The command exits 1 when it finds a shift.
"""
from __future__ import annotations

import argparse
import sys
from typing import Dict, Optional

import numpy as np
import torch

from fer_sweep.data.arrays import USAGES, FERArrays

TOLERANCE = 0.15  # relative difference in pixel std or sharpness that counts as a shift


def _sample(images: np.ndarray, n: int = 2000) -> np.ndarray:
    return images[:: max(1, len(images) // n)]


def sharpness(images: np.ndarray | torch.Tensor) -> float:
    """Mean |horizontal pixel difference| of per-image standardised images: lower is blurrier."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32).reshape(-1, 48, 48)
    x = (x - x.mean((1, 2), keepdim=True)) / x.std((1, 2), keepdim=True).clamp_min(1e-3)
    return float((x[:, :, 1:] - x[:, :, :-1]).abs().mean())


def image_stats(images: np.ndarray) -> Dict[str, float]:
    """Mean per-image pixel std (contrast) and sharpness of a sample of these images."""
    sample = _sample(images)
    per_image_std = sample.reshape(len(sample), -1).astype(np.float64).std(axis=1)
    return {"pixel_std": float(per_image_std.mean()), "sharpness": sharpness(sample)}


def usage_stats(data: FERArrays) -> Dict[str, Dict[str, float]]:
    """image_stats of each Usage present in the data."""
    return {name: image_stats(data.images[data.usage == u])
            for u, name in enumerate(USAGES) if (data.usage == u).any()}


def shift_warning(train: FERArrays, test: FERArrays, tolerance: float = TOLERANCE) -> Optional[str]:
    """What is wrong and what to do, when train and test images differ by more than `tolerance`; else None."""
    if not len(train) or not len(test):
        return None
    a, b = image_stats(train.images), image_stats(test.images)
    if all(abs(a[k] / max(b[k], 1e-9) - 1) <= tolerance for k in a):
        return None
    return (f"the training images differ from the test images (pixel std {a['pixel_std']:.1f} vs "
            f"{b['pixel_std']:.1f}, sharpness {a['sharpness']:.3f} vs {b['sharpness']:.3f}): this copy of the "
            "data is defective (one public image-folder copy of FER2013 has a blurred Training split), and a "
            "model trained on it loses much of its test accuracy. Use the original Kaggle fer2013.csv "
            "(README, 'Data'); python -m fer_sweep.data.shift PATH checks a copy")


def main(argv=None) -> int:
    from fer_sweep.data import DataError, read_fer2013
    from fer_sweep.data.fingerprint import describe

    parser = argparse.ArgumentParser(prog="python -m fer_sweep.data.shift", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="fer2013.csv(.gz), icml_face_data.csv or an image folder (train/, test/)")
    args = parser.parse_args(argv)
    try:
        data = read_fer2013(args.path)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.path}: {describe(data)}")
    print(f"{'usage':<12} {'rows':>6} {'pixel std':>9} {'sharpness':>9}")
    for name, s in usage_stats(data).items():
        rows = int((data.usage == USAGES.index(name)).sum())
        print(f"{name:<12} {rows:>6} {s['pixel_std']:>9.1f} {s['sharpness']:>9.3f}")
    train = data.subset(np.flatnonzero(data.usage == 0))
    test = data.subset(np.flatnonzero(data.usage != 0))
    warning = shift_warning(train, test)
    if warning:
        print(f"SHIFT: {warning}")
        return 1
    print(f"no shift: Training and the test splits agree within {TOLERANCE:.0%} in pixel std and sharpness")
    return 0


if __name__ == "__main__":
    sys.exit(main())
