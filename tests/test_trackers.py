"""Experiment trackers (the `logger` config group): what TensorBoard and MLflow hold after a run, read back
with their own readers; one MLflow experiment per sweep; a tracker that fails never fails training."""
import logging
import socket
import warnings

import pandas as pd
import pytest

from fer_sweep.app import train
from tests.conftest import FAST, run_cli

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

PLOTS = ["accuracy.png", "confusion.png", "loss.png", "lr.png"]


def mlflow_client(db):
    from mlflow import MlflowClient

    with warnings.catch_warnings():  # SQLAlchemy 2.1 deprecates a loader MLflow's store uses: not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        client = MlflowClient(tracking_uri=f"sqlite:///{db}")
        client.search_experiments()
    return client


def experiments(client):
    return [e for e in client.search_experiments() if e.name != "Default"]  # MLflow adds Default itself


def test_tensorboard_holds_epochs_hparams_result_and_plots(make_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    result = train(make_cfg(*FAST, "logger=tensorboard", "trainer.plots=true"))
    run = tmp_path / "run"
    history = pd.read_csv(run / "history.csv")
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0,
                                                                        "tensors": 0})  # 0: keep every event
    events.Reload()

    for tag, column in [("val/acc", "val_acc"), ("val/loss", "val_loss"), ("train/acc", "train_acc"),
                        ("train/loss", "train_loss"), ("lr", "lr")]:
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == history["epoch"].tolist()
        assert [e.value for e in logged] == pytest.approx(history[column].tolist(), rel=1e-6)
    assert events.Scalars("test/acc")[-1].value == pytest.approx(result["test_acc"], rel=1e-6)
    assert events.Scalars("val/best_acc")[-1].value == pytest.approx(result["best_val_acc"], rel=1e-6)
    for name, acc in result["per_class_test_acc"].items():
        assert events.Scalars(f"test/acc_{name}")[-1].value == pytest.approx(acc, rel=1e-6)
    assert sorted(events.Tags()["images"]) == [f"plots/{p[:-4]}" for p in PLOTS]

    hparams = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    values = start.session_start_info.hparams
    assert values["model.name"].string_value == "cnn" and values["scheduler.name"].string_value == "none"
    assert values["optimizer.lr"].number_value == pytest.approx(1e-3)
    assert values["trainer.epochs"].number_value == 2
    end = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_end_info"])
    assert end.session_end_info.status == api_pb2.Status.Value("STATUS_SUCCESS")


def test_mlflow_holds_params_metrics_tags_and_plots(make_cfg, tmp_path):
    result = train(make_cfg(*FAST, "logger=mlflow", "trainer.plots=true", "+logger.mlflow.tags.team=vision",
                            "+trial.number=7", "+trial.study=lr"))  # as the Optuna sweeper hands a trial over
    run_dir = tmp_path / "run"
    history = pd.read_csv(run_dir / "history.csv")
    client = mlflow_client(run_dir / "mlflow.db")  # the default store: beside the run's files

    [experiment] = experiments(client)
    assert experiment.name == str(run_dir)
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert run.data.tags["status"] == "completed" and run.data.tags["team"] == "vision"
    assert run.data.tags["model"] == "cnn" and run.data.tags["dataset"] == "synthetic"
    assert "job" not in run.data.tags and run.data.tags["trial"] == "7"  # a single run is no sweep job
    params = run.data.params
    assert params["model.name"] == "cnn" and params["optimizer.name"] == "adam"
    assert float(params["optimizer.lr"]) == 1e-3 and params["data.n_train"] == "210"
    assert not [k for k in params if k.startswith(("trial.", "logger.", "hydra."))]  # bookkeeping, URLs

    for key in ("val_acc", "val_loss", "train_acc", "train_loss", "lr"):
        logged = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in logged] == history["epoch"].tolist()
        assert [m.value for m in logged] == pytest.approx(history[key].tolist(), rel=1e-12)
    metrics = run.data.metrics
    assert metrics["test_acc"] == pytest.approx(result["test_acc"]) and metrics["params"] == result["params"]
    assert metrics["best_val_acc"] == pytest.approx(result["best_val_acc"])
    assert metrics["test_acc_happy"] == pytest.approx(result["per_class_test_acc"]["happy"])

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plots", "history.csv", "config.yaml"} <= artifacts
    plots = sorted(a.path for a in client.list_artifacts(run.info.run_id, "plots"))
    assert plots == [f"plots/{p}" for p in PLOTS]
    assert (run_dir / "mlartifacts").is_dir()  # artifacts beside the store, not in the current folder


