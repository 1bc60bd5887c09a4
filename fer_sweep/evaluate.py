"""Score trained checkpoints, alone and as an ensemble, on FER2013's test split (PrivateTest) or PublicTest.

    python -m fer_sweep.evaluate multirun/2026-11-29/12-00-00 --data fer2013.csv --tta tencrop
    python -m fer_sweep.evaluate run_a/checkpoints/best.pt run_b --data fer2013.csv --split val -o scores.json

Each argument is a checkpoint file, a run folder (its checkpoints/best.pt) or a sweep folder (every job's
best.pt under it). Every checkpoint is scored on the same faces; the ensemble averages their softmax
probabilities. The labels (FER2013 or FER+, disgust merged or not) are the ones the checkpoints trained on,
read from their saved config; checkpoints that trained on different labels are refused.
Exit status: 0 on success, 2 when nothing could be scored (a bad checkpoint, data file or argument).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from fer_sweep import results
from fer_sweep.checkpoint import CheckpointError
from fer_sweep.data import DataError, load_splits, resolve_path
from fer_sweep.data.batches import DeviceBatches
from fer_sweep.engine.loop import evaluate
from fer_sweep.engine.precision import PRECISIONS
from fer_sweep.engine.techniques import TTA_MODES
from fer_sweep.predict import Predictor, positive_int

SPLITS = {"test": "PrivateTest", "val": "PublicTest"}
LABEL_KEYS = ("labels", "ferplus_mode", "merge_disgust")  # what decides the classes and which faces score


@dataclass
class Score:
    name: str        # a checkpoint's path, or "ensemble"
    acc: float
    val_acc: Optional[float] = None  # the val accuracy saved with the checkpoint (best or last epoch)


def checkpoint_paths(items: Sequence[str | Path]) -> List[Path]:
    """Files as given; a run folder's checkpoints/best.pt; every best.pt under a sweep folder."""
    paths: List[Path] = []
    for item in map(Path, items):
        if item.is_file():
            paths.append(item)
        elif (item / "checkpoints" / "best.pt").is_file():
            paths.append(item / "checkpoints" / "best.pt")
        elif item.is_dir():
            found = sorted(item.rglob("checkpoints/best.pt"))
            if not found:
                raise CheckpointError(f"{item}: no checkpoints/best.pt in this folder or below it")
            paths += found
        else:
            raise CheckpointError(f"{item}: no such checkpoint file or run folder")
    return paths


def data_config(predictor: Predictor, data_path: Optional[str]) -> Dict[str, Any]:
    """The checkpoints' shared data config, with `data_path` (if given) as the file to read."""
    configs = [dict(m.config.get("data") or {}) for m in predictor.loaded]
    labels = {tuple(str(c.get(k)) for k in LABEL_KEYS) for c in configs}
    if len(labels) > 1:
        raise CheckpointError("the checkpoints trained on different labels "
                              f"({', '.join(LABEL_KEYS)}: {sorted(labels)}); score them separately")
    cfg = {**configs[0], "split": "official", "train_fraction": 1.0}
    path = data_path or (None if cfg.get("name") == "synthetic" else resolve_path(cfg.get("path")))
    if path is None:
        raise DataError("give the FER2013 file to score on with --data (the checkpoints' config names none, "
                        "and neither $FER2013_PATH nor data/fer2013.csv is there)")
    return {**cfg, "name": "fer2013", "path": str(path)}


def score(predictor: Predictor, data_path: Optional[str] = None, split: str = "test", tta: str = "none",
          batch_size: int = 512) -> List[Score]:
    """Each checkpoint's accuracy on `split`, then the ensemble's (mean of softmax probabilities) when > 1."""
    splits = load_splits(data_config(predictor, data_path), seed=0)
    faces = DeviceBatches(getattr(splits, split), predictor.device)
    probs, scores = [], []
    for loaded, model in zip(predictor.loaded, predictor.models):
        result = evaluate(model, faces, predictor.precision, batch_size, tta)
        probs.append(result.probs)
        scores.append(Score(str(loaded.path), result.acc, loaded.val_acc))
    if len(probs) > 1:
        preds = torch.stack(probs).mean(0).argmax(1)
        scores.append(Score("ensemble", (preds == faces.labels.cpu()).float().mean().item()))
    return scores


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fer_sweep.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoint files, run folders or sweep folders")
    p.add_argument("--data", help="the FER2013 file or folder (default: the path saved in the first checkpoint)")
    p.add_argument("--split", choices=sorted(SPLITS), default="test",
                   help="test = PrivateTest (default), val = PublicTest")
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="test-time augmentation: flip (the mirror), tencrop (5 crops x 2 mirrors), "
                        "tenshift (5 two-pixel shifts x 2 mirrors, no zoom)")
    p.add_argument("--output", "-o", type=Path, help="also write the scores as JSON here")
    p.add_argument("--batch-size", type=positive_int, default=512)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        predictor = Predictor.from_paths(checkpoint_paths(args.checkpoints), args.device, args.precision)
        scores = score(predictor, args.data, args.split, args.tta, args.batch_size)
    except (CheckpointError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{SPLITS[args.split]}, tta={args.tta}: {len(predictor.models)} checkpoint(s)")
    for s in scores:
        saved_val = "" if s.val_acc is None else f"   (val {s.val_acc:.4f} when saved)"
        print(f"  {s.acc:.4f}  {s.name}{saved_val}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        results.atomic_write_text(args.output, json.dumps({"split": SPLITS[args.split], "tta": args.tta,
                                           "scores": [asdict(s) for s in scores]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
