"""Carry the byte-exact Kaggle fer2013.csv to a machine that cannot fetch it, in under 64 MiB.

The CSV is 301 MB of decimal text; its 35,887 faces are 83 MB of bytes, and a horizontal delta filter plus
LZMA2 brings them to 58 MiB (the device tool carries at most 64 MiB). Labels and Usage travel beside them.
Unpacking writes the CSV again and keeps it only if its MD5 is Kaggle's, so a run there reads exactly the file
a run here reads.

    python -m fer_sweep.data.carry pack fer2013.csv DIR       # -> DIR/pixels.xz, DIR/labels.npz   (~2 min)
    python -m fer_sweep.data.carry unpack DIR fer2013.csv     # -> fer2013.csv, MD5 checked          (~20 s)
"""
from __future__ import annotations

import hashlib
import lzma
import sys
from pathlib import Path

import numpy as np

from fer_sweep.data.arrays import IMAGE_SIZE, FERArrays
from fer_sweep.data.errors import DataError
from fer_sweep.data.fer2013 import read_fer2013, write_kaggle_csv
from fer_sweep.data.fingerprint import KAGGLE_MD5

PIXELS_FILE, LABELS_FILE = "pixels.xz", "labels.npz"
FILTERS = [{"id": lzma.FILTER_DELTA, "dist": 1}, {"id": lzma.FILTER_LZMA2, "preset": 6}]


def pack(csv: Path, folder: Path) -> None:
    data = read_fer2013(csv)
    folder.mkdir(parents=True, exist_ok=True)
    packed = lzma.compress(np.ascontiguousarray(data.images).tobytes(), format=lzma.FORMAT_XZ, filters=FILTERS)
    (folder / PIXELS_FILE).write_bytes(packed)
    np.savez(folder / LABELS_FILE, emotion=data.labels.astype(np.int8), usage=data.usage.astype(np.int8))


def unpack(folder: Path, csv: Path, expected_md5: str = KAGGLE_MD5) -> int:
    """Write folder's faces to csv; 0 if its MD5 is expected_md5, else 1 and nothing written."""
    labels = np.load(folder / LABELS_FILE)
    pixels = np.frombuffer(lzma.decompress((folder / PIXELS_FILE).read_bytes()), dtype=np.uint8)
    data = FERArrays(pixels.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), labels["emotion"].astype(np.int64),
                     labels["usage"], source=str(folder))
    tmp = write_kaggle_csv(data, csv.with_name(csv.name + ".tmp"))
    md5 = hashlib.md5(tmp.read_bytes()).hexdigest()
    if md5 != expected_md5:
        tmp.unlink()
        print(f"{csv}: MD5 {md5} is not the expected {expected_md5}: not written", file=sys.stderr)
        return 1
    tmp.replace(csv)
    print(f"{csv}: {len(data)} rows, MD5 {md5} ({'Kaggle' if md5 == KAGGLE_MD5 else 'as expected'})")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("pack", "unpack"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == "pack":
            pack(Path(argv[1]), Path(argv[2]))
            return 0
        return unpack(Path(argv[1]), Path(argv[2]))
    except (OSError, DataError, KeyError, ValueError, lzma.LZMAError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
