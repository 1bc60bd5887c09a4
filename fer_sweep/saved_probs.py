"""A split's softmax probabilities kept as a small file, so runs ensemble and re-score without their checkpoints.

A checkpoint is a few MB and seldom outlives the machine that trained it; its probabilities on PrivateTest are
3,589 x 7 numbers (about 100 kB). Every run writes them as test_probs.npz beside result.json (with its own TTA),
`python -m fer_sweep.evaluate --save-probs DIR` writes them for any split and TTA, and evaluate takes such files
as ensemble members beside checkpoints. A file says which faces it scored (the data's fingerprint, the split, a
hash of the labels in order) and how (the TTA), and members are only combined when those agree. It holds no
labels (they are FER2013's data, not ours to commit): scoring it reads them from the data file again.

The same file comes in two forms, told by the suffix: .npz (exact float32, what runs write) and .csv (text: a
first line of metadata, the class names, then each face's probabilities to 4 decimals, ~180 kB). The text form
is what multirun/reference keeps (`<run>_test_probs.csv`), so runs made on other days, whose machines are
gone, still ensemble from git; rounding moves an accuracy by at most a face or two (checked in the tests).
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from fer_sweep import results

FORMAT = "fer_sweep.saved_probs/1"
IDENTITY_KEYS = ("data_fingerprint", "labels_fingerprint")  # the data file, and the FER+ vote file when used
DATA_KEYS = ("name", "path", "labels", "ferplus_mode", "merge_disgust", "ferplus_path")  # to read the labels again
TEXT_SUFFIX, TEXT_DECIMALS = ".csv", 4


class SavedProbsError(ValueError):
    """A probabilities file that cannot be read, or members that did not score the same faces the same way."""


@dataclass
class SavedProbs:
    probs: np.ndarray        # (N, classes) float32, softmax of each face
    labels: Optional[np.ndarray]  # (N,) int64 in the order scored; None as read from a file (see with_labels)
    class_names: List[str]
    split: str               # PrivateTest or PublicTest
    tta: str                 # how the faces were viewed (none, flip, tencrop, tenshift)
    identity: Dict[str, str]  # faces_identity() of the data scored
    source: str              # the run folder or checkpoint they came from
    path: Optional[Path] = None
    faces: str = ""          # labels_hash of the labels scored
    data: Dict[str, Any] = field(default_factory=dict)  # DATA_KEYS of the data config, to read the labels again

    def __post_init__(self):
        if self.labels is not None:
            self.faces = labels_hash(self.labels)

    @property
    def acc(self) -> float:
        if self.labels is None:
            raise SavedProbsError(f"{_name(self)}: no labels yet (a file keeps none; see with_labels)")
        return float((self.probs.argmax(1) == self.labels).mean())

    def with_labels(self, labels: np.ndarray, identity: Dict[str, str]) -> "SavedProbs":
        """This member with the labels of the faces it scored, read again from the data (`identity` says which):
        refused when the data or the labels in order are not the ones the file was scored on."""
        if faces_identity(identity) != self.identity or labels_hash(labels) != self.faces:
            raise SavedProbsError(f"{_name(self)}: scored on other faces than the data given ({_summary(self)}; "
                                  f"the data given: {len(labels)} faces of data "
                                  f"{identity.get('data_fingerprint', '?')})")
        return replace(self, labels=np.asarray(labels, dtype=np.int64))


def labels_hash(labels: Any) -> str:
    """16 hex digits of SHA-256 over the labels (int64) in order: the faces, without keeping their labels."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]


