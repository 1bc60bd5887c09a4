"""Time to an accuracy: two recipes trained one after the other in this process, the test split scored after
every epoch (`trainer.test_every_epoch`; selection still uses validation alone), and the wall time at which each
first reached the target, side by side and as a ratio.

    python -m fer_sweep.bench --time-to 0.659 --csv fer2013.csv

By default "ours" is `experiment=fast` with a 15-minute budget (the whole hour is not needed to pass the
article) and "article" is the article's notebook recipe (`experiment=seed_faithful`,
resnet9) minus its collapse (Adam's coupled weight decay 0.1 -> 1e-4; see README "The article's OneCycle
collapse"). Wall time counts the whole run: loading the data, training and validating, not the benchmark's own
test scoring.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd

ARTICLE = "experiment=seed_faithful model=resnet9 trainer.weight_decay=1e-4"
OURS = "experiment=fast trainer.time_budget_s=900"


def compose_config(overrides: Sequence[str], output_dir: Path):
    """fer_sweep's config with these overrides, as `python -m fer_sweep` would build it (no Hydra run)."""
    from hydra import compose, initialize_config_dir

    from fer_sweep.app import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[f"output_dir={output_dir}", *overrides])


def first_reached(history: pd.DataFrame, target: float) -> Optional[pd.Series]:
    """The first epoch's row whose test accuracy is at least target (None: never)."""
    reached = history[history["test_acc"] >= target]
    return reached.iloc[0] if len(reached) else None


def run_recipe(name: str, overrides: str, common: Sequence[str], target: float, workdir: Path) -> Dict[str, Any]:
    from fer_sweep.app import train
    from fer_sweep.results import HISTORY_FILE

    out = workdir / name
    cfg = compose_config([*shlex.split(overrides), *common, "trainer.test_every_epoch=true", "trainer.plots=false"],
                         out)
    result = train(cfg, out)
    history = pd.read_csv(out / HISTORY_FILE)
    hit = first_reached(history, target)
    return {"recipe": name, "overrides": overrides, "epochs": len(history), "model": result["model"],
            "reached_epoch": None if hit is None else int(hit["epoch"]),
            "time_to_target_s": None if hit is None else float(hit["elapsed_s"]),
            "best_test_acc_any_epoch": float(history["test_acc"].max()), "test_acc": result["test_acc"],
            "run_time_s": float(history["elapsed_s"].iloc[-1]) if len(history) else None,
            "curve": history[["epoch", "elapsed_s", "test_acc", "val_acc"]].to_dict("records")}


def speedup(ours: Dict[str, Any], article: Dict[str, Any]) -> Dict[str, Any]:
    """article's time to the target / ours; a lower bound (">=") when the article's recipe never got there."""
    if ours["time_to_target_s"] is None:
        return {"ratio": None, "bound": "ours did not reach the target"}
    if article["time_to_target_s"] is None:
        return {"ratio": article["run_time_s"] / ours["time_to_target_s"], "bound": ">="}
    return {"ratio": article["time_to_target_s"] / ours["time_to_target_s"], "bound": "="}


def at_article_best(ours: Dict[str, Any], article: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """When the article's recipe never reaches the target, its whole run bounds the ratio only loosely; this is a
    ratio on equal terms: both recipes' time to the best accuracy the article's recipe did reach."""
    if article["time_to_target_s"] is not None:
        return None
    level = article["best_test_acc_any_epoch"]
    hits = [first_reached(pd.DataFrame(r["curve"]), level) for r in (ours, article)]
    if hits[0] is None:
        return None
    return {"accuracy": level, "ours_s": float(hits[0]["elapsed_s"]), "ours_epoch": int(hits[0]["epoch"]),
            "article_s": float(hits[1]["elapsed_s"]), "article_epoch": int(hits[1]["epoch"]),
            "ratio": float(hits[1]["elapsed_s"] / hits[0]["elapsed_s"])}


def bench_time_to(target: float, workdir: Path, common: Sequence[str] = (), ours: str = OURS,
                  article: str = ARTICLE, log=print) -> Dict[str, Any]:
    rows: List[Dict[str, Any]] = []
    for name, overrides in (("ours", ours), ("article", article)):
        log(f"time to {target}: training {name} ({overrides} {' '.join(common)})...")
        rows.append(run_recipe(name, overrides, common, target, workdir))
    return {"target": target, "common_overrides": list(common), "recipes": rows, **speedup(rows[0], rows[1]),
            "at_article_best": at_article_best(rows[0], rows[1])}


def format_time_to(res: Dict[str, Any]) -> str:
    def secs(s: Optional[float]) -> str:
        return "never" if s is None else f"{s:,.0f} s"

    target = res["target"]
    lines = [f"Time to {target} test accuracy (PrivateTest scored after every epoch; checkpoints chosen on "
             "validation)"]
    header = ["recipe", "overrides", "epochs", "reached at epoch", f"wall time to {target}", "best test acc",
              "final test acc", "run time"]
    table = [header] + [[r["recipe"], r["overrides"], str(r["epochs"]), str(r["reached_epoch"] or "-"),
                         secs(r["time_to_target_s"]), f"{r['best_test_acc_any_epoch']:.4f}",
                         "-" if r["test_acc"] is None else f"{r['test_acc']:.4f}", secs(r["run_time_s"])]
                        for r in res["recipes"]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    if res["ratio"] is None:
        lines.append(f"  ratio: n/a ({res['bound']})")
    else:
        how = "" if res["bound"] == "=" else " (a lower bound: the article's recipe never reached it)"
        lines.append(f"  ratio (article's time / ours): {res['bound'] if res['bound'] != '=' else ''}"
                     f"{res['ratio']:.2f}x{how}")
    same = res.get("at_article_best")
    if same:
        lines.append(f"  on equal terms, the time to the article recipe's best ({same['accuracy']:.4f}): ours "
                     f"{secs(same['ours_s'])} (epoch {same['ours_epoch']}), article {secs(same['article_s'])} "
                     f"(epoch {same['article_epoch']}): {same['ratio']:.2f}x")
    if res["common_overrides"]:
        lines.append(f"  both with: {' '.join(res['common_overrides'])}")
    return "\n".join(lines)
