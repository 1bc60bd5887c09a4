"""Predict emotions with a trained model: on photos (faces are found and cropped) or on FER-style face crops.

    python -m fer_sweep.predict outputs/2026-11-28/10-00-00/checkpoints/best.pt photos/*.jpg
    python -m fer_sweep.predict best.pt photos/ --output predictions.csv --tta
    python -m fer_sweep.predict best.pt photos/ --annotate annotated/ --ensemble other_run/best.pt

One row per face: file, face index, box, emotion, confidence and every class's probability. A file that
cannot be used (unreadable, not an image, no face) gets one row with `error` filled and the rest go on;
the exit status is 1 when any file failed, 2 when nothing could start (bad checkpoint, no inputs).
Decoding and detection run in threads while the model works through batches: big folders run at model speed.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, TextIO

import numpy as np
import torch
import torch.nn as nn

from fer_sweep.checkpoint import CheckpointError, LoadedModel, load_checkpoint
from fer_sweep.data.batches import MEAN, STD
from fer_sweep.destination import check_file, check_folder
from fer_sweep.engine.loop import predict_logits
from fer_sweep.engine.precision import PRECISIONS, Precision, resolve_device, resolve_precision
from fer_sweep.errors import UserError
from fer_sweep.extras import MissingExtra, require
from fer_sweep.faces import MARGIN, DetectorUnavailable, Face, NoFaceFound, faces_in, read_gray

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
FORMATS = ("table", "csv", "json")
Row = Dict[str, Any]


# ------------------------------------------------------------------------------------------- the model
class _Renormalize(nn.Module):
    """The engine normalises with the project's MEAN/STD; this re-maps that to a checkpoint's own values."""

    def __init__(self, model: nn.Module, mean: float, std: float):
        super().__init__()
        self.model, self.mean, self.std = model, mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x * STD + MEAN - self.mean) / self.std)


class Predictor:
    """One checkpoint, or several whose probabilities are averaged (an ensemble), ready on a device."""

    def __init__(self, models: Sequence[LoadedModel], device: torch.device, precision: Precision,
                 tta: bool = False):
        names = [list(m.class_names) for m in models]
        if any(n != names[0] for n in names):
            raise CheckpointError(f"the ensemble's checkpoints disagree on classes: {names}")
        self.class_names = names[0]
        self.device, self.precision, self.tta = device, precision, tta
        self.loaded = list(models)  # their metadata (path, config, val_acc); `models` are ready to run
        self.models = [self._prepare(m) for m in models]

    @classmethod
    def from_paths(cls, paths: Sequence[str | Path], device: str = "auto", precision: str = "fp32",
                   tta: bool = False) -> "Predictor":
        dev = resolve_device(device)
        return cls([load_checkpoint(p) for p in paths], dev, resolve_precision(precision, dev), tta)

    def _prepare(self, loaded: LoadedModel) -> nn.Module:
        model = loaded.model if loaded.uses_default_normalization else _Renormalize(loaded.model, loaded.mean,
                                                                                    loaded.std)
        return model.to(self.device, memory_format=torch.channels_last).eval()

    def probabilities(self, images_u8: np.ndarray) -> np.ndarray:
        """uint8 (B, 48, 48) -> float (B, classes): softmax per model, averaged over the ensemble."""
        x = torch.from_numpy(np.ascontiguousarray(images_u8)).to(self.device)
        probs = [predict_logits(m, x, self.precision, self.tta).softmax(1) for m in self.models]
        return torch.stack(probs).mean(0).cpu().numpy()


# ------------------------------------------------------------------------------------------ the inputs
def expand_inputs(inputs: Iterable[str | Path]) -> List[Path]:
    """Files as given (any suffix: a non-image gets an error row), and image files found under folders."""
    files: List[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            files.append(item)
    return files


@dataclass
class Scan:
    """One file's faces, or why it has none."""

    path: Path
    faces: List[Face] = field(default_factory=list)
    error: Optional[str] = None


@dataclass
class Options:
    detect: bool = True
    whole_if_no_face: bool = False
    margin: float = MARGIN


def scan_file(path: Path, options: Options) -> Scan:
    """Decode and find faces; any failure becomes the file's error, so one bad file never stops the rest."""
    if not path.exists():
        return Scan(path, error="no such file or folder")
    try:
        gray = read_gray(path)
    except Exception as exc:  # PIL raises many types for foreign or damaged files; all mean "unreadable"
        return Scan(path, error=_decode_error(exc))
    try:
        return Scan(path, faces_in(gray, options.detect, options.whole_if_no_face, options.margin))
    except (NoFaceFound, DetectorUnavailable) as exc:
        return Scan(path, error=str(exc))


