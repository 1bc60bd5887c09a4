"""FER+ labels: Microsoft's relabelling of every FER2013 face by 10 crowd taggers, over 8 emotions.

`fer2013new.csv` has one row per row of fer2013.csv, in the same order: Usage, Image name, and vote counts for
neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown and NF (not a face). The pixels
still come from the FER2013 file; rows line up by position, and a pair whose row counts or Usage columns
disagree is refused.

The votes are prepared as in the FER+ paper (Barsoum et al. 2016, arXiv 1608.01041):

* a single vote for an emotion is noise and is dropped;
* a face whose largest remaining vote is unknown or not-a-face (more votes than any emotion), or that has no
  emotion vote left, is removed from every split;
* the majority label is the emotion with more than half of the remaining votes (unknown and NF votes count in
  that total); faces without one have label -1.

The four training modes (`data.ferplus_mode`) differ only in the training targets:

* majority: train on the majority label; faces without one are left out of training;
* probability: each time a face is drawn, one label sampled from its emotion votes (`targets`: distribution);
* crossentropy: the emotion vote distribution as a soft target;
* multi_target: every emotion with at least 30% of the remaining votes counts as correct (`targets`: 0/1 mask);
  the loss is -log of the highest predicted probability among them.

Validation and test faces are those with a majority label, scored against it, the same faces for every mode, so
the four modes compare on identical data. (The paper scores against the majority label too.)
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import pandas as pd

from fer_sweep.data.arrays import USAGES, FERArrays
from fer_sweep.data.errors import DataError

CLASSES: Tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
VOTE_COLUMNS = (*CLASSES, "unknown", "NF")
MODES = ("majority", "probability", "crossentropy", "multi_target")
VOTES_FILE = "fer2013new.csv"
MULTI_TARGET_SHARE = 0.3


def votes_path(ferplus_path: Optional[str], fer2013_path: Path) -> Path:
    """The vote file: data.ferplus_path, else fer2013new.csv beside the FER2013 file."""
    if ferplus_path:
        path = Path(ferplus_path).expanduser()
    else:
        folder = fer2013_path if fer2013_path.is_dir() else fer2013_path.parent
        path = folder / VOTES_FILE
    if not path.is_file():
        raise DataError(f"{path}: no FER+ vote file (data.labels=ferplus needs Microsoft's {VOTES_FILE}; "
                        "set data.ferplus_path)")
    return path


def read_votes(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(usage codes int8 (N,), vote counts float32 (N, 10)) from a FER+ vote file."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: not a readable FER+ vote file ({exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in ("Usage", *VOTE_COLUMNS) if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected Usage, Image name, "
                        f"{', '.join(VOTE_COLUMNS)}")
    usage = frame["Usage"].str.strip().map({u: i for i, u in enumerate(USAGES)}).fillna(-1).to_numpy()
    if (usage < 0).any():
        i = int(np.flatnonzero(usage < 0)[0])
        raise DataError(f"{path}: row {i + 2}: unknown Usage {frame['Usage'].iloc[i]!r}")
    votes = frame[list(VOTE_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(votes).all(1) | (votes < 0).any(1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: row {i + 2}: vote counts must be non-negative numbers")
    return usage.astype(np.int8), votes.astype(np.float32)


def prepare_votes(votes: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kept rows bool (N,), majority label int64 (N,) or -1, cleaned votes (N, 10)) after the paper's rules."""
    votes = np.where(votes <= 1, 0, votes)  # a lone vote is noise
    emotions, other = votes[:, :len(CLASSES)], votes[:, len(CLASSES):]
    top = emotions.max(1)
    kept = (top > 0) & (top >= other.max(1))
    label = emotions.argmax(1)
    has_majority = top > 0.5 * votes.sum(1)
    return kept, np.where(has_majority, label, -1).astype(np.int64), votes


def training_targets(votes: np.ndarray, mode: str) -> Optional[np.ndarray]:
    """The per-face training targets of a mode (N, 8) float32; None for majority (the label is the target)."""
    if mode not in MODES:
        raise DataError(f"unknown data.ferplus_mode {mode!r}; expected one of {list(MODES)}")
    emotions = votes[:, :len(CLASSES)]
    if mode == "majority":
        return None
    if mode == "multi_target":
        return (emotions >= MULTI_TARGET_SHARE * votes.sum(1, keepdims=True)).astype(np.float32)
    return (emotions / np.maximum(emotions.sum(1, keepdims=True), 1)).astype(np.float32)  # the vote shares


def with_ferplus_labels(data: FERArrays, votes_file: Path, mode: str) -> FERArrays:
    """`data`'s pixels with FER+ labels (8 classes) and, but for majority, the mode's training targets."""
    usage, votes = read_votes(votes_file)
    if len(usage) != len(data):
        raise DataError(f"{votes_file} has {len(usage)} rows but {data.source} has {len(data)}: the FER+ file "
                        "must line up row by row with the FER2013 file it relabels")
    if not np.array_equal(usage, data.usage):
        i = int(np.flatnonzero(usage != data.usage)[0])
        raise DataError(f"{votes_file}: row {i + 2} is {USAGES[usage[i]]} but row {i + 2} of {data.source} is "
                        f"{USAGES[data.usage[i]]}: the two files do not line up")
    kept, labels, votes = prepare_votes(votes)
    index = np.flatnonzero(kept)
    return FERArrays(data.images[index], labels[index], data.usage[index], CLASSES, data.source,
                     {**data.meta, "labels": f"ferplus/{mode}", "votes_file": str(votes_file),
                      "labels_fingerprint": hashlib.sha256(votes.tobytes()).hexdigest()[:16]},
                     targets=training_targets(votes[index], mode))
