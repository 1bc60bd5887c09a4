"""Where a command will write, checked before it does its work: predicting a folder of photos or scoring a
sweep only to fail at the last step, with a traceback and nothing written, costs the whole run."""
from __future__ import annotations

import os
from pathlib import Path

from fer_sweep.errors import UserError


def check_file(path: Path, option: str) -> None:
    """`path` can be written as a file: it is no folder, and its folder exists or can be made there."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name")
    check_folder(path.parent, f"{option} {path}")


def check_folder(folder: Path, what: str) -> None:
    """`folder` is a writable folder, or can be made in its nearest existing parent folder."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what}: {existing} is not writable")
