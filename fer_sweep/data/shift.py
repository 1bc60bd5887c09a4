"""Check a dataset for a train/test domain shift in contrast and sharpness, and size the blur that undoes it.

    python -m fer_sweep.data.shift /data/fer2013_images      # or a fer2013.csv
    python -m fer_sweep.data.shift /data/fer2013_images --checkpoint best.pt   # + PublicTest accuracy per sigma

FER2013 as distributed with this project has one: its Training images are blurred and lower in contrast
than PublicTest/PrivateTest (README "Data shift"). Training runs call `shift_warning` and log what it says.
"""
from __future__ import annotations

import argparse
import sys
from typing import Dict, Optional

import numpy as np
import torch

from fer_sweep.data.arrays import USAGES, FERArrays

SIGMAS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)


def _sample(images: np.ndarray, n: int = 2000) -> np.ndarray:
    return images[:: max(1, len(images) // n)]


def sharpness(images: np.ndarray | torch.Tensor) -> float:
    """Mean |horizontal pixel difference| of per-image standardised images: lower is blurrier."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32).reshape(-1, 48, 48)
    x = (x - x.mean((1, 2), keepdim=True)) / x.std((1, 2), keepdim=True).clamp_min(1e-3)
    return float((x[:, :, 1:] - x[:, :, :-1]).abs().mean())


def matching_blur(blurred: np.ndarray, sharp: np.ndarray) -> float:
    """The Gaussian sigma (from SIGMAS) that brings `sharp` images closest to the sharpness of `blurred`."""
    from fer_sweep.models.input_norm import gaussian_blur, gaussian_kernel

    target = sharpness(blurred)
    x = torch.as_tensor(sharp, dtype=torch.float32).reshape(-1, 1, 48, 48)
    gaps = {s: abs(sharpness(gaussian_blur(x, gaussian_kernel(s))) - target) for s in SIGMAS}
    return min(gaps, key=gaps.get)


def image_stats(images: np.ndarray) -> Dict[str, float]:
    """Pixel std (contrast) and sharpness of a sample of these images."""
    sample = _sample(images)
    return {"pixel_std": float(sample.std(dtype=np.float64)), "sharpness": sharpness(sample)}


def usage_stats(data: FERArrays) -> Dict[str, Dict[str, float]]:
    """image_stats of each Usage present in the data."""
    return {name: image_stats(data.images[data.usage == u])
            for u, name in enumerate(USAGES) if (data.usage == u).any()}


def shift_warning(train: FERArrays, test: FERArrays, tolerance: float = 0.15) -> Optional[str]:
    """A sentence naming the shift when train and test differ by more than `tolerance` (relative), else None."""
    if not len(train) or not len(test):
        return None
    a, b = image_stats(train.images), image_stats(test.images)
    if all(abs(a[k] / max(b[k], 1e-9) - 1) <= tolerance for k in a):
        return None
    return (f"train and test images differ: pixel std {a['pixel_std']:.1f} vs {b['pixel_std']:.1f}, sharpness "
            f"{a['sharpness']:.3f} vs {b['sharpness']:.3f}")


def accuracy_by_blur(checkpoint: str, images: np.ndarray, labels: np.ndarray, sigmas=(0.0, *SIGMAS)):
    """Accuracy of a checkpoint's model on these images with each eval-time blur sigma (0: none)."""
    from fer_sweep.checkpoint import load_checkpoint
    from fer_sweep.data.batches import normalize
    from fer_sweep.models.input_norm import with_eval_blur

    model = load_checkpoint(checkpoint).model
    x, y = normalize(torch.from_numpy(images)), torch.from_numpy(labels)
    out = {}
    for sigma in sigmas:
        model = with_eval_blur(model, sigma).eval()
        with torch.no_grad():
            preds = torch.cat([model(x[i:i + 512]).argmax(1) for i in range(0, len(x), 512)])
        out[float(sigma)] = float((preds == y).float().mean())
    return out


def main(argv=None) -> int:
    from fer_sweep.data import DataError, read_fer2013

    parser = argparse.ArgumentParser(prog="python -m fer_sweep.data.shift", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="fer2013.csv(.gz), icml_face_data.csv or an image folder (train/, test/)")
    parser.add_argument("--checkpoint", help="also print this model's PublicTest accuracy for each eval_blur sigma")
    args = parser.parse_args(argv)
    try:
        data = read_fer2013(args.path)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = usage_stats(data)
    print(f"{'usage':<12} {'pixel std':>9} {'sharpness':>9}")
    for name, s in stats.items():
        print(f"{name:<12} {s['pixel_std']:>9.1f} {s['sharpness']:>9.3f}")
    train, public = data.images[data.usage == 0], data.images[data.usage == 1]
    if len(train) and len(public) and sharpness(_sample(train)) < 0.8 * sharpness(_sample(public)):
        sigma = matching_blur(_sample(train), _sample(public))
        print(f"Training is blurrier than PublicTest: a Gaussian blur of sigma {sigma} matches their sharpness "
              "(data.eval_blur; measured on PublicTest, the validation split)")
    if args.checkpoint and len(public):
        print("PublicTest accuracy by eval_blur sigma: " + ", ".join(
            f"{s:g}: {a:.4f}" for s, a in accuracy_by_blur(args.checkpoint, public, data.labels[data.usage == 1]).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
