"""multirun/reference/results.csv: sweeps and single runs collected into one table, by name, with commands."""
import json
import shutil

import pandas as pd
from omegaconf import OmegaConf

from tests.conftest import FAST, NARROW_RESNET9, run_cli

from fer_sweep.saved_probs import load_probs
from fer_sweep.sweep.reference import main


def test_sweeps_and_runs_collect_into_one_table(tmp_path, mini_csv):
    sweep, single = tmp_path / "sweep", tmp_path / "single"
    done = run_cli(["--multirun", *FAST, "model=cnn,resnet9", "trainer.plots=false", f"hydra.sweep.dir={sweep}"])
    assert done.returncode == 0, done.stderr
    done = run_cli(["data=fer2013", f"data.path={mini_csv}", *NARROW_RESNET9, "trainer.epochs=1",
                    "trainer.plots=false", "trainer.threads=1", f"hydra.run.dir={single}"])
    assert done.returncode == 0, done.stderr
    table = tmp_path / "reference" / "results.csv"
    assert main([str(sweep), "--name", "grid", "--command", "cmd A", "--table", str(table)]) == 0
    assert main([str(single), "--name", "mini", "--command", "cmd B", "--table", str(table)]) == 0
    assert main([str(sweep), "--name", "grid", "--command", "cmd A2", "--table", str(table)]) == 0  # replaces

    frame = pd.read_csv(table)
    assert sorted(frame["sweep"]) == ["grid", "grid", "mini"]
    assert set(frame.loc[frame["sweep"] == "grid", "command"]) == {"cmd A2"}
    mini = frame[frame["sweep"] == "mini"].iloc[0]
    assert (mini["data_copy"], mini["data_fingerprint"], mini["data"]) == ("kaggle_mini", "a80f975efc0c5c54",
                                                                          "fer2013")
    assert mini["data.path"] == mini_csv.name and "output_dir" not in frame.columns
    assert set(frame.loc[frame["sweep"] == "grid", "data_copy"]) == {"synthetic"}
    assert (tmp_path / "reference" / "mini" / "history.csv").exists()
    assert mini["run"] == f"{tmp_path.name}/single"  # the job folder, beside the folder that holds it
    kept = OmegaConf.load(tmp_path / "reference" / "mini" / f"{tmp_path.name}_single_config.yaml")
    assert kept.data.path == mini_csv.name and kept.trainer.epochs == 1  # the file's name, not where it sat
    probs = load_probs(tmp_path / "reference" / "mini" / f"{tmp_path.name}_single_test_probs.csv")  # in text
    own = load_probs(single / "test_probs.npz")
    assert (probs.split, len(probs.probs), probs.faces) == ("PrivateTest", 360, own.faces)
    assert (probs.source, probs.data["path"]) == (mini["run"], mini_csv.name)  # no paths of the machine
    assert "grid" in (tmp_path / "reference" / "grid" / "report.md").read_text()

    # one command split over two queues (one per core): both folders under one name
    assert main([str(sweep), str(single), "--name", "both", "--command", "cmd C", "--table", str(table)]) == 0
    both = pd.read_csv(table).query("sweep == 'both'")
    assert sorted(both["model"]) == ["cnn", "resnet9", "resnet9"] and set(both["command"]) == {"cmd C"}
    assert (tmp_path / "reference" / "both" / "single_history.csv").exists()

    # job folders of two sweeps share a name (0): their curves are told apart by the sweep's folder
    (tmp_path / "other").mkdir()
    copy = tmp_path / "other" / "0"
    copy.symlink_to(single, target_is_directory=True)
    assert main([str(sweep / "0"), str(copy), "--name", "jobs", "--command", "c", "--table", str(table)]) == 0
    assert (tmp_path / "reference" / "jobs" / "other_0_history.csv").exists()

    # cells of one table run at different times: --append adds a command's rows, the same command again replaces
    for command in ("cmd none", "cmd onecycle", "cmd onecycle"):
        assert main([str(single), "--name", "cells", "--command", command, "--table", str(table), "--append"]) == 0
    cells = pd.read_csv(table).query("sweep == 'cells'")
    assert sorted(cells["command"]) == ["cmd none", "cmd onecycle"]
    assert len(pd.read_csv(tmp_path / "reference" / "cells" / "results.csv")) == 2  # the folder holds all cells
    # the report sees the rows as the table holds them: an earlier row's threads 1 (read back from the csv) and
    # a new row's "1" (from its overrides) are one setting, not two
    assert "split by" not in (tmp_path / "reference" / "cells" / "report.md").read_text()
    assert main([str(single), "--name", "cells", "--command", "cmd x", "--table", str(table)]) == 0  # no --append
    assert list(pd.read_csv(table).query("sweep == 'cells'")["command"]) == ["cmd x"]

    # a second seed appended as its own run: the first run's curve stays, the new one is named after its folder
    assert main([str(single), "--name", "seeds", "--command", "seed 0", "--table", str(table)]) == 0
    assert main([str(copy), "--name", "seeds", "--command", "seed 1", "--table", str(table), "--append"]) == 0
    assert sorted(p.name for p in (tmp_path / "reference" / "seeds").glob("*history.csv")) == [
        "0_history.csv", "history.csv"]


