"""`python -m fer_sweep.bench --time-to ACC`: two recipes, the test split scored after each epoch, the ratio."""
import json
import shlex

import pandas as pd
import pytest

from fer_sweep.bench.time_to import ARTICLE, OURS, at_article_best, compose_config, format_time_to, speedup
from tests.conftest import run_cli

TINY = ["data=synthetic", "data.n_train=210", "data.n_public=70", "data.n_private=70", "trainer.epochs=3",
        "trainer.batch_size=64"]


def test_time_to_mode_runs_both_recipes_and_prints_the_ratio(tmp_path):
    out = tmp_path / "time_to.json"
    proc = run_cli(["--time-to", "0.01", "--threads", "1", "--ours", "model=resnet9", "--article", "model=cnn",
                    "--set", *TINY, "--output", str(out)], module="fer_sweep.bench")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    ours, article = res["recipes"]
    for recipe in (ours, article):
        curve = pd.DataFrame(recipe["curve"])
        assert curve["epoch"].tolist() == [1, 2, 3] and curve["elapsed_s"].is_monotonic_increasing
        assert recipe["reached_epoch"] == 1 and recipe["time_to_target_s"] == curve["elapsed_s"].iloc[0]
    assert ours["model"] == "resnet9" and article["model"] == "cnn"
    assert res["ratio"] == pytest.approx(article["time_to_target_s"] / ours["time_to_target_s"])
    assert "Time to 0.01 test accuracy" in proc.stdout and f"ours): {res['ratio']:.2f}x" in proc.stdout
    # a long mode is not silent: each run's epoch lines, each with its test accuracy, reach stderr
    assert proc.stderr.count("epoch 3/3") == 2 and proc.stderr.count("epoch 3  test acc") == 2, proc.stderr[-2000:]


def test_ratio_is_a_lower_bound_when_the_article_never_gets_there():
    ours = {"time_to_target_s": 100.0, "run_time_s": 300.0}
    assert speedup(ours, {"time_to_target_s": 250.0, "run_time_s": 400.0}) == {"ratio": 2.5, "bound": "="}
    assert speedup(ours, {"time_to_target_s": None, "run_time_s": 400.0}) == {"ratio": 4.0, "bound": ">="}
    assert speedup({"time_to_target_s": None, "run_time_s": 1.0}, ours)["ratio"] is None
    row = {"recipe": "ours", "overrides": "x", "epochs": 3, "reached_epoch": None, "time_to_target_s": None,
           "best_test_acc_any_epoch": 0.5, "test_acc": 0.5, "run_time_s": 9.0}
    text = format_time_to({"target": 0.659, "recipes": [row, {**row, "recipe": "article"}], "common_overrides": [],
                           "ratio": 4.0, "bound": ">="})
    assert "ratio (article's time / ours): >=4.00x (a lower bound" in text and "never" in text


def test_equal_terms_ratio_is_the_time_to_the_article_recipes_best():
    def recipe(accs, reached):
        curve = [{"epoch": i + 1, "elapsed_s": 10.0 * (i + 1), "test_acc": a} for i, a in enumerate(accs)]
        return {"curve": curve, "best_test_acc_any_epoch": max(accs), "time_to_target_s": reached}

    ours, article = recipe([0.4, 0.6, 0.7], 30.0), recipe([0.2, 0.5, 0.55, 0.6, 0.58], None)
    assert at_article_best(ours, article) == {"accuracy": 0.6, "ours_s": 20.0, "ours_epoch": 2, "article_s": 40.0,
                                              "article_epoch": 4, "ratio": 2.0}
    assert at_article_best(ours, recipe([0.7], 10.0)) is None  # the article got there: the plain ratio says it all
    assert at_article_best(recipe([0.5], None), article) is None  # ours never reached the article's best
    row = {"recipe": "ours", "overrides": "x", "epochs": 3, "reached_epoch": 3, "time_to_target_s": 30.0,
           "best_test_acc_any_epoch": 0.7, "test_acc": 0.7, "run_time_s": 30.0}
    text = format_time_to({"target": 0.659, "recipes": [row, {**row, "recipe": "article"}], "common_overrides": [],
                           "ratio": 1.67, "bound": ">=", "at_article_best": at_article_best(ours, article)})
    assert "the article recipe's best (0.6000): ours 20 s (epoch 2), article 40 s (epoch 4): 2.00x" in text


def test_default_recipes_are_fast_and_the_article_without_its_collapse(tmp_path):
    ours, article = (compose_config(shlex.split(r), tmp_path) for r in (OURS, ARTICLE))
    ours_recipe = (ours.trainer.time_budget_s, ours.data.split, ours.trainer.checkpoint, ours.trainer.tta,
                   ours.trainer.finish_augmentation)
    assert ours_recipe == (900, "full", "last", "tenshift", "crop_flip")
    assert (article.optimizer.lr, article.trainer.batch_size, article.trainer.grad_clip_value) == (0.01, 512, 1e-4)
    assert article.trainer.weight_decay == 1e-4 and article.model.name == "resnet9"


@pytest.mark.parametrize("bad", ["0", "1.5"])
def test_bad_target_is_refused(bad):
    proc = run_cli(["--time-to", bad], module="fer_sweep.bench")
    assert proc.returncode == 2 and f"--time-to {float(bad)}: an accuracy in (0, 1]" in proc.stderr
