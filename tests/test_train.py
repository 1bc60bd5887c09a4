"""train(cfg) in-process and `python -m fer_sweep` as a user runs it."""
import json

import pandas as pd
import pytest
import torch

from fer_sweep.app import train
from fer_sweep.results import CHECKPOINT_FILE, HISTORY_COLUMNS
from tests.conftest import FAST, NARROW_RESNET9, TINY_TRAINING, run_cli

RESULT_KEYS = {"status", "dataset", "model", "scheduler", "optimizer", "augmentation", "epochs", "lr", "batch_size",
               "seed", "params", "best_epoch", "best_val_acc", "test_acc", "test_loss", "per_class_test_acc",
               "train_time_s"}


def test_cli_run_writes_every_output(tmp_path):
    out = tmp_path / "run"
    proc = run_cli([*FAST, "model=cnn", "scheduler=onecycle", f"hydra.run.dir={out}"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert RESULT_KEYS <= set(result)
    assert result["status"] == "completed" and result["dataset"] == "synthetic"
    assert result["model"] == "cnn" and result["scheduler"] == "onecycle"
    assert set(result["per_class_test_acc"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert 0 <= result["test_acc"] <= 1
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == list(HISTORY_COLUMNS) and len(history) == 2
    checkpoint = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["model"] == "cnn" and checkpoint["class_names"][3] == "happy"
    assert {p.name for p in (out / "plots").iterdir()} == {"accuracy.png", "loss.png", "lr.png", "confusion.png"}


def test_no_dataset_says_synthetic(tmp_path):
    proc = run_cli(["trainer.epochs=1", "data.synthetic.n_train=70", "data.synthetic.n_public=14",
                    "data.synthetic.n_private=14", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "USING THE BUILT-IN SYNTHETIC DATASET" in proc.stdout + proc.stderr


BAD_FILES = {  # file content -> what the one-line message must say
    "emotion,pixels,Usage\n": "the file has a header but no rows",
    "emotion,Usage\n0,Training\n": "missing column(s) ['pixels']",
    "emotion,pixels,Usage\n0," + " ".join(["7"] * 2303) + " 256,Training\n": "row 2: pixel 2303 is '256'",
    "emotion,pixels,Usage\n7," + " ".join(["7"] * 2304) + ",Training\n": "row 2: emotion '7' is not an integer 0-6",
}


@pytest.mark.parametrize("content", list(BAD_FILES), ids=["header-only", "no-pixels", "pixel-256", "emotion-7"])
def test_bad_data_file_is_one_line_and_no_traceback(tmp_path, content):
    """Errors in the user's input are reported, not crashed on: one line on stderr, exit 2, the job recorded."""
    (tmp_path / "bad.csv").write_text(content)
    proc = run_cli([*TINY_TRAINING, f"data.path={tmp_path / 'bad.csv'}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("fer_sweep: error:")]
    assert len(error_lines) == 1 and "bad.csv" in error_lines[0] and BAD_FILES[content] in error_lines[0]
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["status"] == "failed" and BAD_FILES[content] in record["error"]


def test_bad_data_path_and_config_values_exit_nonzero_with_message(tmp_path):
    proc = run_cli([*TINY_TRAINING, f"data.path={tmp_path / 'missing.csv'}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "missing.csv: no such file or folder" in proc.stderr
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "failed"
    proc = run_cli([*FAST, "trainer.precision=fp8", f"hydra.run.dir={tmp_path / 'run2'}"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "fer_sweep: error: trainer.precision='fp8'; expected one of ['auto', 'fp32', 'bf16']" in proc.stderr
    proc = run_cli([*FAST, "trainer.precision=fp8", f"hydra.run.dir={tmp_path / 'run3'}"],
                   env_extra={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr  # the traceback, when asked for


def test_unknown_config_option_names_the_known_ones_first(tmp_path):
    proc = run_cli([*FAST, "model=resnet99", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode != 0
    first_lines = "\n".join(proc.stderr.splitlines()[:10])
    assert "Could not find 'model/resnet99'" in first_lines and "resnet9_wide" in first_lines


def test_same_seed_same_numbers(make_cfg, tmp_path):
    a = train(make_cfg(*FAST, "trainer.plots=false"), tmp_path / "a")
    b = train(make_cfg(*FAST, "trainer.plots=false"), tmp_path / "b")
    c = train(make_cfg(*FAST, "trainer.plots=false", "seed=1"), tmp_path / "c")
    for key in ("best_val_acc", "test_acc", "test_loss"):
        assert a[key] == b[key]
    assert (a["test_loss"], a["best_val_acc"]) != (c["test_loss"], c["best_val_acc"])


def test_diverged_run_is_reported(make_cfg, tmp_path):
    result = train(make_cfg(*FAST, "optimizer.lr=1e12", "trainer.plots=false", "trainer.precision=fp32"),
                   tmp_path / "d")
    assert result["status"] == "diverged"


def test_mini_csv_resnet9(make_cfg, tmp_path, mini_csv):
    result = train(make_cfg("data=fer2013", f"data.path={mini_csv}", *NARROW_RESNET9, "trainer.epochs=1",
                            "trainer.plots=false"), tmp_path / "r")
    assert result["dataset"] == "fer2013" and result["split_sizes"] == {"train": 2586, "val": 647, "test": 360}
    assert result["status"] == "completed" and result["test_acc"] > 0
    # the run names the data it used: the shared sample is recognised by its fingerprint
    assert (result["data_copy"], result["data_fingerprint"]) == ("kaggle_mini", "a80f975efc0c5c54")
    payload = torch.load(tmp_path / "r" / CHECKPOINT_FILE, weights_only=True)
    # the config's, as trained
    assert payload["model_kwargs"] == {"base_width": 4, "input_norm": "per_image", "input_crop": None}


@pytest.mark.parametrize("amx, avx512_bf16, expected", [(True, False, "bf16"), (False, True, "bf16"),
                                                        (False, False, "fp32")])
def test_auto_precision_wants_native_bf16(monkeypatch, amx, avx512_bf16, expected):
    """oneDNN emulates bf16 on plain AVX-512 (2.5-3x slower than fp32 there): auto must not pick it."""
    import torch

    from fer_sweep.engine import precision

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    assert precision.resolve_precision("auto", torch.device("cpu")).name == expected
    assert precision.resolve_precision("bf16", torch.device("cpu")).name == "bf16"  # asked for, it is used


@pytest.mark.slow
def test_compiled_training_keeps_plain_checkpoints(make_cfg, tmp_path):
    """trainer.compile=true trains through torch.compile; the checkpoint still loads into the plain model."""
    from fer_sweep.checkpoint import load_checkpoint

    result = train(make_cfg(*FAST, "model=resnet9", "trainer.compile=true", "trainer.plots=false"), tmp_path)
    assert result["status"] == "completed" and result["test_acc"] is not None
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE).name == "resnet9"


@pytest.mark.parametrize("keep", ["best_val", "last"])
def test_test_split_is_scored_with_the_kept_checkpoint(make_cfg, tmp_path, monkeypatch, keep):
    """Validation is made to call epoch 1 the best of 3: with trainer.checkpoint=best_val the test split must be
    scored with epoch 1's weights (best.pt), not with the weights training ended on; with last, with those."""
    import dataclasses

    from fer_sweep import app
    from fer_sweep.engine import loop

    val_states, test_states, evaluate = [], [], loop.evaluate

    def snapshot(model):
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    def validate(model, *args, **kwargs):
        val_states.append(snapshot(model))
        return dataclasses.replace(evaluate(model, *args, **kwargs), acc=1.0 / len(val_states))

    def test(model, *args, **kwargs):
        test_states.append(snapshot(model))
        return evaluate(model, *args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", validate)
    monkeypatch.setattr(app, "evaluate", test)
    result = train(make_cfg(*FAST, "trainer.epochs=3", "trainer.plots=false", f"trainer.checkpoint={keep}"),
                   tmp_path / "t")
    checkpoint = torch.load(tmp_path / "t" / CHECKPOINT_FILE, weights_only=True)
    kept = 1 if keep == "best_val" else 3
    assert result["best_epoch"] == kept and checkpoint["epoch"] == kept and len(val_states) == 3
    (tested,) = test_states
    assert same(tested, checkpoint["state_dict"]) and same(tested, val_states[kept - 1])
    assert not same(tested, val_states[2 if keep == "best_val" else 0])


def test_full_split_trains_on_publictest_and_keeps_the_last_epoch(tmp_path, mini_csv):
    """data.split=full through the CLI: refused without trainer.checkpoint=last (its val faces are trained on),
    and with it Training+PublicTest train, the final epoch is tested."""
    args = [*NARROW_RESNET9, f"data.path={mini_csv}", "data.split=full", "trainer.epochs=2", "trainer.plots=false",
            "trainer.threads=1", "++data.cache_dir=null"]
    proc = run_cli([*args, f"hydra.run.dir={tmp_path / 'refused'}"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "data.split=full trains on PublicTest, the val split" in proc.stderr
    assert "add trainer.checkpoint=last" in proc.stderr
    proc = run_cli([*args, "trainer.checkpoint=bestval", f"hydra.run.dir={tmp_path / 'typo'}"])
    assert proc.returncode == 2 and "trainer.checkpoint='bestval'; expected best_val or last" in proc.stderr
    proc = run_cli([*args, "trainer.checkpoint=last", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 0, proc.stderr
    assert "split=full trains on the val split (PublicTest) too" in (tmp_path / "run" / "app.log").read_text()
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["split_sizes"] == {"train": 2872 + 361, "val": 361, "test": 360}
    assert result["best_epoch"] == result["epochs_run"] == 2 and result["test_acc"] > 0
