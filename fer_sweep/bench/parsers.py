"""Section 1: the CSV to parse (prepared from any layout) and the parsers timed on it: torchvision's FER2013,
the article's per-row loop, ours (``read_csv``) and ours reloaded from the ``.npz`` cache."""
from __future__ import annotations

import contextlib
import gzip
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import pandas as pd
import torch

from fer_sweep.data.arrays import IMAGE_SIZE, USAGES, FERArrays
from fer_sweep.data.cache import cached
from fer_sweep.data.fer2013 import KAGGLE_HEADER, read_csv, read_fer2013, write_kaggle_csv


def _open_text(path: Path):
    return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")


def prepare_csv(csv: Optional[Path], folder: Optional[Path], rows: Optional[int], workdir: Path) -> Tuple[Path, str]:
    """A plain Kaggle-layout CSV at workdir/fer2013/fer2013.csv (where torchvision's FER2013 looks), and a note.

    A plain Kaggle CSV is linked, not copied; a .gz one is decompressed; the icml variant and image folders are
    converted (read with our reader, written in the Kaggle layout); --rows keeps the first N data rows.
    """
    target = workdir / "fer2013" / "fer2013.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    if folder is not None:
        tic = time.perf_counter()
        data = read_fer2013(folder)
        if rows:
            data = data.subset(np.arange(min(rows, len(data))))
        write_kaggle_csv(data, target)
        return target, (f"wrote a Kaggle-layout CSV ({len(data):,} rows) from the image folder {folder} "
                        f"in {time.perf_counter() - tic:.1f}s")
    with _open_text(csv) as f:
        header = f.readline().strip()
    if header != KAGGLE_HEADER:  # e.g. icml_face_data.csv ("emotion, Usage, pixels")
        data = read_fer2013(csv)
        if rows:
            data = data.subset(np.arange(min(rows, len(data))))
        write_kaggle_csv(data, target)
        return target, f"converted {csv} (header {header!r}) to the Kaggle layout ({len(data):,} rows)"
    if rows or csv.suffix == ".gz":
        with _open_text(csv) as src, open(target, "w", newline="") as dst:
            dst.write(src.readline())
            for k, line in enumerate(src):
                if rows and k >= rows:
                    break
                dst.write(line)
        what = f"first {rows:,} rows of " if rows else "decompressed "
        return target, f"{what}{csv}"
    target.symlink_to(csv.resolve())
    return target, str(csv)


def article_parse(path: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The article-style reader: pandas, then a Python loop over rows, one np.array(split) per image (float64)."""
    df = pd.read_csv(path)
    images, labels, usage = [], [], []
    for _, row in df.iterrows():
        pixels = np.array(row["pixels"].split(" "), dtype="float64").reshape(IMAGE_SIZE, IMAGE_SIZE)
        images.append(pixels)
        labels.append(int(row["emotion"]))
        usage.append(row["Usage"])
    return np.array(images), np.array(labels), np.array(usage)


@contextlib.contextmanager
def _torchvision_md5_tolerant(record: Dict[str, Any]):
    """Let torchvision's FER2013 accept a CSV whose md5 is not the Kaggle original's (a subset, a converted
    folder), while still paying the md5 pass it always pays; record whether the file was the original."""
    import torchvision.datasets.fer2013 as tv_fer
    from torchvision.datasets.utils import calculate_md5

    original = tv_fer.check_integrity

    def check(fpath, md5=None):
        if not os.path.isfile(fpath):
            return False
        if md5 is not None:
            record["md5_matches_kaggle"] = calculate_md5(fpath) == md5
        return True

    tv_fer.check_integrity = check
    try:
        yield
    finally:
        tv_fer.check_integrity = original


def _torchvision_parse(csv_path: Path, record: Optional[Dict[str, Any]] = None):
    from torchvision.datasets import FER2013

    with _torchvision_md5_tolerant(record if record is not None else {}):
        return (FER2013(str(csv_path.parent.parent), split="train"),
                FER2013(str(csv_path.parent.parent), split="test"))


PARSERS: Dict[str, Callable[[Path], Any]] = {"torchvision": _torchvision_parse, "article": article_parse,
                                            "ours": read_csv}


def parse_seconds(kind: str, csv_path: str) -> float:
    """Seconds one parser takes on csv_path in this process (run by `time_parse_fresh` in a new one)."""
    tic = time.perf_counter()
    PARSERS[kind](Path(csv_path))
    return time.perf_counter() - tic


def time_parse_fresh(kind: str, csv_path: Path) -> float:
    """Time a parser in a fresh Python process, so no parser inherits another's heap (imports not timed)."""
    code = ("from fer_sweep.bench.parsers import parse_seconds; "
            f"print('PARSE_S', parse_seconds({kind!r}, {str(csv_path)!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("PARSE_S ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"timing the {kind} parser failed:\n{done.stderr[-2000:]}")
    return float(lines[-1].split()[1])


def bench_parse(csv_path: Path, cache_dir: Path) -> Tuple[Dict[str, Any], FERArrays]:
    """Time the parsers on csv_path, each in a fresh process (page cache warmed first), then parse once more
    in this process to check that all of them give the same images; returns figures and our parsed data."""
    csv_path.read_bytes()  # warm the page cache so the first parser timed pays no disk read
    out: Dict[str, Any] = {"csv": str(csv_path), "csv_bytes": csv_path.stat().st_size}
    for kind in PARSERS:
        out[f"{kind}_s"] = time_parse_fresh(kind, csv_path)

    tv_train, tv_test = _torchvision_parse(csv_path, out)
    tv_rows = len(tv_train) + len(tv_test)
    art_images, art_labels, _ = article_parse(csv_path)
    ours = read_csv(csv_path)

    cached(csv_path, cache_dir, read_fer2013)  # first call parses and writes the cache
    tic = time.perf_counter()
    reloaded = cached(csv_path, cache_dir, read_fer2013)
    out["cache_reload_s"] = time.perf_counter() - tic
    out["cache_file"] = reloaded.meta.get("cache")
    out["cache_bytes"] = Path(out["cache_file"]).stat().st_size if out["cache_file"] else None

    out["rows"] = len(ours)
    out["article_pixels_dtype"] = str(art_images.dtype)
    out["article_pixels_bytes"] = int(art_images.nbytes)
    train_mask = ours.usage == USAGES.index("Training")
    tv_images = [torch.stack([img for img, _ in samples]).numpy() if len(samples) else np.empty((0, 48, 48), np.uint8)
                 for samples in (tv_train._samples, tv_test._samples)]
    out["images_agree"] = bool(
        tv_rows == len(ours)
        and np.array_equal(tv_images[0], ours.images[train_mask])
        and np.array_equal(tv_images[1], ours.images[~train_mask])
        and np.array_equal(art_images, ours.images) and np.array_equal(art_labels, ours.labels)
        and np.array_equal(reloaded.images, ours.images) and np.array_equal(reloaded.labels, ours.labels))
    for key in ("article", "ours", "cache_reload"):
        out[f"{key}_speedup"] = out["torchvision_s"] / max(out[f"{key}_s"], 1e-9)
    del tv_train, tv_test, tv_images, art_images
    return out, ours
