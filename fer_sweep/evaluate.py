"""Score trained checkpoints, alone and as an ensemble, on FER2013's test split (PrivateTest) or PublicTest.

    python -m fer_sweep.evaluate multirun/2026-11-29/12-00-00 --data fer2013.csv --tta tencrop
    python -m fer_sweep.evaluate run_a/checkpoints/best.pt run_b --data fer2013.csv --split val -o scores.json
    python -m fer_sweep.evaluate run_a run_b --data fer2013.csv --tta flip --save-probs probs/
    python -m fer_sweep.evaluate probs/*.npz old_run/test_probs.npz run_c --data fer2013.csv
    python -m fer_sweep.evaluate multirun/reference/fast_tenshift_s56 --data fer2013.csv

Each argument is a checkpoint file, a run folder (its checkpoints/best.pt, else its test_probs.npz), a sweep folder
or a multirun/reference folder, or a file of saved probabilities (.npz: a run's test_probs.npz, or one that
--save-probs wrote; .csv: their text form). Every member is scored on the same faces; the ensemble averages their
softmax probabilities. The labels (FER2013 or FER+, disgust merged or not) are the ones the checkpoints trained on, read
from their saved config; checkpoints that trained on different labels are refused, and so are saved probabilities of
other faces, another split or another TTA (fer_sweep/saved_probs.py). Saved probabilities keep no labels: they are
read from the data file again (--data, else the file the probabilities name). They set the split and TTA when those
are not given.

A sweep or reference folder gives the jobs its results.csv lists with status completed (a sweep's job folders, a
reference folder's <run>_test_probs.csv): pruned, failed, diverged, superseded and still-running jobs, and folders
results.csv does not list (an earlier command's), are skipped; each taken and skipped job is printed, with why. A
folder without results.csv (run folders gathered by hand) gives every job found under it, and says so. A member
named or found twice is scored once.
A checkpoint that trained on PublicTest (data.split=full) is refused with --split val unless --force.
Exit status: 0 on success, 2 when nothing could be scored (a bad checkpoint, data file or argument).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from fer_sweep import folder_jobs, results
from fer_sweep.checkpoint import CheckpointError
from fer_sweep.data import DataError, load_splits, resolve_path
from fer_sweep.data.batches import DeviceBatches
from fer_sweep.data.fingerprint import data_identity
from fer_sweep.destination import check_file, check_folder
from fer_sweep.engine.loop import evaluate
from fer_sweep.engine.precision import PRECISIONS
from fer_sweep.engine.techniques import TTA_MODES
from fer_sweep.errors import UserError
from fer_sweep.predict import Predictor, positive_int
from fer_sweep.saved_probs import (TEXT_SUFFIX, SavedProbs, SavedProbsError, ensemble_acc, faces_identity,
                                  load_probs, save_probs)

SPLITS = {"test": "PrivateTest", "val": "PublicTest"}
LABEL_KEYS = ("labels", "ferplus_mode", "merge_disgust")  # what decides the classes and which faces score
JOB_MEMBERS = folder_jobs.JOB_MEMBERS  # what a run folder is scored by, in this order


@dataclass
class Score:
    name: str        # a checkpoint's or probabilities file's path, or "ensemble"
    acc: float
    val_acc: Optional[float] = None  # the val accuracy saved with the checkpoint (best or last epoch)


def member_paths(items: Sequence[str | Path], notes: Optional[List[str]] = None) -> List[Path]:
    """Files as given; a run folder's checkpoint (else its saved probabilities); under a sweep or reference folder,
    the jobs its results.csv lists as completed (fer_sweep/folder_jobs.py). Each member once, however often it is
    named or found. What was taken and skipped, and why, is added to `notes`."""
    notes = [] if notes is None else notes
    paths: List[Path] = []
    for item in map(Path, items):
        if item.is_file():
            paths.append(item)
        elif job_member := folder_jobs.job_member(item):
            paths.append(job_member)
        elif item.is_dir():
            selection = folder_jobs.select(item)
            if not selection.taken and not selection.skipped:
                raise CheckpointError(f"{item}: no {' or '.join(JOB_MEMBERS)} (nor *{results.PROBS_TEXT_FILE}) "
                                      "in this folder or below it")
            notes += selection.lines()
            if not selection.taken:
                raise CheckpointError(f"{item}: none of its jobs is listed as completed in its results.csv")
            paths += [member for _, member in selection.taken]
        else:
            raise CheckpointError(f"{item}: no such file or folder (a checkpoint, saved probabilities, a run "
                                  "or a sweep)")
    unique: Dict[Path, Path] = {}
    for path in paths:
        if path.resolve() in unique:
            notes.append(f"{path}: named twice, scored once")
        else:
            unique[path.resolve()] = path
    return list(unique.values())


def is_saved_probs(path: Path) -> bool:
    return path.suffix in (".npz", TEXT_SUFFIX)


def data_config(configs: Sequence[Dict[str, Any]], data_path: Optional[str], what: str = "checkpoints"
                ) -> Dict[str, Any]:
    """The members' shared data config (the checkpoints' or saved files'), with `data_path` (if given) as the
    file to read."""
    labels = {tuple(str(c.get(k)) for k in LABEL_KEYS) for c in configs}
    if len(labels) > 1:
        raise CheckpointError(f"the {what} are of different labels "
                              f"({', '.join(LABEL_KEYS)}: {sorted(labels)}); score them separately")
    cfg = {**configs[0], "split": "official", "train_fraction": 1.0}
    path = data_path or (None if cfg.get("name") == "synthetic" else resolve_path(cfg.get("path")))
    if path is None:
        raise DataError(f"give the FER2013 file to score on with --data (the {what}' config names none, "
                        "and neither $FER2013_PATH nor data/fer2013.csv is there)")
    return {**cfg, "name": "fer2013", "path": str(path)}


def scoring_mode(saved: Sequence[SavedProbs], split: Optional[str], tta: Optional[str]) -> Tuple[str, str]:
    """The split key (test/val) and TTA to score with: as asked, else as the saved probabilities were scored
    (else PrivateTest, no TTA). Saved probabilities of another split or TTA are refused, naming the file."""
    named = {name: key for key, name in SPLITS.items()}
    split = split or (named.get(saved[0].split, "test") if saved else "test")
    tta = tta or (saved[0].tta if saved else "none")
    for member in saved:
        if (member.split, member.tta) != (SPLITS[split], tta):
            raise SavedProbsError(f"{member.path}: probabilities of {member.split} with tta={member.tta}, but "
                                  f"{SPLITS[split]} with tta={tta} is asked for; score its checkpoint instead")
    return split, tta


def check_held_out(checkpoints: Sequence[Path], configs: Sequence[Dict[str, Any]], split: str, force: bool) -> None:
    """--split val on a checkpoint that trained on PublicTest (data.split=full) would score faces it trained on:
    refused, or with --force a warning."""
    if split != "val":
        return
    trained = [str(p) for p, c in zip(checkpoints, configs) if (c.get("data") or {}).get("split") == "full"]
    if not trained:
        return
    why = (f"{', '.join(trained)}: trained on PublicTest (data.split=full), so --split val scores faces it "
           "trained on")
    if not force:
        raise CheckpointError(f"{why}; score --split test, or add --force")
    print(f"warning: {why} (--force: scored all the same)", file=sys.stderr)


def score_checkpoints(predictor: Predictor, data_path: Optional[str], split: str, tta: str,
                      batch_size: int = 512) -> List[SavedProbs]:
    """Each checkpoint's probabilities on `split` (test/val) with `tta`, labelled with the faces they scored."""
    cfg = data_config([dict(m.config.get("data") or {}) for m in predictor.loaded], data_path)
    splits = load_splits(cfg, seed=0)
    faces = DeviceBatches(getattr(splits, split), predictor.device)
    identity = faces_identity(data_identity(splits.train))
    scored = []
    for loaded, model in zip(predictor.loaded, predictor.models):
        result = evaluate(model, faces, predictor.precision, batch_size, tta)
        scored.append(SavedProbs(result.probs.numpy(), result.labels.numpy(), list(predictor.class_names),
                                 SPLITS[split], tta, identity, str(loaded.path), data=cfg))
    return scored


