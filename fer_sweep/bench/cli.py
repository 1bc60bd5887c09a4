"""The command line: `python -m fer_sweep.bench` parses its options, runs the sections, prints the report."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from fer_sweep.bench.measure import machine_info
from fer_sweep.bench.memory import bench_memory
from fer_sweep.bench.parsers import bench_parse, prepare_csv
from fer_sweep.bench.report import format_report
from fer_sweep.bench.throughput import bench_train
from fer_sweep.bench.time_to import ARTICLE, OURS, bench_time_to, format_time_to
from fer_sweep.data import resolve_path
from fer_sweep.data.arrays import FERArrays
from fer_sweep.data.cache import cached
from fer_sweep.data.fer2013 import read_fer2013
from fer_sweep.engine.precision import resolve_device, resolve_precision
from fer_sweep.errors import ConfigError
from fer_sweep.models import build_model


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    about = sys.modules[__package__].__doc__  # the package's docstring: what `--help` says first
    ap = argparse.ArgumentParser(prog="python -m fer_sweep.bench", description=about.split("\n\n")[0],
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
    ap.add_argument("--input-crop", type=int, metavar="N", help="also time ours training on random NxN windows "
                                                                  "(model.input_crop=N), side by side with 48x48")
    ap.add_argument("--skip-parse", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-memory-probe", action="store_true", help="no fresh-process peak-RSS measurement")
    ap.add_argument("--output", type=Path, help="also write the figures as JSON")
    mode = ap.add_argument_group("time to an accuracy (a mode of its own: trains two recipes, see "
                                 "fer_sweep/bench/time_to.py)")
    mode.add_argument("--time-to", type=float, metavar="ACC",
                      help="wall time until each recipe first reaches ACC test accuracy, and their ratio")
    mode.add_argument("--ours", default=OURS, help=f"our recipe's overrides (default: {OURS!r})")
    mode.add_argument("--article", default=ARTICLE, help=f"the article's recipe (default: {ARTICLE!r})")
    mode.add_argument("--set", nargs="*", default=[], metavar="OVERRIDE",
                      help="overrides for both recipes, e.g. trainer.epochs=30")
    sweep = ap.add_argument_group("sweep overhead (a mode of its own: real sweeps of tiny jobs, see "
                                  "fer_sweep/bench/sweep_overhead.py)")
    sweep.add_argument("--sweep-overhead", action="store_true",
                       help="the sweep framework's cost per job at each sweep size, and of aggregating results")
    sweep.add_argument("--sizes", default="10,100,1000", help="jobs per sweep, comma-separated (default 10,100,1000)")
    sweep.add_argument("--aggregate-jobs", type=int, default=5000, metavar="N",
                       help="jobs in the synthetic folder where aggregation is timed (default 5000; 0: skip)")
    args = ap.parse_args(argv)
    try:
        args.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    except ValueError:
        ap.error(f"--sizes {args.sizes}: job counts separated by commas, e.g. 10,100")
    if args.sweep_overhead and (not args.sizes or min(args.sizes) < 2 or args.aggregate_jobs < 0):
        ap.error("--sizes: at least 2 jobs a sweep; --aggregate-jobs: 0 or more")
    if args.csv and args.folder:
        ap.error("give --csv or --folder, not both")
    if args.time_to is not None and not 0 < args.time_to <= 1:
        ap.error(f"--time-to {args.time_to}: an accuracy in (0, 1], e.g. 0.659")
    if args.input_crop is not None and args.input_crop < 1:
        ap.error(f"--input-crop {args.input_crop}: a size in pixels, e.g. 40")
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
    if args.input_crop:
        check_input_crop(models, args.input_crop)
    res: Dict[str, Any] = {"command": "python -m fer_sweep.bench " + " ".join(sys.argv[1:] if argv is None else argv),
                           "machine": machine_info(device, precision), "batch_size": args.batch_size,
                           "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
                           "models": models, "input_crop": args.input_crop}

    csv, folder = args.csv, args.folder
    if csv is None and folder is None:
        found = resolve_path(None)  # $FER2013_PATH or data/fer2013.csv
        if found is not None:
            csv, folder = (None, found) if found.is_dir() else (found, None)
    for p in (csv, folder):
        if p is not None and not p.exists():
            raise SystemExit(f"{p}: no such file or folder")

    if args.sweep_overhead:
        return sweep_overhead_mode(args, say, {k: res[k] for k in ("command", "machine")})
    if args.time_to is not None:
        return time_to_mode(args, csv, folder, say, {k: res[k] for k in ("command", "machine")})

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
                                       args.classic_bf16, args.repeats, log=say, input_crop=args.input_crop)
        say("3. memory" + ("" if args.skip_memory_probe else " (a fresh process trains 2 steps per model)") + "...")
        res["memory"] = bench_memory(data, workdir, models if not args.skip_train else models[:1], device, precision,
                                     args.batch_size, args.threads, probe=not args.skip_memory_probe)

    return finish(res, format_report(res), args.output, say)


def check_input_crop(models: Sequence[str], size: int) -> None:
    """Every model takes size x size inputs, before any timing starts; else exit naming the one that does not."""
    for name in models:
        try:
            build_model(name, input_crop=size)
        except ConfigError as exc:
            raise SystemExit(f"--input-crop {size}: model {name!r}: {exc} (choose models with --models)") from None


def finish(res: Dict[str, Any], report: str, output: Optional[Path], say) -> Dict[str, Any]:
    """The report on stdout; with --output, every figure as JSON too."""
    say("done")
    print(report, flush=True)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(res, indent=2, default=str) + "\n")
    return res


def show_run_log() -> None:
    """The runs' own log lines (one per epoch, with its test accuracy) on stderr: the mode trains for most of an
    hour, and outside `python -m fer_sweep` nothing else would show them."""
    logger = logging.getLogger("fer_sweep")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("    %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def time_to_mode(args: argparse.Namespace, csv: Optional[Path], folder: Optional[Path], say,
                 about: Dict[str, Any]) -> Dict[str, Any]:
    """--time-to: both recipes on the given data (data.path), the report on stdout, the curves in --output."""
    common = list(args.set)
    if csv or folder:
        common.insert(0, f"data.path={csv or folder}")
    if args.threads:
        common.append(f"trainer.threads={args.threads}")
    common += [f"trainer.device={args.device}", f"trainer.precision={args.precision}"]
    show_run_log()
    with tempfile.TemporaryDirectory(prefix="fer_bench_") as tmp:
        res = {**about, **bench_time_to(args.time_to, Path(tmp), common, args.ours, args.article, log=say)}
    return finish(res, format_time_to(res), args.output, say)


def sweep_overhead_mode(args: argparse.Namespace, say, about: Dict[str, Any]) -> Dict[str, Any]:
    """--sweep-overhead: real sweeps of tiny jobs at each size, then aggregation in a big synthetic folder."""
    from fer_sweep.bench.sweep_overhead import bench_sweep_overhead, format_sweep_overhead

    with tempfile.TemporaryDirectory(prefix="fer_bench_sweeps_") as tmp:
        res = {**about, **bench_sweep_overhead(args.sizes, args.aggregate_jobs, Path(tmp), log=say)}
    return finish(res, format_sweep_overhead(res), args.output, say)
