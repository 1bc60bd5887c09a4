"""`python -m fer_sweep.bench`: the classic FER2013 pipeline against ours, measured side by side in one run.

    python -m fer_sweep.bench --csv fer2013.csv                      # full benchmark (minutes)
    python -m fer_sweep.bench --folder archive/ --output bench.json  # image-folder layout: a CSV is written first
    python -m fer_sweep.bench --csv fer2013.csv --rows 2000 --steps 3   # a quick look

Sections (each figure is measured in this run, on this machine):

1. Parse fer2013.csv: the real ``torchvision.datasets.FER2013`` (train + test, its whole ``__init__``), the
   article-style pandas loop (one ``np.array(pixels.split())`` per row), ours (``read_csv``: numpy over the raw
   bytes, ``data/kaggle_bytes.py``) and ours reloaded from the ``.npz`` cache; speed-ups relative to torchvision.
   Each parser is timed in a fresh Python process, so none inherits another's heap.
2. Training throughput (images/s in steady state, after warm-up), per model and at one batch size:
   classic = DataLoader, 2 workers, a PIL image per sample and the article's torchvision transforms, fp32,
   contiguous tensors; ceiling = the bare model step on one fixed batch (no data work) at the resolved precision,
   channels_last; ours = the real ``fit`` loop (DeviceBatches, normalize, the ``seed`` augmentation) at that
   precision, timed per batch by a callback.
3. Memory: bytes of the dataset as held (uint8) vs the article's float64 pixel arrays; peak RSS of a fresh process
   training on the whole dataset, and of this process.
4. The machine: CPU model, cores, torch version, device, precision.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from fer_sweep.augment import build_augmentation
from fer_sweep.data import resolve_path
from fer_sweep.data.arrays import IMAGE_SIZE, USAGES, FERArrays
from fer_sweep.data.batches import DeviceBatches, normalize
from fer_sweep.data.cache import cached
from fer_sweep.data.fer2013 import read_csv, read_fer2013
from fer_sweep.engine.callbacks import Callback
from fer_sweep.engine.loop import fit, train_step
from fer_sweep.engine.precision import Precision, bf16_is_fast, resolve_device, resolve_precision
from fer_sweep.models import build_model
from fer_sweep.optim import Schedule

KAGGLE_HEADER = "emotion,pixels,Usage"
FULL_ROWS = 35887
LR = 1e-3  # Adam's lr for all timed steps; throughput does not depend on it


# ------------------------------------------------------------------------------------------------ helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(device: torch.device) -> float:
    _sync(device)
    return time.perf_counter()


def _status_bytes(field: str) -> Optional[int]:
    """A memory figure from /proc/self/status (Linux), e.g. VmRSS or VmHWM, in bytes; None elsewhere."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def _peak_rss_bytes() -> int:
    """Peak resident memory of this process: VmHWM from /proc/self/status on Linux, else ru_maxrss.

    ru_maxrss is avoided where possible: on Linux a child inherits its parent's high-water mark across
    fork + exec, so a fresh process would report the (larger) benchmark process's peak.
    """
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, kilobytes on Linux


def machine_info(device: torch.device, precision: Precision) -> Dict[str, Any]:
    cpu, flags = "", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not cpu:
                cpu = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    cpu = cpu or platform.processor() or platform.machine()
    info = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_bf16": "amx_bf16" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else "none",
            "python": platform.python_version(), "torch": torch.__version__, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
            "precision": precision.name, "bf16_fast": bf16_is_fast(device)}
    with contextlib.suppress(ImportError):
        import torchvision

        info["torchvision"] = torchvision.__version__
    return info


# ------------------------------------------------------------------------------------- 1. the CSV to parse
def write_kaggle_csv(data: FERArrays, path: Path) -> Path:
    """Write data as a Kaggle-layout fer2013.csv (emotion,pixels,Usage; pixels space-separated, row-major)."""
    words = np.array([str(v) for v in range(256)], dtype=object)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(KAGGLE_HEADER + "\n")
        for image, label, usage in zip(data.images.reshape(len(data), -1), data.labels, data.usage):
            f.write(f"{int(label)},{' '.join(words[image])},{USAGES[int(usage)]}\n")
    return path


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


# --------------------------------------------------------------------------------------------- 1. parsers
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
    code = f"from fer_sweep.bench import parse_seconds; print('PARSE_S', parse_seconds({kind!r}, {str(csv_path)!r}))"
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


