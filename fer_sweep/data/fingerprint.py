"""Which FER2013 is this? A fingerprint of the parsed arrays, and the copies it recognises.

The file's MD5 would tell the original Kaggle fer2013.csv from everything else, but not the same data gzipped
or with Windows line ends. Hashing what the readers return (pixels, labels, Usage) does: every lossless form of
one file has one fingerprint. Every run records it (result.json, results.csv, the resume key).
"""
from __future__ import annotations

import hashlib
from typing import Dict, Optional, Tuple

import numpy as np

from fer_sweep.data.arrays import FERArrays

KAGGLE_MD5 = "f8428a1edbd21e88f42c73edd2a14f95"  # Kaggle's fer2013.csv, as torchvision publishes it
ORIGINAL = "kaggle_original"
#: fingerprint -> (short name, description) of the copies we know.
KNOWN: Dict[str, Tuple[str, str]] = {
    "d130206855eb863a": (ORIGINAL, f"the original Kaggle fer2013.csv (MD5 {KAGGLE_MD5})"),
    "a80f975efc0c5c54": ("kaggle_mini", "the shared 10% sample of the original Kaggle fer2013.csv"),
    "818f6802e4086e6d": ("blurred_copy", "the public image-folder copy with a BLURRED Training split "
                                         "(anudeepkaddala/Facial-Expression-Predictor): do not train on it"),
}


def fingerprint(data: FERArrays) -> str:
    """16 hex digits of SHA-256 over the images (uint8), labels (int64), Usage (int8) and class names."""
    h = hashlib.sha256()
    h.update(",".join(data.class_names).encode())
    for array, dtype in ((data.images, np.uint8), (data.labels, np.int64), (data.usage, np.int8)):
        h.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return h.hexdigest()[:16]


def known_copy(fp: str) -> Optional[Tuple[str, str]]:
    """(short name, description) of a recognised copy, else None."""
    return KNOWN.get(fp)


def describe(data: FERArrays) -> str:
    """One sentence for the log: which copy this is, by its fingerprint."""
    fp = data_fingerprint(data)
    known = known_copy(fp)
    if known:
        return f"{known[1]} (fingerprint {fp})"
    return (f"not a copy we recognise (fingerprint {fp}, {len(data)} rows): not the original Kaggle fer2013.csv, "
            "so results may not compare with published FER2013 numbers")


def data_fingerprint(data: FERArrays) -> str:
    """fingerprint(data), computed once per dataset and kept in data.meta (subsets share it)."""
    if "fingerprint" not in data.meta:
        data.meta["fingerprint"] = fingerprint(data)
    return str(data.meta["fingerprint"])


def data_identity(data: FERArrays) -> Dict[str, str]:
    """What result.json records of the data: its fingerprint, which copy it is when recognised, and the FER+
    vote file's fingerprint when the labels come from one (resume compares them all)."""
    known = known_copy(data_fingerprint(data))
    copy = "synthetic" if data.source == "synthetic" else known[0] if known else "unrecognised"
    identity = {"data_fingerprint": data_fingerprint(data), "data_copy": copy}
    if "labels_fingerprint" in data.meta:  # relabelled (FER+): the vote file is part of what was trained on
        identity["labels_fingerprint"] = str(data.meta["labels_fingerprint"])
    return identity
