"""Readers for the FER2013 layouts people actually have.

* the Kaggle CSV ``fer2013.csv`` (``emotion,pixels,Usage``), optionally gzip-compressed;
* the ``icml_face_data.csv`` variant (``emotion, Usage, pixels`` with leading spaces in the header);
* the image-folder layout ``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` (Usage from file-name prefixes).

A canonical Kaggle CSV is parsed from its raw bytes by numpy (``kaggle_bytes.py``). Anything else (quoting, the
icml layout, CRLF, a bad row) goes through pandas, where the pixel strings are parsed by ``np.fromstring`` one
chunk of rows per thread, and a slow row-by-row pass runs only to name the row at fault.
"""
from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd

from fer_sweep.data.arrays import EMOTIONS, IMAGE_SIZE, USAGES, FERArrays
from fer_sweep.data.errors import DataError
from fer_sweep.data.kaggle_bytes import read_kaggle_bytes

log = logging.getLogger(__name__)

N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
FOLDER_SPLITS = {"train": "Training", "test": "PrivateTest"}  # default Usage when the file name has no prefix


def read_fer2013(path: str | Path) -> FERArrays:
    """Read a FER2013 CSV file (plain or .gz) or image folder into :class:`FERArrays`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (set data.path or FER2013_PATH)")
    if path.is_dir():
        return read_image_folder(path)
    return read_csv(path)


# --------------------------------------------------------------------------------------------- CSV
KAGGLE_HEADER = "emotion,pixels,Usage"


def write_kaggle_csv(data: FERArrays, path: Path) -> Path:
    """Write data as a Kaggle-layout fer2013.csv (emotion,pixels,Usage; pixels space-separated, row-major)."""
    words = np.array([str(v) for v in range(256)], dtype=object)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(KAGGLE_HEADER + "\n")
        for image, label, usage in zip(data.images.reshape(len(data), -1), data.labels, data.usage):
            f.write(f"{int(label)},{' '.join(words[image])},{USAGES[int(usage)]}\n")
    return path


def read_csv(path: Path) -> FERArrays:
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        fast = read_kaggle_bytes(path)
    except (OSError, EOFError):  # e.g. a damaged .gz: pandas below reports it with the file name
        fast = None
    if fast is not None:
        return FERArrays(*fast, EMOTIONS, source=str(path))
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in ("emotion", "pixels", "Usage") if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(frame.columns)} "
                        "(expected the Kaggle layout emotion,pixels,Usage)")
    if len(frame) == 0:
        raise DataError(f"{path}: the file has a header but no rows")
    labels = _parse_labels(path, frame["emotion"])
    usage = _parse_usage(path, frame["Usage"])
    images = _parse_pixels(path, frame["pixels"])
    return FERArrays(images, labels, usage, EMOTIONS, source=str(path))


def _row(i: int) -> str:
    """CSV line number of data row i (line 1 is the header)."""
    return f"row {i + 2}"


def _parse_labels(path: Path, column: pd.Series) -> np.ndarray:
    values = pd.to_numeric(column.str.strip(), errors="coerce")
    bad = values.isna() | (values % 1 != 0) | (values < 0) | (values >= len(EMOTIONS))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: {_row(i)}: emotion {column.iloc[i]!r} is not an integer 0-6 "
                        f"({int(bad.sum())} bad row(s) in all)")
    return values.to_numpy().astype(np.int64)


def _parse_usage(path: Path, column: pd.Series) -> np.ndarray:
    codes = column.str.strip().map({u: i for i, u in enumerate(USAGES)}).fillna(-1).to_numpy()
    if (codes < 0).any():
        i = int(np.flatnonzero(codes < 0)[0])
        raise DataError(f"{path}: {_row(i)}: unknown Usage {column.iloc[i]!r}; expected one of {list(USAGES)}")
    return codes.astype(np.int8)


def _parse_pixels(path: Path, column: pd.Series) -> np.ndarray:
    """All pixel strings -> uint8 (N, 48, 48). np.fromstring releases the GIL, so row chunks parse in parallel."""
    rows = column.tolist()
    n_chunks = max(1, min(os.cpu_count() or 1, 8, len(rows) // 1000))
    bounds = np.linspace(0, len(rows), n_chunks + 1).astype(int)
    with ThreadPoolExecutor(n_chunks) as pool:
        chunks = list(pool.map(_parse_chunk, (rows[a:b] for a, b in zip(bounds[:-1], bounds[1:]))))
    if any(chunk is None for chunk in chunks):
        _raise_first_bad_pixel_row(path, column)
    return np.concatenate(chunks).reshape(len(rows), IMAGE_SIZE, IMAGE_SIZE)


def _parse_chunk(rows: List[str]) -> Optional[np.ndarray]:
    """uint8 pixels of these rows, or None when any value is missing, extra, non-integer or outside 0-255."""
    with warnings.catch_warnings():
        # numpy warns (instead of raising) on text it cannot parse as integers, e.g. "x" or "2.5"
        warnings.simplefilter("error")
        try:
            flat = np.fromstring(" ".join(rows), dtype=np.int32, sep=" ")
        except (DeprecationWarning, ValueError):
            return None
    if flat.size != len(rows) * N_PIXELS or (flat.size and (flat.min() < 0 or flat.max() > 255)):
        return None
    return flat.astype(np.uint8)


def _raise_first_bad_pixel_row(path: Path, column: pd.Series) -> None:
    """Slow path: find and name the first malformed pixels field."""
    for i, text in enumerate(column.tolist()):
        tokens = text.split()
        if len(tokens) != N_PIXELS:
            raise DataError(f"{path}: {_row(i)}: pixels has {len(tokens)} values, expected {N_PIXELS} (48x48)")
        for j, token in enumerate(tokens):
            if not token.isdigit() or int(token) > 255:
                raise DataError(f"{path}: {_row(i)}: pixel {j} is {token!r}, expected an integer 0-255")
    raise DataError(f"{path}: could not parse the pixels column")  # pragma: no cover - defensive


# ----------------------------------------------------------------------------------- image folders
def list_image_folder(root: Path) -> List[Tuple[Path, int, int]]:
    """(file, label, usage) for every image below root/train and root/test, sorted for determinism."""
    splits = [d for d in ("train", "test") if (root / d).is_dir()]
    if not splits:
        raise DataError(f"{root}: expected sub-folders train/ and test/ with one folder per emotion "
                        f"({', '.join(EMOTIONS)})")
    entries = []
    for split in splits:
        for class_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            name = class_dir.name.lower()
            if name not in EMOTIONS:
                raise DataError(f"{class_dir}: unknown class folder {class_dir.name!r}; expected {list(EMOTIONS)}")
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    entries.append((file, EMOTIONS.index(name), _usage_from_name(file.name, split)))
    if not entries:
        raise DataError(f"{root}: no image files found under {', '.join(s + '/' for s in splits)}")
    return entries


def _usage_from_name(name: str, split: str) -> int:
    for u, usage in enumerate(USAGES):
        if name.startswith(usage + "_"):
            return u
    return USAGES.index(FOLDER_SPLITS[split])


def load_face_image(file: Path) -> np.ndarray:
    """Decode one image as 48x48 uint8 grayscale: RGB is converted, other sizes are resized (bilinear)."""
    return _decode_gray(file)[0]


def _decode_gray(file: Path) -> Tuple[np.ndarray, Tuple[int, int]]:
    """(48x48 uint8 grayscale pixels, the image's original size)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as im:
            size = im.size
            im = im.convert("L")
            if size != (IMAGE_SIZE, IMAGE_SIZE):
                im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8), size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{file}: unreadable image ({exc})") from None


def read_image_folder(root: Path) -> FERArrays:
    entries = list_image_folder(root)
    images = np.empty((len(entries), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    resized = []
    for k, (file, _, _) in enumerate(entries):
        images[k], size = _decode_gray(file)
        if size != (IMAGE_SIZE, IMAGE_SIZE):
            resized.append(file.name)
    if resized:
        log.warning("%s: %d image(s) are not 48x48 (e.g. %s); they were resized to 48x48",
                    root, len(resized), resized[:3])
    labels = np.array([e[1] for e in entries], dtype=np.int64)
    usage = np.array([e[2] for e in entries], dtype=np.int8)
    return FERArrays(images, labels, usage, EMOTIONS, source=str(root))