# ----------------------------------------------------------------------------------------- 2. throughput
class ClassicDataset(torch.utils.data.Dataset):
    """The classic per-sample path: a PIL image per sample, transformed by torchvision in the worker."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def article_transforms():
    """The article's training transforms (torchvision, one PIL image at a time)."""
    import torchvision.transforms as T

    return T.Compose([T.RandomCrop(48, padding=4, padding_mode="reflect"), T.RandomRotation(15),
                      T.RandomAffine(0, translate=(0.01, 0.12), shear=(0.01, 0.03)), T.RandomHorizontalFlip(),
                      T.ToTensor()])


def _make_model(name: str, device: torch.device, channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(name).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _images_per_s(marks: Dict[str, float], steps: int, batch_size: int) -> float:
    return steps * batch_size / (marks["end"] - marks["start"])


def time_classic(name: str, data: FERArrays, device: torch.device, precision: Precision, batch_size: int,
                 warmup: int, steps: int, num_workers: int = 2) -> float:
    """images/s of the classic loop: DataLoader (workers, PIL, torchvision transforms) and a plain step."""
    from torch.utils.data import DataLoader, RandomSampler

    total = warmup + steps
    dataset = ClassicDataset(data.images, data.labels, article_transforms())
    sampler = RandomSampler(dataset, num_samples=total * batch_size, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True,
                        pin_memory=device.type == "cuda")
    channels_last = precision.name != "fp32"  # the classic fp32 run keeps torch's default contiguous format
    model = _make_model(name, device, channels_last)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    marks: Dict[str, float] = {}
    for step, (x, y) in enumerate(loader, start=1):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        train_step(model, x, y, optimizer, precision)[0].item()
        if step == warmup:
            marks["start"] = _clock(device)
        elif step == total:
            marks["end"] = _clock(device)
    return _images_per_s(marks, steps, batch_size)


def time_ceiling(name: str, data: FERArrays, device: torch.device, precision: Precision, batch_size: int,
                 warmup: int, steps: int) -> float:
    """images/s of the bare model step on one fixed, pre-normalised batch: no data work at all."""
    index = np.arange(batch_size) % len(data)
    x = normalize(torch.from_numpy(data.images[index]).to(device))
    y = torch.from_numpy(data.labels[index]).to(device)
    model = _make_model(name, device, channels_last=True)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    marks: Dict[str, float] = {}
    for step in range(1, warmup + steps + 1):
        train_step(model, x, y, optimizer, precision)
        if step == warmup:
            marks["start"] = _clock(device)
    marks["end"] = _clock(device)
    return _images_per_s(marks, steps, batch_size)


class StepTimer(Callback):
    """Marks the time (device synced) at the end of step `warmup` and of step `warmup + steps` of `fit`."""

    def __init__(self, device: torch.device, warmup: int, steps: int):
        self.device, self.warmup, self.steps = device, warmup, steps
        self.marks: Dict[str, float] = {}

    def on_batch_end(self, step: int, loss: Optional[float]) -> None:
        if step == self.warmup:
            self.marks["start"] = _clock(self.device)
        elif step == self.warmup + self.steps:
            self.marks["end"] = _clock(self.device)


def _wrapped(data: FERArrays, n: int) -> FERArrays:
    """The first n rows of data, cycling through it again when it has fewer."""
    return data.subset(np.arange(n) % len(data))


def time_ours(name: str, data: FERArrays, device: torch.device, precision: Precision, batch_size: int,
              warmup: int, steps: int) -> float:
    """images/s of the real training loop (`fit`: DeviceBatches, normalize, `seed` augmentation, the step)."""
    train = DeviceBatches(_wrapped(data, (warmup + steps) * batch_size), device)
    val = DeviceBatches(_wrapped(data, 8), device)  # evaluated after the last timed step; not timed
    model = _make_model(name, device, channels_last=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    timer = StepTimer(device, warmup, steps)
    fit(model, train, val, optimizer, Schedule(), precision, epochs=1, batch_size=batch_size,
        augment=build_augmentation("seed"), generator=torch.Generator().manual_seed(0), callbacks=[timer])
    return _images_per_s(timer.marks, steps, batch_size)


def bench_train(data: FERArrays, models: Sequence[str], device: torch.device, precision: Precision,
                batch_size: int, warmup: int, steps: int, classic_bf16: bool = False, repeats: int = 1,
                log: Callable[[str], None] = print) -> Dict[str, Dict[str, Any]]:
    """images/s per model: classic, ceiling and ours (and classic at our precision if asked).

    With repeats > 1 the measurements are interleaved (ceiling, ours, classic, ceiling, ...) and the best of
    each is reported, which damps what other processes on a shared machine do to any single measurement;
    every run's figure is kept under "runs".
    """
    fp32 = Precision(device, "fp32")
    sizes = dict(batch_size=batch_size, warmup=warmup, steps=steps)
    timers = [("ceiling", precision.name, lambda n: time_ceiling(n, data, device, precision, **sizes)),
              ("ours", precision.name, lambda n: time_ours(n, data, device, precision, **sizes)),
              ("classic", "fp32, DataLoader with 2 workers", lambda n: time_classic(n, data, device, fp32, **sizes))]
    if classic_bf16 and precision.name != "fp32":
        timers.append(("classic_lowp", f"classic at {precision.name}",
                       lambda n: time_classic(n, data, device, precision, **sizes)))
    out: Dict[str, Dict[str, Any]] = {}
    for name in models:
        runs: Dict[str, List[float]] = {key: [] for key, _, _ in timers}
        # Whatever is measured first would also pay the process-wide first-use costs (kernel selection and
        # JIT for this model's shapes, allocator growth), so run the bare step once, untimed, beforehand.
        log(f"  {name}: untimed warm-up of the model step...")
        time_ceiling(name, data, device, precision, batch_size, warmup, 1)
        for r in range(repeats):
            for key, what, timer in timers:
                log(f"  {name}: {key} ({what})" + (f", run {r + 1}/{repeats}" if repeats > 1 else "") + "...")
                runs[key].append(timer(name))
        row: Dict[str, Any] = {key: max(values) for key, values in runs.items()}
        row["ours_vs_classic"] = row["ours"] / row["classic"]
        row["ours_vs_ceiling"] = row["ours"] / row["ceiling"]
        if repeats > 1:
            row["runs"] = runs
        out[name] = row
    return out


# -------------------------------------------------------------------------------------------- 3. memory
def rss_probe(images_npy: str, labels_npy: str, model: str, device: str, precision: str, batch_size: int,
              steps: int, threads: Optional[int]) -> Dict[str, Any]:
    """Runs in a fresh process: hold the whole dataset as uint8 on the device, train `steps` steps with fit,
    and report the process's peak RSS (and the device's peak allocation on CUDA)."""
    rss_before_data = _status_bytes("VmRSS")  # the interpreter, torch and this package, before any data
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    images, labels = np.load(images_npy), np.load(labels_npy)
    data = FERArrays(images, labels, np.zeros(len(labels), np.int8))
    train = DeviceBatches(data, dev)
    val = DeviceBatches(data.subset(np.arange(min(8, len(data)))), dev)
    n_steps = max(1, min(steps, train.num_batches(batch_size)))
    limited = DeviceBatches(data.subset(np.arange(min(len(data), n_steps * batch_size))), dev)
    net = _make_model(model, dev, channels_last=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    fit(net, limited, val, optimizer, Schedule(), prec, epochs=1, batch_size=batch_size,
        augment=build_augmentation("seed"), generator=torch.Generator().manual_seed(0))
    result = {"peak_rss_bytes": _peak_rss_bytes(), "rss_before_data_bytes": rss_before_data,
              "dataset_bytes": int(train.images.element_size() * train.images.nelement())}
    if dev.type == "cuda":
        result["cuda_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(dev))
    return result


def run_rss_probe(images_npy: Path, labels_npy: Path, model: str, device: torch.device, precision: Precision,
                  batch_size: int, steps: int, threads: Optional[int]) -> Dict[str, Any]:
    args = [str(images_npy), str(labels_npy), model, device.type, precision.name, batch_size, steps, threads]
    code = ("import json, sys; from fer_sweep.bench import rss_probe; "
            f"print('RSS_PROBE ' + json.dumps(rss_probe(*{args!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("RSS_PROBE "):
            return json.loads(line[len("RSS_PROBE "):])
    raise RuntimeError(f"memory probe failed (exit {proc.returncode}): {proc.stderr[-2000:]}")


def bench_memory(data: FERArrays, workdir: Path, models: Sequence[str], device: torch.device,
                 precision: Precision, batch_size: int, threads: Optional[int], probe: bool) -> Dict[str, Any]:
    n = len(data)
    out: Dict[str, Any] = {
        "rows": n,
        "dataset_uint8_bytes": int(data.images.nbytes + data.labels.nbytes + data.usage.nbytes),
        "images_uint8_bytes": int(data.images.nbytes),
        "article_float64_bytes": int(n * IMAGE_SIZE * IMAGE_SIZE * 8),
        "full_fer2013_uint8_bytes": FULL_ROWS * IMAGE_SIZE * IMAGE_SIZE,
        "full_fer2013_float64_bytes": FULL_ROWS * IMAGE_SIZE * IMAGE_SIZE * 8,
    }
    if probe:
        from fer_sweep.data.loader import write_npy

        images_npy, labels_npy = write_npy(data, workdir / "npy")
        out["training_run"] = {name: run_rss_probe(images_npy, labels_npy, name, device, precision, batch_size,
                                                   2, threads) for name in models}
    out["bench_process_peak_rss_bytes"] = _peak_rss_bytes()
    return out


# ------------------------------------------------------------------------------------------------ report
def _mb(b: Optional[float]) -> str:
    return "n/a" if b is None else f"{b / 1e6:,.1f} MB"


def _secs(s: float) -> str:
    return f"{s:.4f}" if s < 0.1 else f"{s:.2f}"


def _table(rows: List[List[str]], indent: str = "  ", right_from: int = 1) -> List[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.ljust(w) if i < right_from else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def format_report(res: Dict[str, Any]) -> str:
    m = res["machine"]
    lines = ["fer_sweep.bench: the classic FER2013 pipeline vs ours, one run on one machine", "",
             "Machine"]
    lines += _table([["cpu", f"{m['cpu']} ({m['cpu_cores']} cores, torch threads {m['torch_threads']}, "
                             f"cpu bf16: {m['cpu_bf16']})"],
                     ["device", f"{m['device']} ({m['device_name']}), precision {m['precision']}"],
                     ["software", f"python {m['python']}, torch {m['torch']}, torchvision {m.get('torchvision')}"],
                     ["command", res["command"]],
                     ["data", res.get("data_note") or "-"]], right_from=99)

    p = res.get("parse")
    lines += [""]
    if p:
        lines += [f"1. Parse fer2013.csv ({p['rows']:,} rows, {_mb(p['csv_bytes'])}; page cache warm; each parser "
                  "timed in a fresh process)"]
        lines += _table([
            ["parser", "seconds", "speed-up vs torchvision"],
            ["torchvision.datasets.FER2013 (train + test)", _secs(p["torchvision_s"]), "1.0x"],
            ["article: pandas + np.array(split) per row", _secs(p["article_s"]), f"{p['article_speedup']:.1f}x"],
            ["ours: read_csv (numpy over the raw bytes)", _secs(p["ours_s"]), f"{p['ours_speedup']:.1f}x"],
            ["ours: reload from the .npz cache", _secs(p["cache_reload_s"]), f"{p['cache_reload_speedup']:.0f}x"],
        ])
        md5 = p.get("md5_matches_kaggle")
        lines += [f"  all four give the same images and labels: {'yes' if p['images_agree'] else 'NO'}",
                  "  the file is the Kaggle original (md5): " + (
                      "n/a" if md5 is None else "yes" if md5 else
                      "no, so torchvision's md5 check was relaxed (its md5 pass is still timed)")]
    else:
        lines += ["1. Parse: skipped"]

    t = res.get("train")
    lines += [""]
    if t:
        prec = m["precision"]
        best = f", best of {res['repeats']} interleaved runs" if res.get("repeats", 1) > 1 else ""
        lines += [f"2. Training throughput, images/s (batch {res['batch_size']}, {res['steps']} steps timed after "
                  f"{res['warmup']} warm-up{best}, {res['train_rows']:,} images)"]
        header = ["model", "classic fp32", f"ceiling {prec}", f"ours {prec}", "ours/classic", "ours/ceiling"]
        has_lowp = any("classic_lowp" in r for r in t.values())
        if has_lowp:
            header.insert(2, f"classic {prec}")
        rows = [header]
        for name, r in t.items():
            row = [name, f"{r['classic']:.1f}", f"{r['ceiling']:.1f}", f"{r['ours']:.1f}",
                   f"{r['ours_vs_classic']:.2f}x", f"{100 * r['ours_vs_ceiling']:.0f}%"]
            if has_lowp:
                row.insert(2, f"{r['classic_lowp']:.1f}" if "classic_lowp" in r else "-")
            rows.append(row)
        lines += _table(rows)
        lines += ["  classic: DataLoader, 2 workers, PIL + article transforms per image, fp32, contiguous;",
                  "  ceiling: bare model step on one fixed batch, channels_last; ours: fit() with DeviceBatches +",
                  "  normalize + seed augmentation (per-sample, batched), channels_last."]
    else:
        lines += ["2. Training throughput: skipped"]

    mem = res.get("memory")
    lines += [""]
    if mem:
        lines += [f"3. Memory ({mem['rows']:,} images)"]
        rows = [["dataset as held (uint8 images + labels + usage)", _mb(mem["dataset_uint8_bytes"])],
                ["article's float64 pixel arrays, same images", _mb(mem["article_float64_bytes"])],
                ["full FER2013: uint8 vs float64", f"{_mb(mem['full_fer2013_uint8_bytes'])} vs "
                                                   f"{_mb(mem['full_fer2013_float64_bytes'])}"]]
        for name, probe in (mem.get("training_run") or {}).items():
            before = probe.get("rss_before_data_bytes")
            rows.append([f"peak RSS, fresh process training {name} on these images",
                         _mb(probe["peak_rss_bytes"]) + (f" (imports alone: {_mb(before)})" if before else "")])
            if "cuda_peak_allocated_bytes" in probe:
                rows.append([f"peak CUDA allocation, training {name}", _mb(probe["cuda_peak_allocated_bytes"])])
        rows.append(["peak RSS, this benchmark process (all sections)", _mb(mem["bench_process_peak_rss_bytes"])])
        lines += _table(rows)
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m fer_sweep.bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, help="Kaggle fer2013.csv (plain or .gz; icml variant converted)")
    ap.add_argument("--folder", type=Path, help="image-folder layout (train/<class>/*.jpg, test/...); a CSV is "
                                                "written from it first")
    ap.add_argument("--rows", type=int, help="use only the first N rows (quick runs)")
    ap.add_argument("--models", default="cnn,resnet9", help="comma-separated model names (default cnn,resnet9)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3, at least 1)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads in this process")
    ap.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    ap.add_argument("--precision", default="auto", help="auto, fp32 or bf16 for the ceiling and ours")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved repeats of each throughput "
                                                            "measurement; the best is reported (default 1)")
    ap.add_argument("--classic-bf16", action="store_true", help="also time the classic pipeline at our precision")
    ap.add_argument("--skip-parse", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-memory-probe", action="store_true", help="no fresh-process peak-RSS measurement")
    ap.add_argument("--output", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    if args.csv and args.folder:
        ap.error("give --csv or --folder, not both")
    if min(args.warmup, args.steps, args.batch_size, args.repeats) < 1:
        ap.error("--warmup, --steps, --batch-size and --repeats must be >= 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    start = time.perf_counter()

    def say(msg: str) -> None:  # progress goes to stderr, the report to stdout
        print(f"[{time.perf_counter() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    res: Dict[str, Any] = {"command": "python -m fer_sweep.bench " + " ".join(sys.argv[1:] if argv is None else argv),
                           "machine": machine_info(device, precision), "batch_size": args.batch_size,
                           "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
                           "models": models}

    csv, folder = args.csv, args.folder
    if csv is None and folder is None:
        found = resolve_path(None)  # $FER2013_PATH or data/fer2013.csv
        if found is not None:
            csv, folder = (None, found) if found.is_dir() else (found, None)
    for p in (csv, folder):
        if p is not None and not p.exists():
            raise SystemExit(f"{p}: no such file or folder")

    with tempfile.TemporaryDirectory(prefix="fer_bench_") as tmp:
        workdir = Path(tmp)
        data: Optional[FERArrays] = None
        if csv is None and folder is None:
            from fer_sweep.data.synthetic import make_synthetic

            res["data_note"] = "no FER2013 given (--csv/--folder/$FER2013_PATH): synthetic images, parse skipped"
            data = make_synthetic()
            if args.rows:
                data = data.subset(np.arange(min(args.rows, len(data))))
            args.skip_parse = True
        else:
            say("preparing the CSV...")
            csv_path, res["data_note"] = prepare_csv(csv, folder, args.rows, workdir)
            say(res["data_note"])
            if not args.skip_parse:
                say("1. parsing: torchvision, article loop, ours, cache...")
                res["parse"], data = bench_parse(csv_path, workdir / "cache")
            else:
                data = cached(csv_path, workdir / "cache", read_fer2013)
        res["train_rows"] = len(data)

        if not args.skip_train:
            say(f"2. training throughput ({', '.join(models)}; device {device}, precision {precision.name})...")
            res["train"] = bench_train(data, models, device, precision, args.batch_size, args.warmup, args.steps,
                                       args.classic_bf16, args.repeats, log=say)
        say("3. memory" + ("" if args.skip_memory_probe else " (a fresh process trains 2 steps per model)") + "...")
        res["memory"] = bench_memory(data, workdir, models if not args.skip_train else models[:1], device, precision,
                                     args.batch_size, args.threads, probe=not args.skip_memory_probe)

    say("done")
    print(format_report(res), flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(res, indent=2, default=str) + "\n")
    return res


if __name__ == "__main__":
    main()