def save_probs(path: Path, probs: Any, labels: Any, class_names: Sequence[str], split: str, tta: str,
               identity: Dict[str, Any], source: str, data_cfg: Mapping[str, Any]) -> None:
    """Write one member's probabilities (torch tensors or numpy arrays) and a hash of its labels, atomically."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape != (len(labels), len(class_names)):
        raise ValueError(f"probabilities of shape {probs.shape} for {len(labels)} labels and "
                         f"{len(class_names)} classes")
    write_probs(path, SavedProbs(probs, None, list(class_names), split, tta, faces_identity(identity), source,
                                 faces=labels_hash(labels), data={k: data_cfg.get(k) for k in DATA_KEYS
                                                                  if k in data_cfg}))


def write_probs(path: Path, member: SavedProbs) -> None:
    """Write a member as .npz (exact) or, for a .csv path, as text (TEXT_DECIMALS decimals), atomically."""
    meta = {"format": FORMAT, "class_names": member.class_names, "split": member.split, "tta": member.tta,
            "source": member.source, "faces": member.faces, "data": member.data, **member.identity}
    if Path(path).suffix == TEXT_SUFFIX:
        rows = "\n".join(",".join(f"{p:.{TEXT_DECIMALS}f}" for p in row) for row in member.probs.tolist())
        text = f"# {json.dumps(meta)}\n{','.join(member.class_names)}\n{rows}\n"
        results.atomic_write_text(path, text)
    else:
        arrays = {"probs": member.probs, "meta": np.array(json.dumps(meta))}
        results.atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def faces_identity(identity: Dict[str, Any]) -> Dict[str, str]:
    """The part of a run's data identity (fingerprint.data_identity) that says which faces were scored."""
    return {k: str(identity[k]) for k in IDENTITY_KEYS if identity.get(k)}


def load_probs(path: Path) -> SavedProbs:
    """Read a file save_probs or write_probs wrote; a SavedProbsError names the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise SavedProbsError(f"{path}: no such probabilities file")
    probs, meta = _read_text(path) if path.suffix == TEXT_SUFFIX else _read_npz(path)
    if meta.get("format") != FORMAT:
        raise SavedProbsError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if probs.ndim != 2 or probs.shape[1] != len(meta["class_names"]):
        raise SavedProbsError(f"{path}: probabilities of shape {probs.shape} for {len(meta['class_names'])} classes")
    return SavedProbs(probs, None, list(meta["class_names"]), meta["split"], meta["tta"], faces_identity(meta),
                      meta.get("source", ""), path, meta["faces"], dict(meta.get("data") or {}))


def _read_npz(path: Path):
    if not zipfile.is_zipfile(path):
        raise SavedProbsError(f"{path}: not a probabilities file of fer_sweep (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz["probs"], json.loads(str(npz["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise _unreadable(path, exc) from None


def _read_text(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
            if not first.startswith("# {"):
                raise ValueError("its first line is not '# {metadata}'")
            meta = json.loads(first[2:])
            f.readline()  # the class names, also in the metadata
            return np.loadtxt(f, delimiter=",", dtype=np.float32, ndmin=2), meta
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: Exception) -> SavedProbsError:
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return SavedProbsError(f"{path}: not a probabilities file of fer_sweep ({type(exc).__name__}: {detail})")


def check_same_faces(members: Sequence[SavedProbs]) -> None:
    """Members ensemble only when they scored the same faces (data, split, labels in order) in the same way
    (TTA) with the same classes; raises SavedProbsError naming the first member that differs."""
    first = members[0]
    for other in members[1:]:
        differs = [what for what, same in (
            ("classes", other.class_names == first.class_names),
            ("split", other.split == first.split),
            ("tta", other.tta == first.tta),
            ("data", other.identity == first.identity),
            ("faces", other.faces == first.faces),
        ) if not same]
        if differs:
            raise SavedProbsError(f"{_name(other)} and {_name(first)} differ in {', '.join(differs)} "
                                  f"({_summary(other)} against {_summary(first)}): they cannot ensemble")


def ensemble_acc(members: Sequence[SavedProbs]) -> float:
    """Accuracy of the mean of the members' probabilities (checked to be about the same faces)."""
    check_same_faces(members)
    mean = np.mean([m.probs for m in members], axis=0)
    return float((mean.argmax(1) == members[0].labels).mean())


def _name(member: SavedProbs) -> str:
    return str(member.path or member.source)


def _summary(member: SavedProbs) -> str:
    data = member.identity.get("data_fingerprint", "?")
    return f"{member.split}, tta={member.tta}, {len(member.probs)} faces of data {data}"
