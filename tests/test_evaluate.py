"""python -m fer_sweep.evaluate: checkpoints and their ensemble scored on FER2013's test split."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import run_cli, train_tiny
from fer_sweep.checkpoint import load_checkpoint
from fer_sweep.data import load_splits
from fer_sweep.data.batches import DeviceBatches
from fer_sweep.engine.loop import evaluate
from fer_sweep.engine.precision import Precision
from fer_sweep.saved_probs import load_probs, write_probs

FP32 = Precision(torch.device("cpu"), "fp32")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A sweep folder with two jobs (different models and seeds), as a multirun leaves it."""
    root = tmp_path_factory.mktemp("sweep")
    train_tiny("cnn", root / "0", "seed=0")
    train_tiny("resnet9", root / "1", "seed=1")
    return root


def expected(checkpoints, csv, split="test", tta="none"):
    """Each checkpoint's accuracy and the averaged-probability ensemble's, computed without the command."""
    faces = DeviceBatches(getattr(load_splits({"path": str(csv), "split": "official"}, seed=0), split))
    results = [evaluate(load_checkpoint(c).model, faces, FP32, tta=tta) for c in checkpoints]
    ensemble = torch.stack([r.probs for r in results]).mean(0).argmax(1)
    return [r.acc for r in results] + [(ensemble == faces.labels).float().mean().item()], len(faces)


def scores_of(out: Path):
    return json.loads(out.read_text())


def test_a_sweep_folder_scores_every_job_and_their_ensemble(sweep, mini_csv, tmp_path):
    out = tmp_path / "scores.json"
    proc = run_cli([str(sweep), "--data", str(mini_csv), "--tta", "flip", "-o", str(out)],
                   module="fer_sweep.evaluate")
    assert proc.returncode == 0, proc.stderr
    written = scores_of(out)
    assert written["split"] == "PrivateTest" and written["tta"] == "flip"
    names = [s["name"] for s in written["scores"]]
    assert names == [str(sweep / "0/checkpoints/best.pt"), str(sweep / "1/checkpoints/best.pt"), "ensemble"]
    accs, n = expected([sweep / "0/checkpoints/best.pt", sweep / "1/checkpoints/best.pt"], mini_csv, tta="flip")
    assert n == 360  # the mini sample's PrivateTest
    assert [s["acc"] for s in written["scores"]] == pytest.approx(accs, abs=1e-6)
    assert written["scores"][0]["val_acc"] is not None  # what the run selected on, read from the checkpoint
    assert "ensemble" in proc.stdout and "PrivateTest, tta=flip: 2 checkpoint(s)" in proc.stdout


def test_run_folders_and_files_mix_and_val_means_publictest(sweep, mini_csv, tmp_path):
    out = tmp_path / "val.json"
    proc = run_cli([str(sweep / "0"), str(sweep / "1/checkpoints/best.pt"), "--data", str(mini_csv),
                    "--split", "val", "--tta", "tenshift", "-o", str(out)], module="fer_sweep.evaluate")
    assert proc.returncode == 0, proc.stderr
    written = scores_of(out)
    accs, n = expected([sweep / "0/checkpoints/best.pt", sweep / "1/checkpoints/best.pt"], mini_csv, "val",
                       tta="tenshift")
    assert written["split"] == "PublicTest" and written["tta"] == "tenshift" and n == 361
    assert [s["acc"] for s in written["scores"]] == pytest.approx(accs, abs=1e-6)


