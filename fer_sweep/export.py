"""Export a trained model for deployment, and prove the copy computes what the checkpoint does.

    python -m fer_sweep.export best.pt --format onnx --output fer.onnx
    python -m fer_sweep.export best.pt --format torchscript --output fer.ts.pt --check-data fer2013.csv

The exported model takes normalised float32 (N, 1, 48, 48) input, any N, and returns logits; the class names
and the normalisation travel inside the file (ONNX metadata_props; TorchScript extra file `fer_sweep.json`).
After export, a parity check runs the copy (onnxruntime, or the reloaded TorchScript) and PyTorch on real
faces in batches of 1 and 7; a logit difference over the tolerance fails with exit status 1. The file is
written under a temporary name and renamed only after the check passes, so a failed export leaves nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from fer_sweep.checkpoint import CheckpointError, LoadedModel, load_checkpoint
from fer_sweep.data.errors import DataError
from fer_sweep.destination import check_file
from fer_sweep.errors import UserError
from fer_sweep.extras import MissingExtra, require

log = logging.getLogger(__name__)
FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
TOLERANCE = 1e-4
PARITY_BATCHES = (1, 7)  # a batch of 7 after a batch of 1 proves the batch axis is really dynamic
EXTRA_FILE = "fer_sweep.json"
SHARED_SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fer2013_folder_sample"


class ParityError(Exception):
    def __init__(self, diff: float, tolerance: float):
        super().__init__(f"parity check failed: max |logit difference| {diff:.3g} > tolerance {tolerance:g}")
        self.diff = diff


# ------------------------------------------------------------------------------------------ writing
def write_onnx(loaded: LoadedModel, path: Path) -> None:
    """ONNX with a dynamic batch axis, input 'images' and output 'logits', metadata in metadata_props."""
    onnx = require("onnx", "export --format onnx")
    require("onnxscript", "export --format onnx")  # torch.onnx's exporter

    example = torch.zeros(2, 1, 48, 48)
    try:
        batch = torch.export.Dim("batch", min=1)
        torch.onnx.export(loaded.model, (example,), str(path), input_names=["images"],
                          output_names=["logits"], dynamic_shapes=({0: batch},), dynamo=True, verbose=False)
    except Exception as exc:  # the torch.export-based exporter cannot take every model; the old one may
        log.warning("torch.export-based ONNX export failed (%s); using the TorchScript-based exporter", exc)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
            torch.onnx.export(loaded.model, (example,), str(path), input_names=["images"],
                              output_names=["logits"], dynamo=False,
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, _onnx_metadata(loaded))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _onnx_metadata(loaded: LoadedModel) -> dict:
    meta = loaded.metadata()
    return {"fer_sweep": json.dumps(meta), "class_names": json.dumps(meta["class_names"]),
            "mean": str(meta["mean"]), "std": str(meta["std"]), "model": meta["model"]}


def write_torchscript(loaded: LoadedModel, path: Path) -> None:
    """A traced TorchScript module with the metadata as the extra file `fer_sweep.json`."""
    with _quiet_jit():
        traced = torch.jit.trace(loaded.model, torch.zeros(2, 1, 48, 48))
        torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: json.dumps(loaded.metadata())})


@contextlib.contextmanager
def _quiet_jit():
    """TorchScript is deprecated in favour of torch.export, but it is the format asked for: hide that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit.*")
        yield


WRITERS = {"onnx": write_onnx, "torchscript": write_torchscript}


# ------------------------------------------------------------------------------------------ parity
def runner(fmt: str, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A function running the exported file on normalised float32 (N, 1, 48, 48) -> logits."""
    if fmt == "onnx":
        ort = require("onnxruntime", "export --format onnx (its parity check)")

        ort_session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = ort_session.get_inputs()[0].name
        return lambda x: ort_session.run(None, {name: x})[0]
    with _quiet_jit():
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad(), _quiet_jit():
            return module(torch.from_numpy(x)).numpy()

    return run


def parity_images(check_data: Optional[Path] = None) -> Tuple[np.ndarray, str]:
    """Real faces to compare on (uint8 (N, 48, 48)) and where they came from."""
    from fer_sweep.data.fer2013 import read_fer2013

    if check_data is not None:
        return read_fer2013(check_data).images, str(check_data)
    if SHARED_SAMPLE.is_dir():
        return read_fer2013(SHARED_SAMPLE).images, str(SHARED_SAMPLE)
    from fer_sweep.data.synthetic import make_synthetic

    return make_synthetic(70, 14, 14).images, "synthetic faces (make_synthetic(70, 14, 14))"


def normalized(loaded: LoadedModel, images_u8: np.ndarray) -> np.ndarray:
    """The model's input as the checkpoint's normalisation defines it."""
    x = images_u8.astype(np.float32)[:, None] / np.float32(255.0)
    return np.ascontiguousarray((x - np.float32(loaded.mean)) / np.float32(loaded.std), dtype=np.float32)


def max_logit_difference(loaded: LoadedModel, run: Callable[[np.ndarray], np.ndarray], images_u8: np.ndarray,
                         batch_sizes: Sequence[int] = PARITY_BATCHES) -> float:
    """Largest |exported - PyTorch| logit over the images, fed in each batch size in turn."""
    x = normalized(loaded, images_u8)
    with torch.no_grad():
        reference = loaded.model(torch.from_numpy(x)).numpy()
    worst = 0.0
    for size in batch_sizes:
        for start in range(0, len(x), size):
            got = run(x[start:start + size])
            worst = max(worst, float(np.abs(got - reference[start:start + size]).max()))
    return worst


# ------------------------------------------------------------------------------------------ the command
def export(checkpoint: Path, fmt: str, output: Path, check_data: Optional[Path] = None,
           tolerance: float = TOLERANCE) -> float:
    """Export, check parity, then move into place; returns the measured max logit difference."""
    if fmt == "onnx":  # all three before any work
        for module in ("onnx", "onnxscript", "onnxruntime"):
            require(module, "export --format onnx")
    loaded = load_checkpoint(checkpoint)
    images, source = parity_images(check_data)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        tmp = tmp_dir / f"model{SUFFIXES[fmt]}"
        WRITERS[fmt](loaded, tmp)
        diff = max_logit_difference(loaded, runner(fmt, tmp), images)
        log.info("parity on %d images from %s, batches %s: max |logit difference| %.3g", len(images), source,
                 PARITY_BATCHES, diff)
        if not diff <= tolerance:  # also catches NaN
            raise ParityError(diff, tolerance)
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return diff


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fer_sweep.export", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a run's checkpoints/best.pt")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--output", "-o", type=Path, help="default: beside the checkpoint, named after the format")
    p.add_argument("--check-data", type=Path,
                   help="FER2013 CSV or image folder for the parity check "
                        "(default: the shared folder sample, else synthetic faces)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE, help="largest allowed logit difference")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    output = args.output or args.checkpoint.with_suffix(SUFFIXES[args.format])
    try:
        check_file(output, "--output")  # before the export and its parity check, not after
        diff = export(args.checkpoint, args.format, output, args.check_data, args.tolerance)
    except ParityError as exc:
        print(f"error: {exc}; nothing was written to {output}", file=sys.stderr)
        return 1
    except MissingExtra as exc:  # a UserError too: first, so its line says which install it needs
        print(f"fer_sweep: error: {exc}", file=sys.stderr)
        return 2
    except (CheckpointError, DataError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {output} ({args.format}); parity max |logit difference| {diff:.3g} <= {args.tolerance:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
