"""The printed report: the machine, then one table per section."""
from __future__ import annotations

from typing import Any, Dict, List, Optional


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
        crop = res.get("input_crop")
        if crop:
            header += [f"ours {prec} {crop}x{crop}", "crop/whole"]
        first = next(iter(t))  # several models: each one's pace against the first, side by side
        if len(t) > 1:
            header.append(f"ours/{first}")
        rows = [header]
        for name, r in t.items():
            row = [name, f"{r['classic']:.1f}", f"{r['ceiling']:.1f}", f"{r['ours']:.1f}",
                   f"{r['ours_vs_classic']:.2f}x", f"{100 * r['ours_vs_ceiling']:.0f}%"]
            if has_lowp:
                row.insert(2, f"{r['classic_lowp']:.1f}" if "classic_lowp" in r else "-")
            if crop:
                row += [f"{r['ours_crop']:.1f}", f"{r['crop_vs_whole']:.2f}x"]
            if len(t) > 1:
                row.append(f"{r['ours'] / t[first]['ours']:.2f}x")
            rows.append(row)
        lines += _table(rows)
        lines += ["  classic: DataLoader, 2 workers, PIL + article transforms per image, fp32, contiguous;",
                  "  ceiling: bare model step on one fixed batch, channels_last; ours: fit() with DeviceBatches +",
                  "  normalize + seed augmentation (per-sample, batched), channels_last."]
        if crop:
            lines += [f"  ours {crop}x{crop}: the same loop, the network trained on random {crop}x{crop} windows "
                      f"(model.input_crop={crop})."]
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