def test_one_checkpoint_has_no_ensemble_row(sweep, mini_csv):
    proc = run_cli([str(sweep / "0"), "--data", str(mini_csv)], module="fer_sweep.evaluate")
    assert proc.returncode == 0, proc.stderr
    assert "ensemble" not in proc.stdout and "1 checkpoint(s)" in proc.stdout


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file or folder"),
    ("empty_folder", "no checkpoints/best.pt or test_probs.npz (nor *test_probs.csv) in this folder"),
    ("no_data", "--data"),
    ("bad_data", "no such file"),
])
def test_bad_input_exits_2_and_says_what(sweep, mini_csv, tmp_path, case, message):
    (tmp_path / "empty").mkdir()
    args = {"missing": [str(tmp_path / "nope.pt"), "--data", str(mini_csv)],
            "empty_folder": [str(tmp_path / "empty"), "--data", str(mini_csv)],
            "no_data": [str(sweep / "0")],  # trained on the synthetic set: no file to score on
            "bad_data": [str(sweep / "0"), "--data", str(tmp_path / "missing.csv")]}[case]
    proc = run_cli(args, module="fer_sweep.evaluate")
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_saved_probabilities_ensemble_without_checkpoints(sweep, mini_csv, tmp_path):
    """--save-probs keeps each checkpoint's probabilities; the files alone score and ensemble as the checkpoints
    did (split and TTA read from them, the labels from the data file again), and mix with a checkpoint."""
    probs = tmp_path / "probs"
    proc = run_cli([str(sweep), "--data", str(mini_csv), "--tta", "flip", "--save-probs", str(probs),
                    "-o", str(tmp_path / "checkpoints.json")], module="fer_sweep.evaluate")
    assert proc.returncode == 0, proc.stderr
    files = sorted(probs.glob("*.npz"))
    assert [f.name for f in files] == [f"{sweep.name}_0_test_flip.npz", f"{sweep.name}_1_test_flip.npz"]
    with np.load(files[0]) as npz:
        assert sorted(npz.files) == ["meta", "probs"]  # no labels: FER2013's, read from the data again
    proc = run_cli([*map(str, files), "--data", str(mini_csv), "-o", str(tmp_path / "files.json")],
                   module="fer_sweep.evaluate")
    assert proc.returncode == 0, proc.stderr
    assert "PrivateTest, tta=flip: 0 checkpoint(s), 2 saved probabilities" in proc.stdout
    by_checkpoint, by_file = scores_of(tmp_path / "checkpoints.json"), scores_of(tmp_path / "files.json")
    assert [s["acc"] for s in by_file["scores"]] == [s["acc"] for s in by_checkpoint["scores"]]
    assert by_file["scores"][-1]["name"] == "ensemble" and by_file["tta"] == "flip"
    proc = run_cli([str(files[0]), str(sweep / "1"), "--data", str(mini_csv), "-o", str(tmp_path / "mixed.json")],
                   module="fer_sweep.evaluate")
    assert proc.returncode == 0, proc.stderr
    assert [s["acc"] for s in scores_of(tmp_path / "mixed.json")["scores"]] == pytest.approx(
        [s["acc"] for s in by_checkpoint["scores"]], abs=1e-6)
    run = tmp_path / "run"  # a run folder whose checkpoint is gone: scored by its test_probs.npz
    run.mkdir()
    (run / "test_probs.npz").write_bytes(files[1].read_bytes())
    proc = run_cli([str(run), "--data", str(mini_csv), "-o", str(tmp_path / "run.json")], module="fer_sweep.evaluate")
    assert proc.returncode == 0, proc.stderr
    assert scores_of(tmp_path / "run.json")["scores"][0]["acc"] == by_checkpoint["scores"][1]["acc"]
    kept = tmp_path / "reference"  # their text form, as multirun/reference keeps them: a folder of them scores
    for f in files:
        write_probs(kept / f.name.replace(".npz", "_test_probs.csv"), load_probs(f))
    proc = run_cli([str(kept), "--data", str(mini_csv), "-o", str(tmp_path / "text.json")],
                   module="fer_sweep.evaluate")
    assert proc.returncode == 0, proc.stderr
    assert [s["acc"] for s in scores_of(tmp_path / "text.json")["scores"]] == pytest.approx(
        [s["acc"] for s in by_checkpoint["scores"]], abs=1 / 360)  # 4 decimals: a tie may move one face


