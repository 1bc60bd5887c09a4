"""Run-folder files, written atomically (temp file + rename) so a crash never leaves half a result.

Run folder contract: result.json, history.csv, checkpoints/best.pt, test_probs.npz (fer_sweep/saved_probs.py),
plots/*.png.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional

import torch

RESULT_FILE = "result.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoints/best.pt"
PROBS_FILE = "test_probs.npz"  # the test split's probabilities, so runs ensemble without checkpoints
PROBS_TEXT_FILE = "test_probs.csv"  # their text form, as multirun/reference keeps them: <run>_test_probs.csv
# history.csv, one row per epoch. train_loss: mean per-sample loss as optimised (class weights, label smoothing,
# mixup/cutmix targets included); train_acc: against each sample's dominant target (a mixed batch's soft-target
# argmax); val_loss/val_acc: plain cross-entropy and accuracy of the scored (EMA when on) weights, no TTA.
HISTORY_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s")
STATUSES = ("completed", "failed", "diverged", "pruned")


# Signals whose Python handlers raise to stop a run: Ctrl-C, SIGTERM, and submitit's requeue on preemption or a
# time limit (SIGUSR1/2, whose handler ends in sys.exit).
HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM,
                *(getattr(signal, name) for name in ("SIGUSR1", "SIGUSR2") if hasattr(signal, name))}


@contextlib.contextmanager
def signals_held():
    """Hold HELD_SIGNALS that have a Python handler until the block ends, then hand each to its handler. A handler
    that raises inside torch.save (between the records its C++ writer puts in the file) turns into
    `RuntimeError: ... unexpected pos` and a failed job instead of the interruption it meant; held, it runs just
    after the file is whole and in place. (Python handlers only run in the main thread, so only there.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list = []
    handlers = {s: h for s in HELD_SIGNALS if callable(h := signal.getsignal(s))}
    for signum in handlers:
        signal.signal(signum, lambda number, frame: caught.append((number, frame)))
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for number, frame in caught:
            handlers[number](number, frame)


def atomic_write(path: Path, write) -> None:
    """Call write(binary file) on a temp file beside `path`, then rename it into place; signals that stop a run
    wait until it is done (signals_held)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with signals_held():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def _json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(_json_safe(dict(data)), indent=2, sort_keys=False) + "\n")


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], columns: Optional[List[str]] = None) -> None:
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_history(run_dir: Path, epochs: List[Dict[str, float]]) -> None:
    """history.csv: HISTORY_COLUMNS, then any extra per-epoch metrics (the benchmark's test_acc, elapsed_s)."""
    extra = [k for k in dict.fromkeys(k for row in epochs for k in row) if k not in HISTORY_COLUMNS]
    write_csv(Path(run_dir) / HISTORY_FILE, epochs, [*HISTORY_COLUMNS, *extra])


def read_result(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The run's result.json as a dict, or None when absent or unreadable."""
    try:
        return json.loads((Path(run_dir) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