def test_a_row_keeps_its_config_and_reruns_from_it(tmp_path, capsys):
    """An experiment file may change after a reference run; the config kept beside the table does not, and
    running it again gives the same job (the same config hash: the resume key) and the same score."""
    sweep = tmp_path / "s02"
    done = run_cli(["--multirun", *FAST, "model=cnn", "seed=2", "trainer.plots=false", f"hydra.sweep.dir={sweep}"])
    assert done.returncode == 0, done.stderr
    table = tmp_path / "reference" / "results.csv"
    assert main([str(sweep), "--name", "grid", "--command", "cmd", "--table", str(table)]) == 0
    assert list(pd.read_csv(table)["run"]) == ["s02/0"]
    assert "split by" not in (tmp_path / "reference" / "grid" / "report.md").read_text()  # run is bookkeeping

    rerun = tmp_path / "rerun"
    done = run_cli(["--config-dir", str(tmp_path / "reference" / "grid"), "--config-name", "s02_0_config",
                    f"hydra.run.dir={rerun}"])
    assert done.returncode == 0, done.stderr
    first, again = (json.loads((d / "result.json").read_text()) for d in (sweep / "0", rerun))
    assert (again["config_hash"], again["seed"], again["model"]) == (first["config_hash"], 2, "cnn")
    assert again["test_acc"] == first["test_acc"]

    # a job's unreadable probabilities stop the collection before anything is written, naming the file
    (sweep / "0" / "test_probs.npz").write_bytes(b"not an archive")
    before = table.read_text()
    assert main([str(sweep), "--name", "broken", "--command", "cmd", "--table", str(table)]) == 2
    assert "test_probs.npz: not a probabilities file" in capsys.readouterr().err
    assert table.read_text() == before and not (tmp_path / "reference" / "broken").exists()


def test_an_empty_folder_is_refused(tmp_path, capsys):
    assert main([str(tmp_path), "--name", "x", "--command", "c", "--table", str(tmp_path / "t.csv")]) == 2
    assert "no result.json found" in capsys.readouterr().err


