#!/usr/bin/env python3
"""Carry the byte-exact Kaggle fer2013.csv to a machine that cannot fetch it, in under 64 MiB (the device
tool's limit).

The CSV is 301 MB of decimal text; its 35,887 faces are 83 MB of bytes, and a horizontal delta filter plus
LZMA2 brings them to 58 MiB. Labels and splits travel beside them. Unpacking writes the CSV again and checks
the MD5 that torchvision publishes for Kaggle's file, so a run there reads exactly the file a run here reads.

    python carry_data.py pack fer2013.csv DIR        # -> DIR/pixels.xz, DIR/labels.npz   (~2 min)
    python carry_data.py unpack DIR fer2013.csv      # -> fer2013.csv, MD5 checked          (~20 s)
Needs numpy only."""
import hashlib
import lzma
import sys
from pathlib import Path

import numpy as np

KAGGLE_MD5 = "f8428a1edbd21e88f42c73edd2a14f95"
USAGES = ["Training", "PublicTest", "PrivateTest"]
HEADER = "emotion,pixels,Usage\n"
FILTERS = [{"id": lzma.FILTER_DELTA, "dist": 1}, {"id": lzma.FILTER_LZMA2, "preset": 6}]


def pack(csv: Path, folder: Path) -> None:
    lines = csv.read_text().splitlines()
    if lines[0] + "\n" != HEADER:
        sys.exit(f"{csv}: expected the header {HEADER.strip()!r}, found {lines[0]!r}")
    rows = [line.split(",") for line in lines[1:]]
    emotion = np.array([int(r[0]) for r in rows], dtype=np.int8)
    usage = np.array([USAGES.index(r[2]) for r in rows], dtype=np.int8)
    pixels = np.array([np.array(r[1].split(), dtype=np.uint8) for r in rows])
    folder.mkdir(parents=True, exist_ok=True)
    packed = lzma.compress(pixels.tobytes(), format=lzma.FORMAT_XZ, filters=FILTERS)
    (folder / "pixels.xz").write_bytes(packed)
    np.savez(folder / "labels.npz", emotion=emotion, usage=usage)


def unpack(folder: Path, csv: Path, expected_md5: str = KAGGLE_MD5) -> int:
    labels = np.load(folder / "labels.npz")
    emotion, usage = labels["emotion"], labels["usage"]
    pixels = np.frombuffer(lzma.decompress((folder / "pixels.xz").read_bytes()), dtype=np.uint8)
    pixels = pixels.reshape(len(emotion), -1)
    text = HEADER + "".join(f"{e},{' '.join(map(str, p.tolist()))},{USAGES[u]}\n"
                            for e, p, u in zip(emotion.tolist(), pixels, usage.tolist()))
    data = text.encode()
    md5 = hashlib.md5(data).hexdigest()
    if md5 != expected_md5:
        print(f"{csv}: MD5 {md5} is not the expected {expected_md5}: not written", file=sys.stderr)
        return 1
    tmp = csv.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(csv)
    print(f"{csv}: {len(emotion)} rows, MD5 {md5} ({'Kaggle' if md5 == KAGGLE_MD5 else 'as expected'})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__)
    if sys.argv[1] == "pack":
        pack(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(unpack(Path(sys.argv[2]), Path(sys.argv[3])))
