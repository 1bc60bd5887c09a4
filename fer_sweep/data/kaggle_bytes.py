"""A byte-level parser for the canonical Kaggle ``fer2013.csv``: numpy over the raw file, no per-row Python.

Every line of that file is ``E,p0 p1 ... p2303,Usage`` with a one-digit emotion, 2304 pixels of 1-3 digits
separated by single spaces, and one of three Usage words. The file is read as one uint8 array; digits are
found with one comparison, each number's end with one shift, and each number's value from the (at most)
three digits before its end. Row chunks run on threads (numpy releases the GIL in these calls).

This path accepts only what it can verify: the exact header, 2305 numbers per line, single-space separators,
values 0-255, known Usage words. On anything else it returns None and the pandas reader (which understands
quoting and names the bad row in its error) takes over, so strict and friendly stay one reader.
"""
from __future__ import annotations

import gzip
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from fer_sweep.data.arrays import EMOTIONS, IMAGE_SIZE, USAGES

N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
NUMBERS_PER_ROW = 1 + N_PIXELS  # the emotion, then the pixels
HEADER = b"emotion,pixels,Usage"
_USAGE_WIDTH = max(len(u) for u in USAGES)
_USAGE_TABLE = np.array([list(u.encode().ljust(_USAGE_WIDTH)) for u in USAGES], dtype=np.uint8)

Parsed = Tuple[np.ndarray, np.ndarray, np.ndarray]  # images (N,48,48) uint8, labels int64, usage int8


def read_kaggle_bytes(path: Path, threads: Optional[int] = None) -> Optional[Parsed]:
    """(images, labels, usage) from a plain or gzip Kaggle CSV, or None when the file is not canonical."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    header_end = data.find(b"\n")
    if header_end < 0 or data[:header_end].rstrip(b"\r") != HEADER:
        return None
    body = data[header_end + 1:]
    if not body.endswith(b"\n"):
        body += b"\n"
    if b"\r" in body[:100_000]:  # Windows line ends: leave them to pandas rather than special-case here
        return None
    chunks = _row_chunks(body)
    with ThreadPoolExecutor(threads or min(os.cpu_count() or 1, 8)) as pool:
        parts = list(pool.map(_parse_rows, chunks))
    if any(part is None for part in parts):
        return None
    images = np.concatenate([p[0] for p in parts]).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    return images, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def _row_chunks(body: bytes, chunk_bytes: int = 1 << 20) -> List[np.ndarray]:
    """uint8 views of about chunk_bytes each (small enough to stay in cache), each ending after a newline."""
    buf = np.frombuffer(body, dtype=np.uint8)
    chunks, start = [], 0
    while start < len(body):
        end = body.find(b"\n", start + chunk_bytes) + 1 or len(body)
        chunks.append(buf[start:end])
        start = end
    return chunks


def _parse_rows(chunk: np.ndarray) -> Optional[Parsed]:
    """Parse whole lines; None unless every line is exactly ``E,p p ... p,Usage``.

    Full-length passes are cheap byte comparisons; the per-number work is gathers at the indices of number
    ends and beginnings (sorted, so cache-friendly). Chunks are about 1 MB so every pass stays in cache.
    """
    digit = chunk - np.uint8(48)  # wraps for non-digits, so `digit < 10` marks the digits
    is_digit = digit < 10
    edge = is_digit.copy()
    edge[:-1] &= ~is_digit[1:]
    ends = np.flatnonzero(edge)    # the last digit of each number
    edge[:] = is_digit
    edge[1:] &= ~is_digit[:-1]
    begins = np.flatnonzero(edge)  # the first digit of each number
    newlines = np.flatnonzero(chunk == 10)
    rows = len(newlines)
    if len(ends) != rows * NUMBERS_PER_ROW or len(begins) != len(ends):
        return None
    three_digits = ends - begins == 2
    if (ends - begins).max(initial=0) > 2:
        return None                # four digits or more
    # Value from the digit at each end and the two bytes before it. With non-digits zeroed, the tens need
    # no case split (a separator adds 0); the hundreds do, as two bytes back may be the previous number.
    digit *= is_digit
    value = digit[ends].astype(np.uint16)
    value += 10 * np.concatenate([_ZERO, digit[:-1]])[ends].astype(np.uint16)
    value += three_digits * (100 * np.concatenate([_ZERO, _ZERO, digit[:-2]])[ends].astype(np.uint16))
    # The byte after each number and before each one: "E," then "p " ... "p," for the pixels, and every
    # number begins after a newline, a comma or a space as its position in the line says.
    after = chunk[ends + 1].reshape(rows, NUMBERS_PER_ROW)
    before = np.concatenate([_NEWLINE, chunk])[begins].reshape(rows, NUMBERS_PER_ROW)
    if not ((after == _AFTER).all() and (before == _BEFORE).all()):
        return None
    if np.count_nonzero(chunk == 32) != rows * (N_PIXELS - 1):
        return None                 # a space outside the separators (extra or double spaces)
    commas = np.flatnonzero(chunk == 44)
    if len(commas) != 2 * rows:
        return None
    per_row = value.reshape(rows, NUMBERS_PER_ROW)
    labels = per_row[:, 0].astype(np.int64)
    if (labels >= len(EMOTIONS)).any() or per_row[:, 1:].max(initial=0) > 255:
        return None
    usage = _usage_codes(chunk, commas[1::2] + 1, newlines)
    if usage is None:
        return None
    return per_row[:, 1:].astype(np.uint8), labels, usage


_ZERO, _NEWLINE = np.zeros(1, np.uint8), np.full(1, 10, np.uint8)
_AFTER = np.array([ord(",")] + [ord(" ")] * (N_PIXELS - 1) + [ord(",")], dtype=np.uint8)
_BEFORE = np.array([10, ord(",")] + [ord(" ")] * (N_PIXELS - 1), dtype=np.uint8)


def _usage_codes(chunk: np.ndarray, word_starts: np.ndarray, newlines: np.ndarray) -> Optional[np.ndarray]:
    """Index into USAGES of the word between each word start and its newline; None if any is unknown."""
    lengths = newlines - word_starts
    if (lengths < 1).any() or (lengths > _USAGE_WIDTH).any():
        return None
    offsets = np.arange(_USAGE_WIDTH)
    index = np.minimum(word_starts[:, None] + offsets, len(chunk) - 1)
    words = np.where(offsets < lengths[:, None], chunk[index], ord(" ")).astype(np.uint8)
    matches = (words[:, None, :] == _USAGE_TABLE[None]).all(2)
    if not matches.any(1).all():
        return None
    return matches.argmax(1).astype(np.int8)