def with_labels(saved: Sequence[SavedProbs], scored: Sequence[SavedProbs], data_path: Optional[str],
                split: str) -> List[SavedProbs]:
    """The saved members with the labels of their faces (the files keep only a hash of them): those the
    checkpoints were just scored on, else read from the data file again."""
    if not saved:
        return []
    if scored:
        labels, identity = scored[0].labels, scored[0].identity
    else:
        splits = load_splits(data_config([m.data for m in saved], data_path, "saved probabilities"), seed=0)
        labels, identity = getattr(splits, split).labels, data_identity(splits.train)
    return [member.with_labels(labels, identity) for member in saved]


def score(members: Sequence[SavedProbs], val_accs: Sequence[Optional[float]]) -> List[Score]:
    """Each member's accuracy (with the val accuracy its checkpoint saved), then the ensemble's (mean of softmax
    probabilities, which refuses members of other faces or views) when there are several."""
    scores = [Score(str(m.path or m.source), m.acc, v) for m, v in zip(members, val_accs)]
    if len(members) > 1:
        scores.append(Score("ensemble", ensemble_acc(members)))
    return scores


def member_label(checkpoint: Path) -> str:
    """A file name for a checkpoint's probabilities: its sweep and job folders (run/checkpoints/best.pt)."""
    job = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.with_suffix("")
    return "_".join(job.resolve().parts[-2:])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fer_sweep.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+",
                   help="checkpoint files, run folders, sweep folders or saved probabilities (.npz, .csv)")
    p.add_argument("--data", help="the FER2013 file or folder (default: the path saved in the first checkpoint)")
    p.add_argument("--split", choices=sorted(SPLITS),
                   help="test = PrivateTest (the default), val = PublicTest; saved probabilities set it when omitted")
    p.add_argument("--tta", choices=TTA_MODES,
                   help="test-time augmentation: none (the default), flip (the mirror), tencrop (5 crops x 2 "
                        "mirrors), tenshift (5 two-pixel shifts x 2 mirrors, no zoom); saved probabilities set it "
                        "when omitted")
    p.add_argument("--output", "-o", type=Path, help="also write the scores as JSON here")
    p.add_argument("--save-probs", type=Path, metavar="DIR",
                   help="also write each checkpoint's probabilities here (SWEEP_JOB_SPLIT_TTA.npz), to ensemble "
                        "or re-score later without the checkpoint")
    p.add_argument("--force", action="store_true",
                   help="score --split val even with checkpoints that trained on it (data.split=full), with a "
                        "warning")
    p.add_argument("--batch-size", type=positive_int, default=512)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.output:  # before any scoring: a bad destination fails now, not after it
            check_file(args.output, "--output")
        if args.save_probs:
            check_folder(args.save_probs, f"--save-probs {args.save_probs}")
        notes: List[str] = []
        paths = member_paths(args.checkpoints, notes)
        for note in notes:
            print(note)
        saved_paths = [p for p in paths if is_saved_probs(p)]
        checkpoints = [p for p in paths if not is_saved_probs(p)]
        saved = [load_probs(p) for p in saved_paths]
        split, tta = scoring_mode(saved, args.split, args.tta)
        scored, val_accs = [], {}
        if checkpoints:
            predictor = Predictor.from_paths(checkpoints, args.device, args.precision)
            check_held_out(checkpoints, [loaded.config for loaded in predictor.loaded], split, args.force)
            scored = score_checkpoints(predictor, args.data, split, tta, args.batch_size)
            val_accs = {p: loaded.val_acc for p, loaded in zip(checkpoints, predictor.loaded)  # none if trained on
                        if (loaded.config.get("data") or {}).get("split") != "full"}
        saved = with_labels(saved, scored, args.data, split)
        members = {**dict(zip(saved_paths, saved)), **dict(zip(checkpoints, scored))}
        scores = score([members[p] for p in paths], [val_accs.get(p) for p in paths])
    except (CheckpointError, DataError, UserError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{SPLITS[split]}, tta={tta}: {len(checkpoints)} checkpoint(s), {len(saved)} saved probabilities")
    for s in scores:
        saved_val = "" if s.val_acc is None else f"   (val {s.val_acc:.4f} when saved)"
        print(f"  {s.acc:.4f}  {s.name}{saved_val}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        results.atomic_write_text(args.output, json.dumps({"split": SPLITS[split], "tta": tta,
                                           "scores": [asdict(s) for s in scores]}, indent=2))
    for member in scored if args.save_probs else ():
        path = args.save_probs / f"{member_label(Path(member.source))}_{split}_{tta}.npz"
        save_probs(path, member.probs, member.labels, member.class_names, member.split, tta, member.identity,
                   member.source, member.data)
        print(f"  wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