def test_the_sweep_package_never_imports_the_report_cli():
    """Imports run one way: fer_sweep.report (the CLI) uses fer_sweep.sweep, never the reverse."""
    import ast
    from pathlib import Path

    import fer_sweep.sweep

    for file in Path(fer_sweep.sweep.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "fer_sweep.report", f"{file.name} imports fer_sweep.report"
                assert not (node.module == "fer_sweep" and any(a.name == "report" for a in node.names)), file.name


def test_replacing_a_name_removes_the_dropped_runs_files_and_their_scores(tmp_path, mini_csv, capsys):
    """Collect a 2-job sweep, record its ensemble as a row (evaluate -o, then --scores), then collect the name again
    with job 0 alone: job 1's config and probabilities leave the folder, the ensemble row leaves the table, and
    the folder holds exactly the runs of its rows."""
    sweep = tmp_path / "s"
    done = run_cli(["--multirun", "data=fer2013", f"data.path={mini_csv}", *NARROW_RESNET9, "trainer.epochs=1",
                    "trainer.plots=false", "trainer.threads=1", "seed=0,1", f"hydra.sweep.dir={sweep}"])
    assert done.returncode == 0, done.stderr
    table = tmp_path / "reference" / "results.csv"
    folder = tmp_path / "reference" / "grid"
    assert main([str(sweep), "--name", "grid", "--command", "cmd", "--table", str(table)]) == 0
    assert sorted(p.name for p in folder.glob("s_*")) == [
        "s_0_config.yaml", "s_0_test_probs.csv", "s_1_config.yaml", "s_1_test_probs.csv"]
    assert set(pd.read_csv(table)["kind"]) == {"run"}

    scores = tmp_path / "evaluate_pair.json"
    done = run_cli([str(folder), "--data", str(mini_csv), "-o", str(scores)], module="fer_sweep.evaluate")
    assert done.returncode == 0, done.stderr
    assert main(["--scores", str(scores), "--each", "--name", "grid", "--command", "evaluate pair",
                 "--table", str(table)]) == 0
    frame = pd.read_csv(table)
    ensemble = frame[frame["kind"] == "ensemble"].iloc[0]
    assert ensemble["members"] == "s/0;s/1" and ensemble["tta"] == "none" and ensemble["command"] == "evaluate pair"
    assert ensemble["test_acc"] == json.loads(scores.read_text())["scores"][-1]["acc"]
    assert ensemble["model"] == "resnet9" and pd.isna(ensemble["seed"])  # shared settings only
    rescored = frame[frame["kind"] == "rescore"].set_index("members")
    assert rescored.loc["s/1", "seed"] == 1 and len(rescored) == 2
    assert main(["--scores", str(scores), "--name", "grid", "--command", "evaluate pair",
                 "--table", str(table)]) == 0  # the same scoring again replaces its row
    assert (pd.read_csv(table)["kind"] == "ensemble").sum() == 1
    assert len(pd.read_csv(folder / "results.csv")) == 5  # the folder's table has its score rows too
    assert (folder / "evaluate_pair.json").read_text() == scores.read_text()  # the JSON is kept beside them

    assert main([str(sweep / "0"), "--name", "grid", "--command", "cmd 2", "--table", str(table)]) == 0
    frame = pd.read_csv(table)
    assert list(frame.loc[frame["kind"] == "run", "run"]) == ["s/0"]
    assert list(frame.loc[frame["kind"] != "run", "members"]) == ["s/0"]  # the scores of s/1 left with it
    assert sorted(p.name for p in folder.iterdir()) == [
        "history.csv", "report.md", "results.csv", "s_0_config.yaml", "s_0_test_probs.csv"]

    # a score file whose member is no run of the table: one line, nothing written
    before = table.read_text()
    assert main(["--scores", str(scores), "--name", "grid", "--command", "c", "--table", str(table)]) == 2
    assert "member" in capsys.readouterr().err and table.read_text() == before

    # evaluate on a reference folder takes the runs its results.csv lists; a stray kept file is skipped
    shutil.copyfile(folder / "s_0_test_probs.csv", folder / "old_0_test_probs.csv")
    done = run_cli([str(folder), "--data", str(mini_csv)], module="fer_sweep.evaluate")
    assert done.returncode == 0, done.stderr
    assert "took     s_0" in done.stdout and "skipped  old_0: not in results.csv" in done.stdout
    assert "ensemble" not in done.stdout
