"""Section 3: memory: the dataset as held (uint8) vs the article's float64 arrays, and the peak RSS of a fresh
process training on the whole dataset."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from fer_sweep.augment import build_augmentation
from fer_sweep.bench.measure import LR, make_model, peak_rss_bytes, status_bytes
from fer_sweep.data.arrays import IMAGE_SIZE, FERArrays
from fer_sweep.data.batches import DeviceBatches
from fer_sweep.engine.loop import fit
from fer_sweep.engine.precision import Precision, resolve_device, resolve_precision
from fer_sweep.optim import Schedule

FULL_ROWS = 35887


def rss_probe(images_npy: str, labels_npy: str, model: str, device: str, precision: str, batch_size: int,
              steps: int, threads: Optional[int]) -> Dict[str, Any]:
    """Runs in a fresh process: hold the whole dataset as uint8 on the device, train `steps` steps with fit,
    and report the process's peak RSS (and the device's peak allocation on CUDA)."""
    rss_before_data = status_bytes("VmRSS")  # the interpreter, torch and this package, before any data
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
    net = make_model(model, dev, channels_last=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    fit(net, limited, val, optimizer, Schedule(), prec, epochs=1, batch_size=batch_size,
        augment=build_augmentation("seed"), generator=torch.Generator().manual_seed(0))
    result = {"peak_rss_bytes": peak_rss_bytes(), "rss_before_data_bytes": rss_before_data,
              "dataset_bytes": int(train.images.element_size() * train.images.nelement())}
    if dev.type == "cuda":
        result["cuda_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(dev))
    return result


def run_rss_probe(images_npy: Path, labels_npy: Path, model: str, device: torch.device, precision: Precision,
                  batch_size: int, steps: int, threads: Optional[int]) -> Dict[str, Any]:
    args = [str(images_npy), str(labels_npy), model, device.type, precision.name, batch_size, steps, threads]
    code = ("import json, sys; from fer_sweep.bench.memory import rss_probe; "
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
    out["bench_process_peak_rss_bytes"] = peak_rss_bytes()
    return out