@pytest.mark.parametrize("case, message", [
    ("other_tta", "with tta=none, but PrivateTest with tta=flip is asked for"),
    ("other_data", "scored on other faces than the data given"),  # the run's own: its synthetic test faces
    ("no_data", "give the FER2013 file to score on with --data"),
    ("not_npz", "not an .npz archive"),
])
def test_saved_probabilities_of_other_faces_or_views_are_refused(sweep, mini_csv, tmp_path, case, message):
    (tmp_path / "junk.npz").write_text("not a zip")
    own = str(sweep / "0" / "test_probs.npz")
    args = {"other_tta": [own, "--tta", "flip"],
            "other_data": [own, str(sweep / "1"), "--data", str(mini_csv)],
            "no_data": [own],
            "not_npz": [str(tmp_path / "junk.npz")]}[case]
    proc = run_cli(args, module="fer_sweep.evaluate")
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_sweep_folder_gives_only_the_jobs_its_results_csv_lists_as_completed(tmp_path, mini_csv):
    """A real sweep with a failing job, a file left in that job's folder, a stray job folder of an earlier command
    and the same job named twice: only the completed job is scored, once, and each skip says why."""
    sweep = tmp_path / "sweep"
    proc = run_cli(["--multirun", "data=fer2013", f"data.path={mini_csv}", "model=resnet9", "model.base_width=4",
                    "trainer.epochs=1", "trainer.threads=1", "trainer.plots=false", "optimizer.lr=0.001,-1",
                    f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 1 and "1 failed" in proc.stdout, proc.stderr
    (sweep / "1" / "checkpoints").mkdir()  # a checkpoint left behind in the failed job's folder
    shutil.copyfile(sweep / "0" / "checkpoints" / "best.pt", sweep / "1" / "checkpoints" / "best.pt")
    shutil.copytree(sweep / "0", sweep / "stray")  # a job folder results.csv does not list
    out = tmp_path / "scores.json"
    proc = run_cli([str(sweep), str(sweep), str(sweep / "0"), "--data", str(mini_csv), "-o", str(out)],
                   module="fer_sweep.evaluate")
    assert proc.returncode == 0, proc.stderr
    assert [s["name"] for s in scores_of(out)["scores"]] == [str(sweep / "0/checkpoints/best.pt")]  # no ensemble
    assert f"{sweep}: 1 job(s) taken, 2 skipped" in proc.stdout
    assert "took     0" in proc.stdout
    assert "skipped  1: failed" in proc.stdout and "skipped  stray: not in results.csv" in proc.stdout
    assert "named twice, scored once" in proc.stdout


def test_a_folder_without_results_csv_takes_every_job_and_says_so(sweep, mini_csv):
    proc = run_cli([str(sweep), "--data", str(mini_csv)], module="fer_sweep.evaluate")
    assert proc.returncode == 0, proc.stderr
    assert f"{sweep}: no results.csv, so every job found is taken (2)" in proc.stdout
    assert "ensemble" in proc.stdout


def test_val_scores_of_a_checkpoint_that_trained_on_val_are_refused_unless_forced(mini_csv, tmp_path):
    """data.split=full trains on PublicTest: --split val would score it on its own training faces."""
    ckpt = train_tiny("cnn", tmp_path / "full", "data.split=full", "trainer.checkpoint=last")
    proc = run_cli([str(ckpt), "--data", str(mini_csv), "--split", "val"], module="fer_sweep.evaluate")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(ckpt) in lines[0] and "data.split=full" in lines[0] and "--force" in lines[0]
    assert proc.stdout == ""  # nothing scored

    out = tmp_path / "val.json"
    forced = run_cli([str(ckpt), "--data", str(mini_csv), "--split", "val", "--force", "-o", str(out)],
                     module="fer_sweep.evaluate")
    assert forced.returncode == 0, forced.stderr
    assert "warning:" in forced.stderr and "trained on PublicTest" in forced.stderr
    scores = scores_of(out)
    assert scores["split"] == "PublicTest" and scores["scores"][0]["val_acc"] is None  # its val acc: not held out
    assert run_cli([str(ckpt), "--data", str(mini_csv)], module="fer_sweep.evaluate").returncode == 0  # test: fine


@pytest.mark.parametrize("option", ["-o", "--save-probs"])
def test_an_unusable_destination_exits_2_before_scoring(sweep, mini_csv, tmp_path, option):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = run_cli([str(sweep / "0"), "--data", str(mini_csv), option, str(blocker / "out")],
                   module="fer_sweep.evaluate")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{blocker} is not a folder" in lines[0]
    assert proc.stdout == ""  # refused before scoring: no score lines
