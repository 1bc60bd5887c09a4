"""Data layer: readers for FER2013's layouts, a synthetic stand-in, caching and splits. Knows nothing of training."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from fer_sweep.data.arrays import EMOTIONS, USAGES, FERArrays
from fer_sweep.data.cache import cached
from fer_sweep.data.errors import DataError
from fer_sweep.data.fer2013 import read_fer2013
from fer_sweep.data.ferplus import votes_path, with_ferplus_labels
from fer_sweep.data.fingerprint import data_fingerprint
from fer_sweep.data.splits import Splits, make_splits, merge_disgust_into_angry

log = logging.getLogger(__name__)
DEFAULT_PATH = Path("data/fer2013.csv")

__all__ = ["EMOTIONS", "USAGES", "FERArrays", "DataError", "Splits", "load_dataset", "load_splits",
           "resolve_path", "read_fer2013"]


def resolve_path(path: Optional[str]) -> Optional[Path]:
    """The FER2013 file or folder to read: data.path, else $FER2013_PATH, else data/fer2013.csv if present.

    A path that was given explicitly must exist; None means "nothing found, use the synthetic set".
    """
    if path:
        return Path(path).expanduser()
    if os.environ.get("FER2013_PATH"):
        return Path(os.environ["FER2013_PATH"]).expanduser()
    return DEFAULT_PATH if DEFAULT_PATH.exists() else None


def load_dataset(cfg: Mapping[str, Any]) -> FERArrays:
    """Load the dataset a `data` config group describes (see conf/data/*.yaml)."""
    if cfg.get("name") == "synthetic":
        data = _synthetic(cfg)
    else:
        path = resolve_path(cfg.get("path"))
        if path is None:
            log.warning("No FER2013 found (data.path unset, no $FER2013_PATH, no %s): "
                        "USING THE BUILT-IN SYNTHETIC DATASET. Results will say dataset=synthetic.", DEFAULT_PATH)
            data = _synthetic(cfg.get("synthetic") or {})
        else:
            if not path.exists():
                raise DataError(f"{path}: no such file or folder (from data.path or $FER2013_PATH)")
            data = cached(path, cfg.get("cache_dir"), read_fer2013)
    data_fingerprint(data)  # of the pixels as read (before relabelling); subsets and merges keep it in .meta
    labels = cfg.get("labels", "fer2013")
    if labels == "ferplus":
        if data.source == "synthetic":
            raise DataError("data.labels=ferplus needs the FER2013 file (data.path): "
                            "the synthetic set has no FER+ votes")
        votes = votes_path(cfg.get("ferplus_path"), Path(data.source))
        data = with_ferplus_labels(data, votes, cfg.get("ferplus_mode", "majority"))
    elif labels != "fer2013":
        raise DataError(f"unknown data.labels {labels!r}; expected fer2013 or ferplus")
    if cfg.get("merge_disgust", False):
        data = merge_disgust_into_angry(data)
    return data


def _synthetic(cfg: Mapping[str, Any]) -> FERArrays:
    from fer_sweep.data.synthetic import make_synthetic

    return make_synthetic(n_train=int(cfg.get("n_train", 2872)), n_public=int(cfg.get("n_public", 361)),
                          n_private=int(cfg.get("n_private", 360)), seed=int(cfg.get("seed", 0)))


def dataset_name(data: FERArrays) -> str:
    return "synthetic" if data.source == "synthetic" else "fer2013"


def load_splits(cfg: Mapping[str, Any], seed: int) -> Splits:
    data = load_dataset(cfg)
    return make_splits(data, cfg.get("split", "seed"), seed=seed, val_fraction=float(cfg.get("val_fraction", 0.2)),
                       train_fraction=float(cfg.get("train_fraction", 1.0)))
