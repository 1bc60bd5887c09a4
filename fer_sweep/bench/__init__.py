"""`python -m fer_sweep.bench`: the classic FER2013 pipeline against ours, measured side by side in one run.

    python -m fer_sweep.bench --csv fer2013.csv                      # full benchmark (minutes)
    python -m fer_sweep.bench --folder archive/ --output bench.json  # image-folder layout: a CSV is written first
    python -m fer_sweep.bench --csv fer2013.csv --rows 2000 --steps 3   # a quick look
    python -m fer_sweep.bench --csv fer2013.csv --models resnet9 --input-crop 40 --skip-parse   # 48x48 vs crops

Sections (each figure is measured in this run, on this machine):

1. Parse fer2013.csv: the real ``torchvision.datasets.FER2013`` (train + test, its whole ``__init__``), the
   article-style pandas loop (one ``np.array(pixels.split())`` per row), ours (``read_csv``: numpy over the raw
   bytes, ``data/kaggle_bytes.py``) and ours reloaded from the ``.npz`` cache; speed-ups relative to torchvision.
   Each parser is timed in a fresh Python process, so none inherits another's heap.
2. Training throughput (images/s in steady state, after warm-up), per model and at one batch size:
   classic = DataLoader, 2 workers, a PIL image per sample and the article's torchvision transforms, fp32,
   contiguous tensors; ceiling = the bare model step on one fixed batch (no data work) at the resolved precision,
   channels_last; ours = the real ``fit`` loop (DeviceBatches, normalize, the ``seed`` augmentation) at that
   precision, timed per batch by a callback; with ``--input-crop N`` ours again with the network on random NxN
   windows (``model.input_crop=N``), and the ratio to ours on whole faces.
3. Memory: bytes of the dataset as held (uint8) vs the article's float64 pixel arrays; peak RSS of a fresh process
   training on the whole dataset, and of this process.
4. The machine: CPU model, cores, torch version, device, precision.
"""
from __future__ import annotations

# One module per job: measure (clocks, memory figures, the machine), parsers (section 1), classic and ours
# (section 2's two pipelines), throughput (section 2's table), memory (section 3), report (the printed text),
# cli (the options and the run).
from fer_sweep.bench.classic import ClassicDataset, article_transforms, time_classic
from fer_sweep.bench.cli import main, parse_args
from fer_sweep.bench.measure import LR, machine_info
from fer_sweep.bench.memory import FULL_ROWS, bench_memory, rss_probe, run_rss_probe
from fer_sweep.bench.ours import StepTimer, time_ceiling, time_ours
from fer_sweep.bench.parsers import (KAGGLE_HEADER, PARSERS, article_parse, bench_parse, parse_seconds, prepare_csv,
                                     time_parse_fresh, write_kaggle_csv)
from fer_sweep.bench.report import format_report
from fer_sweep.bench.throughput import bench_train

__all__ = ["ClassicDataset", "FULL_ROWS", "KAGGLE_HEADER", "LR", "PARSERS", "StepTimer", "article_parse",
           "article_transforms", "bench_memory", "bench_parse", "bench_train", "format_report", "machine_info",
           "main", "parse_args", "parse_seconds", "prepare_csv", "rss_probe", "run_rss_probe", "time_ceiling",
           "time_classic", "time_ours", "time_parse_fresh", "write_kaggle_csv"]
