"""Tags (issue 51): `tags=[...]` labels runs in result.json, results.csv and every tracker, `report --filter
tags=x` selects by them, and they are not part of the resume key."""
import io
import json

import pandas as pd
import pytest

from fer_sweep.app import config_hash
from tests.conftest import FAST, run_cli


def test_a_tagged_sweep_records_its_tags_everywhere_and_the_report_filters_on_them(tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep = tmp_path / "sweep"
    proc = run_cli(["--multirun", *FAST, "trainer.epochs=1", "trainer.plots=false", "logger=many",
                    "tags=[baseline,ablation-3],[ablation-3]", f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((sweep / "0" / "result.json").read_text())["tags"] == ["baseline", "ablation-3"]
    frame = pd.read_csv(sweep / "results.csv")
    assert frame["tags"].tolist() == ["baseline;ablation-3", "ablation-3"]
    assert "tags=" not in " ".join(frame.columns)  # the override is the tags column, not a parameter of its own

    client = MlflowClient(tracking_uri=f"sqlite:///{sweep / 'mlflow.db'}")
    runs = sorted(client.search_runs([e.experiment_id for e in client.search_experiments()]),
                  key=lambda r: r.data.tags["job"])
    assert [r.data.tags.get("tags") for r in runs] == ["baseline;ablation-3", "ablation-3"]
    assert runs[0].data.tags["tag.baseline"] == "true" and "tag.baseline" not in runs[1].data.tags
    events = EventAccumulator(str(sweep / "0" / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert b"baseline, ablation-3" in events.Tensors("tags/text_summary")[0].tensor_proto.string_val[0]

    report = run_cli([str(sweep), "--filter", "tags=baseline", "--format", "csv", "--chart",
                      str(tmp_path / "r.png")], module="fer_sweep.report")
    assert report.returncode == 0, report.stderr
    assert pd.read_csv(io.StringIO(report.stdout))["n"].tolist() == [1]
    both = run_cli([str(sweep), "--filter", "tags=ablation-3", "--format", "csv", "--chart",
                    str(tmp_path / "r.png")], module="fer_sweep.report")
    assert pd.read_csv(io.StringIO(both.stdout))["n"].tolist() == [2]
    none = run_cli([str(sweep), "--filter", "tags=ablation", "--format", "csv", "--chart",
                    str(tmp_path / "r.png")], module="fer_sweep.report")  # a whole tag, not a part of one
    assert "ablation-3" not in none.stdout


def test_tags_are_not_part_of_the_resume_key(make_cfg):
    assert config_hash(make_cfg(*FAST, "tags=[a,b]")) == config_hash(make_cfg(*FAST))
    assert config_hash(make_cfg(*FAST, "seed=1")) != config_hash(make_cfg(*FAST))


def test_a_bad_tag_is_one_line_and_exit_2(tmp_path):
    proc = run_cli([*FAST, "tags=[a,'b;c']", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "fer_sweep: error: tags=['a', 'b;c']: a tag is non-empty text without ';', e.g. tags=[baseline,ablation-3]"]