def test_mlflow_sweep_is_one_experiment_and_a_failed_job_a_failed_run(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["--multirun", *FAST, "logger=mlflow", "trainer.plots=false", "optimizer.lr=0.001,-1",
                    f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 1, proc.stderr[-3000:]  # the second job failed
    assert "Sweep finished: 1 completed, 1 failed" in proc.stdout

    client = mlflow_client(sweep / "mlflow.db")
    [experiment] = experiments(client)
    assert experiment.name == str(sweep)
    runs = sorted(client.search_runs([experiment.experiment_id]), key=lambda r: r.data.tags["job"])
    assert [r.data.tags["job"] for r in runs] == ["0", "1"]
    assert [r.info.run_name for r in runs] == ["job-0", "job-1"]
    assert [r.info.status for r in runs] == ["FINISHED", "FAILED"]
    assert [r.data.tags["status"] for r in runs] == ["completed", "failed"]
    assert [r.data.params["optimizer.lr"] for r in runs] == ["0.001", "-1"]
    assert "test_acc" in runs[0].data.metrics and "test_acc" not in runs[1].data.metrics
    assert "logger mlflow failed" not in proc.stderr + proc.stdout


def test_a_tracker_that_cannot_write_warns_once_and_the_run_completes(make_cfg, tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cfg = make_cfg(*FAST, "logger=many", f"logger.mlflow.tracking_uri=sqlite:///{blocker}/mlflow.db",
                   f"logger.tensorboard.log_dir={blocker}/tensorboard")
    with caplog.at_level(logging.WARNING, logger="fer_sweep"):
        result = train(cfg)
    assert result["status"] == "completed" and result["test_acc"] is not None
    said = [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "logger " in r.getMessage()]
    assert len([w for w in said if w.startswith("logger mlflow failed")]) == 1, said
    assert len([w for w in said if w.startswith("logger tensorboard failed")]) == 1, said
    assert len(said) == 2


def test_an_mlflow_server_that_does_not_answer_warns_once_and_the_run_completes(make_cfg, caplog):
    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_cfg(*FAST, "logger=mlflow", f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}",
                   "trainer.plots=false")
    with caplog.at_level(logging.WARNING, logger="fer_sweep"):
        result = train(cfg)
    assert result["status"] == "completed"
    said = [r.getMessage() for r in caplog.records if "logger mlflow failed" in r.getMessage()]
    assert len(said) == 1 and f"127.0.0.1:{port}" in said[0]


def test_a_tracker_failing_mid_run_warns_once_then_is_skipped_but_still_ends_its_run(caplog):
    from fer_sweep.trackers import Tracker, Trackers

    class Flaky(Tracker):
        name = "flaky"

        def __init__(self):
            super().__init__({}, None)
            self.calls = []

        def start(self, cfg):
            self.calls.append("start")

        def on_epoch_end(self, epoch, metrics):
            self.calls.append(epoch)
            raise OSError("No space left on device")

        def finish(self, status):
            self.calls.append(status)

    flaky = Flaky()
    trackers = Trackers([flaky])
    with caplog.at_level(logging.WARNING, logger="fer_sweep"):
        trackers.start(None)
        assert [trackers.on_epoch_end(epoch, {}) for epoch in (1, 2, 3)] == [False] * 3  # never stops training
        trackers.log_result({}, None)
        trackers.finish("completed")
    assert flaky.calls == ["start", 1, "completed"]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("logger flaky failed in on_epoch_end") and "No space left on device" in warning


def test_an_unknown_logger_fails_at_once_with_the_known_ones(make_cfg):
    with pytest.raises(ValueError, match="unknown logger 'aim'; known loggers: mlflow, tensorboard, wandb"):
        train(make_cfg(*FAST, "+logger.aim.repo=x"))


def test_logger_none_is_the_default_and_does_not_change_the_resume_key(make_cfg):
    from fer_sweep.app import config_hash

    cfg = make_cfg(*FAST)
    assert dict(cfg.logger) == {}
    assert config_hash(cfg) == config_hash(make_cfg(*FAST, "logger=many"))


@pytest.mark.slow
def test_mlflow_with_parallel_jobs_shares_one_store(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *FAST, "logger=many",
                    "trainer.plots=false", "seed=0,1", f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow_client(sweep / "mlflow.db")
    [experiment] = experiments(client)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["job"] for r in runs) == ["0", "1"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert all((sweep / job / "tensorboard").is_dir() for job in ("0", "1"))


def test_a_run_that_trained_on_val_logs_no_best_val_accuracy(make_cfg, tmp_path):
    """data.split=full: the val split is trained on, so neither tracker shows a best val accuracy to rank by."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(make_cfg(*FAST, "logger=many", "data.split=full", "trainer.checkpoint=last"))
    run = tmp_path / "run"
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    assert "test/acc" in events.Tags()["scalars"] and "val/best_acc" not in events.Tags()["scalars"]
    assert "val/best_acc" not in str(events.PluginTagToContent("hparams"))

    client = mlflow_client(run / "mlflow.db")
    [experiment] = experiments(client)
    [mlflow_run] = client.search_runs([experiment.experiment_id])
    assert "best_val_acc" not in mlflow_run.data.metrics
    assert mlflow_run.data.metrics["test_acc"] == pytest.approx(result["test_acc"])
    tags = mlflow_run.data.tags
    assert (tags["split"], tags["checkpoint"], tags["val_held_out"]) == ("full", "last", "False")