def _decode_error(exc: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image file (no image format recognises it)"
    return f"unreadable image ({type(exc).__name__}: {_first_line(exc)})"


def scan_files(files: Sequence[Path], options: Options, workers: int, chunk: int) -> Iterator[Scan]:
    """Scans in input order, decoded `workers` at a time, `chunk` files ahead at most (bounded memory)."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(files), chunk):
            yield from pool.map(lambda p: scan_file(p, options), files[start:start + chunk])


# ------------------------------------------------------------------------------------------ prediction
def predict_files(predictor: Predictor, files: Sequence[Path], options: Optional[Options] = None,
                  batch_size: int = 256, workers: int = 2) -> Iterator[List[Row]]:
    """Each file's rows, in input order; faces from many files share batches."""
    options = options or Options()
    pending: List[Scan] = []
    queued = 0
    for scan in scan_files(files, options, workers, chunk=max(4 * batch_size, 64)):
        pending.append(scan)
        queued += len(scan.faces)
        if queued >= batch_size:
            yield from _predict_pending(predictor, pending, batch_size)
            pending, queued = [], 0
    yield from _predict_pending(predictor, pending, batch_size)


def _predict_pending(predictor: Predictor, scans: List[Scan], batch_size: int) -> Iterator[List[Row]]:
    faces = [face.pixels for scan in scans for face in scan.faces]
    probs = np.concatenate([predictor.probabilities(np.stack(faces[i:i + batch_size]))
                            for i in range(0, len(faces), batch_size)]) if faces else np.empty((0, 0))
    k = 0
    for scan in scans:
        if scan.error:
            yield [error_row(scan.path, scan.error, predictor.class_names)]
            continue
        rows = [face_row(scan.path, i, face.box, probs[k + i], predictor.class_names)
                for i, face in enumerate(scan.faces)]
        k += len(rows)
        yield rows


def columns(class_names: Sequence[str]) -> List[str]:
    return ["file", "face", "x", "y", "w", "h", "emotion", "confidence", *[f"prob_{c}" for c in class_names],
            "error"]


def face_row(path: Path, index: int, box, probs: np.ndarray, class_names: Sequence[str]) -> Row:
    best = int(np.argmax(probs))
    x, y, w, h = box
    return {"file": str(path), "face": index, "x": x, "y": y, "w": w, "h": h, "emotion": class_names[best],
            "confidence": float(probs[best]), **{f"prob_{c}": float(p) for c, p in zip(class_names, probs)},
            "error": None}


def error_row(path: Path, error: str, class_names: Sequence[str]) -> Row:
    return {**{c: None for c in columns(class_names)}, "file": str(path), "error": error}


# ------------------------------------------------------------------------------------------ the output
class TableWriter:
    """Aligned text for a terminal: probabilities to 3 decimals, the file column as wide as its longest."""

    def __init__(self, out: TextIO, class_names: Sequence[str], files: Sequence[Path]):
        self.out, self.cols = out, columns(class_names)
        self.widths = {c: max(len(c), 6) for c in self.cols}
        self.widths["file"] = max([4, *(len(str(f)) for f in files)])
        self.out.write(self._line({c: c for c in self.cols}))

    def _line(self, cells: Dict[str, str]) -> str:
        parts = [cells[c].ljust(self.widths[c]) if c in ("file", "emotion") else
                 cells[c].rjust(self.widths[c]) for c in self.cols[:-1]]
        return "  ".join(parts + [cells["error"]]).rstrip() + "\n"

    def write(self, row: Row) -> None:
        self.out.write(self._line({c: _cell(row[c]) for c in self.cols}))

    def close(self) -> None:
        self.out.flush()


class CsvWriter:
    def __init__(self, out: TextIO, class_names: Sequence[str]):
        self.writer = csv.DictWriter(out, fieldnames=columns(class_names), lineterminator="\n")
        self.writer.writeheader()
        self.out = out

    def write(self, row: Row) -> None:
        self.writer.writerow({k: "" if v is None else v for k, v in row.items()})

    def close(self) -> None:
        self.out.flush()


class JsonWriter:
    """A JSON list of row objects, written as rows arrive (no need to hold thousands in memory)."""

    def __init__(self, out: TextIO):
        self.out, self.first = out, True
        out.write("[")

    def write(self, row: Row) -> None:
        self.out.write(("\n  " if self.first else ",\n  ") + json.dumps(row))
        self.first = False

    def close(self) -> None:
        self.out.write("\n]\n")
        self.out.flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def make_writer(fmt: str, out: TextIO, class_names: Sequence[str], files: Sequence[Path]):
    if fmt == "csv":
        return CsvWriter(out, class_names)
    if fmt == "json":
        return JsonWriter(out)
    return TableWriter(out, class_names, files)


# ------------------------------------------------------------------------------------------ annotation
def annotate(path: Path, rows: List[Row], out_dir: Path, used: set) -> Optional[Path]:
    """A PNG copy of the photo with each face's box and 'emotion 0.87' drawn on it."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    with Image.open(path) as im:
        image = ImageOps.exif_transpose(im).convert("RGB")
    scale = max(1, -(-256 // max(image.size)))  # enlarge tiny crops so the label is legible
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, image.height // 30))
    for row in rows:
        x, y, w, h = (row[k] * scale for k in ("x", "y", "w", "h"))
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=(0, 255, 0), width=max(2, image.height // 200))
        label = f"{row['emotion']} {row['confidence']:.2f}"
        left, top, right, bottom = draw.textbbox((x + 3, y + 3), label, font=font)
        draw.rectangle([left - 2, top - 2, right + 2, bottom + 2], fill=(0, 0, 0))
        draw.text((x + 3, y + 3), label, fill=(255, 255, 0), font=font)
    target = _unique_png(out_dir, path.stem, used)
    image.save(target, format="PNG")
    return target


def _unique_png(out_dir: Path, stem: str, used: set) -> Path:
    """out_dir/stem.png, or stem_1.png... when files of the same name came from different folders."""
    name, n = f"{stem}.png", 0
    while name in used:
        n += 1
        name = f"{stem}_{n}.png"
    used.add(name)
    return out_dir / name


# ------------------------------------------------------------------------------------------ the command
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fer_sweep.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a run's checkpoints/best.pt")
    p.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--output", "-o", type=Path, help="write the table here (.csv or .json) instead of stdout")
    p.add_argument("--format", choices=FORMATS,
                   help="output format (default: from --output's suffix, else table)")
    p.add_argument("--tta", action="store_true",
                   help="average with the mirrored face (flip test-time augmentation)")
    p.add_argument("--no-detect", dest="detect", action="store_false",
                   help="take every image whole as a face (resized to 48x48): no face detection")
    p.add_argument("--whole-if-no-face", action="store_true",
                   help="use the whole image when no face is found, instead of an error row")
    p.add_argument("--margin", type=float, default=MARGIN,
                   help="border around a detected face, as a fraction of its side")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--workers", type=positive_int, default=min(4, os.cpu_count() or 1), help="threads decoding images")
    p.add_argument("--annotate", type=Path, metavar="DIR",
                   help="save each photo with boxes and emotions drawn on it, as PNG, here")
    p.add_argument("--ensemble", action="append", default=[], metavar="CHECKPOINT",
                   help="another checkpoint (repeat for more): probabilities are averaged with the first's")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32 (default: exact), bf16 or auto (bf16 where the hardware is fast at it)")
    return p.parse_args(argv)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def output_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    suffix = args.output.suffix.lower() if args.output else ""
    return {".csv": "csv", ".json": "json"}.get(suffix, "table")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.detect:  # before loading anything: detection needs OpenCV, an extra (--no-detect does not)
        try:
            require("cv2", "predict (face detection)")
        except MissingExtra as exc:
            print(f"fer_sweep: error: {exc}", file=sys.stderr)
            return 2
    try:
        if args.output:  # before any work: a bad destination fails now, not after the last image
            check_file(args.output, "--output")
        if args.annotate:
            check_folder(args.annotate, f"--annotate {args.annotate}")
        predictor = Predictor.from_paths([args.checkpoint, *args.ensemble], args.device, args.precision,
                                         args.tta)
    except (CheckpointError, UserError, ValueError) as exc:
        return _fail(str(exc))
    files = expand_inputs(args.inputs)
    if not files:
        return _fail(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {' '.join(args.inputs)}")
    for folder in (args.annotate, args.output.parent if args.output else None):
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
    options = Options(args.detect, args.whole_if_no_face, args.margin)
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        failed, faces = _run(predictor, files, options, args, make_writer(output_format(args), out,
                                                                          predictor.class_names, files))
    except BrokenPipeError:  # the reader (e.g. `| head`) stopped early: not every row was delivered
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        if args.output:
            out.close()
    print(f"{len(files)} file(s), {faces} face(s), {failed} failed" +
          (f"; wrote {args.output}" if args.output else ""), file=sys.stderr)
    return 1 if failed else 0


def _run(predictor: Predictor, files: Sequence[Path], options: Options, args: argparse.Namespace,
         writer) -> tuple:
    """Write every row; annotate when asked. Returns (files failed, faces predicted)."""
    failed = faces = 0
    used: set = set()
    for rows in predict_files(predictor, files, options, args.batch_size, args.workers):
        for row in rows:
            writer.write(row)
        if rows[0]["error"]:
            failed += 1
            continue
        faces += len(rows)
        if args.annotate:
            annotate(Path(rows[0]["file"]), rows, args.annotate, used)
    writer.close()
    return failed, faces


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
