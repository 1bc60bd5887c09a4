"""Records that say what they are: every result.json and results.csv carries the recipe, split, kept checkpoint,
TTA, time budget, machine kind and whether val was held out, typed on the command line or not."""
import json

import pandas as pd
import pytest

from fer_sweep import results
from fer_sweep.app import config_hash, run_job, train
from fer_sweep.errors import ConfigError
from fer_sweep.sweep.aggregate import setting_columns, write_results_csv
from tests.conftest import run_cli

RECORD = ["recipe", "split", "checkpoint", "tta", "time_budget_s", "cpu_kind", "val_held_out"]
TINY = ["data=synthetic", "data.n_train=140", "data.n_public=35", "data.n_private=35", "trainer.epochs=1",
        "trainer.batch_size=64", "trainer.threads=1", "trainer.plots=false"]

XEON_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: something else
flags\t\t: fpu
"""


@pytest.mark.parametrize("text, kind", [
    (XEON_AMX, "Intel Xeon Platinum 8481C (amx)"),
    ("vendor_id : AuthenticAMD\nmodel name : AMD EPYC 9B14\nflags : avx2 avx512f avx512_bf16\n",
     "AMD EPYC 9B14 (avx512_bf16)"),
    ("vendor_id : AuthenticAMD\nmodel name : AMD EPYC 7B13\nflags : sse avx avx2\n", "AMD EPYC 7B13 (avx2)"),
    ("vendor_id : AuthenticAMD\nmodel name : AMD EPYC 7763 64-Core Processor\nflags : avx2\n",
     "AMD EPYC 7763 (avx2)"),
    ("vendor_id : GenuineIntel\nmodel name : Intel(R) Xeon(R) CPU @ 2.20GHz\nflags : avx2 avx512f avx512bw\n",
     "Intel Xeon (avx512)"),
    ("processor : 0\nFeatures : fp asimd\nCPU implementer : 0x41\n", "unknown CPU (other)"),
])
def test_cpu_kind_names_the_model_and_the_instruction_class_that_decides_precision(text, kind):
    from fer_sweep.engine.precision import cpu_kind_from_cpuinfo

    assert cpu_kind_from_cpuinfo(text) == kind


def test_a_sweep_without_such_overrides_still_records_them(tmp_path):
    """A real 2-job multirun of experiment=best (a named recipe; model and length made tiny): the split comes from
    the experiment, the TTA is swept; results.csv has each field once, under its short name."""
    proc = run_cli(["--multirun", "experiment=best", "model=cnn", *TINY, "trainer.tta=none,flip",
                    f"hydra.sweep.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "results.csv")
    assert set(RECORD) <= set(frame.columns)
    assert not {"data.split", "trainer.tta", "trainer.checkpoint", "trainer.time_budget_s"} & set(frame.columns)
    assert frame["recipe"].tolist() == ["best v1"] * 2
    assert frame["split"].tolist() == ["official"] * 2 and frame["checkpoint"].tolist() == ["best_val"] * 2
    assert frame["tta"].tolist() == ["none", "flip"]
    assert frame["time_budget_s"].isna().all() and frame["val_held_out"].tolist() == [True, True]
    assert frame["cpu_kind"].str.fullmatch(r".+ \((amx|avx512_bf16|avx512|avx2|other)\)").all()
    for job, tta in ((0, "none"), (1, "flip")):
        result = json.loads((tmp_path / str(job) / results.RESULT_FILE).read_text())
        assert {k: result[k] for k in RECORD[:5]} == {"recipe": "best v1", "split": "official",
                                                     "checkpoint": "best_val", "tta": tta, "time_budget_s": None}
        assert result["val_held_out"] is True and result["cpu_kind"] == frame["cpu_kind"][0]


def test_split_full_leaves_best_val_acc_empty_and_says_val_was_not_held_out(make_cfg, tmp_path, caplog):
    caplog.set_level("INFO", logger="fer_sweep")
    result = run_job(make_cfg(*TINY, "data.split=full", "trainer.checkpoint=last", output_dir=tmp_path / "run"))
    assert result["status"] == "completed" and result["split"] == "full" and result["checkpoint"] == "last"
    assert result["best_val_acc"] is None and result["val_held_out"] is False
    assert isinstance(result["final_val_acc"], float)  # still there, under a name that claims no selection
    assert results.read_result(tmp_path / "run")["best_val_acc"] is None
    assert "best val acc" not in caplog.text and "not held out" in caplog.text
    frame = pd.read_csv(write_results_csv(tmp_path))
    assert frame["best_val_acc"].isna().all() and frame["val_held_out"].tolist() == [False]
    assert frame["test_acc"].notna().all()


def test_a_failed_job_record_still_says_its_split_and_recipe(make_cfg, tmp_path):
    cfg = make_cfg("experiment=fast", *TINY, "trainer.class_weights=bogus", output_dir=tmp_path / "run")
    with pytest.raises(ConfigError):
        run_job(cfg)
    record = results.read_result(tmp_path / "run")
    assert record["status"] == "failed"
    assert (record["recipe"], record["split"], record["checkpoint"], record["tta"]) == ("fast v3", "full", "last",
                                                                                        "tenshift")
    assert record["time_budget_s"] == 3500 and record["val_held_out"] is False and record["cpu_kind"]


@pytest.mark.parametrize("experiment, recipe", [
    ("fast", "fast v3"), ("fast_levers", "fast v3"), ("best", "best v1"), ("seed_table", "seed_table v1"),
    ("seed_faithful", "seed_faithful v1"), ("onecycle_ablation", "onecycle_ablation v1"),
    ("ferplus", "ferplus v1")])
def test_every_experiment_names_its_recipe_and_the_name_is_no_part_of_the_resume_key(make_cfg, experiment, recipe):
    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.recipe == recipe
    assert config_hash(cfg) == config_hash(make_cfg(f"experiment={experiment}", "recipe=null"))
    assert make_cfg().recipe is None
    assert make_cfg("experiment=fast", "+lever=width_12").recipe == "fast v3"  # the lever column says the lever


def test_report_cells_never_average_across_the_record_settings():
    frame = pd.DataFrame({"model": ["cnn"] * 2, "scheduler": ["none"] * 2, "seed": [0, 1], "recipe": ["a", "b"],
                          "split": ["seed", "full"], "checkpoint": ["best_val", "last"], "tta": ["none", "flip"],
                          "time_budget_s": [None, 3500], "cpu_kind": ["x (avx2)", "y (amx)"],
                          "val_held_out": [True, False], "test_acc": [0.5, 0.6], "status": ["completed"] * 2})
    settings = setting_columns(frame)
    assert {"recipe", "split", "checkpoint", "tta", "time_budget_s"} <= set(settings)
    assert "cpu_kind" not in settings and "val_held_out" not in settings


def test_an_optuna_trial_on_split_full_refuses_a_val_objective(make_cfg):
    trial = ["+trial.number=0", "+trial.study=s", f"+trial.storage=journal:{make_cfg().output_dir}/j.log"]
    cfg = make_cfg(*TINY, "data.split=full", "trainer.checkpoint=last", *trial)
    with pytest.raises(ConfigError, match="objective=best_val_acc with data.split=full"):
        train(cfg)
