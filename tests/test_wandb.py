"""`logger=wandb` (fer_sweep.trackers.WandbTracker): what an offline W&B run holds after a run, read back from
its run-<id>.wandb file; one group per sweep; a W&B that fails never fails training.

wandb (>= 0.2x) keeps no Python reader of its offline files, so `wandb_records` reads the file's framing
itself (a ":W&B" header, then LevelDB-log records in 32 KiB blocks) and parses each record with wandb's own
protobuf, wandb.proto.wandb_internal_pb2.Record."""
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pandas as pd
import pytest

from fer_sweep.app import train
from tests.conftest import FAST, run_cli

needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                                 reason="wandb is an extra: pip install 'fer_sweep[trackers]'")

QUIET = {"WANDB_SILENT": "true"}  # W&B's own banner lines, in the subprocess sweeps


@pytest.fixture(autouse=True)
def quiet_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(var, raising=False)


def wandb_records(path: Path) -> Iterator:
    """Every record of an offline run file, as wandb_internal_pb2.Record."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is no W&B run file"
    block, header, pos, pending = 32768, 7, 7, b""
    while pos + header <= len(data):
        if block - pos % block < header:  # too little room left in this block for a record header: padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if kind == 0 or pos + header + length > len(data):  # zero padding, or a record still being written
            break
        pending += data[pos + header:pos + header + length]
        pos += header + length
        if kind in (1, 4):  # a full record, or the last fragment of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


class OfflineRun:
    """What an offline run file says: run (name, group, tags...), config, history rows, summary, exit code."""

    def __init__(self, path: Path):
        self.path = path
        self.config: Dict[str, object] = {}
        self.history: List[Dict[str, object]] = []
        self.summary: Dict[str, object] = {}
        self.run = None
        self.exit_code = None
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                self.run = record.run
                self.config.update(items(record.run.config.update))
            elif kind == "config":
                self.config.update(items(record.config.update))
            elif kind == "history":
                self.history.append({**items(record.history.item), "_step": record.history.step.num})
            elif kind == "summary":
                self.summary.update(items(record.summary.update))
            elif kind == "exit":  # the last record: the run is whole
                self.exit_code = record.exit.exit_code


def items(updates) -> Dict[str, object]:
    """A record's items (key, or nested_key for "train/acc" and an image's fields) as a dict."""
    out: Dict[str, object] = {}
    for item in updates:
        *path, last = [item.key] if item.key else list(item.nested_key)
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = json.loads(item.value_json)
    return out


def offline_runs(folder: Path, timeout: float = 60) -> List[OfflineRun]:
    """The offline runs under folder, each read once its file is whole: wandb's writer (the wandb-core
    process) may still be appending the last records when run.finish() has returned."""
    runs = []
    for path in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")):
        deadline = time.monotonic() + timeout
        run = OfflineRun(path)
        while run.exit_code is None and time.monotonic() < deadline:
            time.sleep(0.5)
            run = OfflineRun(path)
        assert run.exit_code is not None, f"{path} has no exit record after {timeout} s"
        runs.append(run)
    return runs


@needs_wandb
def test_an_offline_run_holds_config_epochs_summary_and_plots(make_cfg, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fer_sweep"):
        result = train(make_cfg(*FAST, "logger=wandb", "trainer.plots=true", "++tags=[baseline,ablation-3]",
                                "logger.wandb.tags=[cpu]", "+trial.number=7", "+trial.study=lr"))
    assert not [r.getMessage() for r in caplog.records if "logger wandb failed" in r.getMessage()]
    run_dir = tmp_path / "run"
    history = pd.read_csv(run_dir / "history.csv")
    [run] = offline_runs(run_dir)  # offline, in the run folder: no account, no network

    assert run.run.display_name == run_dir.name and run.run.project == "fer_sweep" and not run.run.run_group
    assert list(run.run.tags) == ["baseline", "ablation-3", "cpu"]
    config = run.config
    assert config["model"]["name"] == "cnn" and config["optimizer"]["lr"] == 1e-3
    assert config["data"]["n_train"] == 210 and config["trial"] == 7 and "job" not in config
    assert "logger" not in config and "hydra" not in config  # URLs may hold credentials; bookkeeping

    epochs = [row for row in run.history if "val/acc" in row]
    assert [row["_step"] for row in epochs] == history["epoch"].tolist()  # step = epoch
    for key, column in (("val/acc", "val_acc"), ("val/loss", "val_loss"), ("train/acc", "train_acc"),
                        ("train/loss", "train_loss"), ("lr", "lr")):
        assert [row[key] for row in epochs] == pytest.approx(history[column].tolist(), rel=1e-12)
    plots = {k for row in run.history for k in row if k.startswith("plots/")}
    assert plots == {"plots/accuracy", "plots/confusion", "plots/loss", "plots/lr"}

    summary = run.summary
    assert summary["test_acc"] == pytest.approx(result["test_acc"])
    assert summary["best_val_acc"] == pytest.approx(result["best_val_acc"])
    assert summary["test_acc_happy"] == pytest.approx(result["per_class_test_acc"]["happy"])
    assert summary["status"] == "completed" and summary["dataset"] == "synthetic"
    assert run.exit_code == 0


@needs_wandb
def test_a_sweep_is_one_group_and_a_failed_job_a_failed_run(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["--multirun", *FAST, "logger=wandb", "trainer.plots=false", "optimizer.lr=0.001,-1",
                    f"hydra.sweep.dir={sweep}"], env_extra=QUIET)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the second job failed
    assert "Sweep finished: 1 completed, 1 failed" in proc.stdout
    assert "logger wandb failed" not in proc.stderr + proc.stdout

    runs = sorted(offline_runs(sweep), key=lambda r: r.config["job"])
    assert [r.config["job"] for r in runs] == [0, 1]
    assert [r.run.display_name for r in runs] == ["job-0", "job-1"]
    assert {r.run.run_group for r in runs} == {str(sweep)}
    assert [r.config["optimizer"]["lr"] for r in runs] == [0.001, -1]
    assert [r.summary["status"] for r in runs] == ["completed", "failed"]
    assert [r.exit_code for r in runs] == [0, 1]
    assert "test_acc" in runs[0].summary and "test_acc" not in runs[1].summary


@needs_wandb
def test_wandb_that_cannot_start_warns_once_and_the_run_completes(make_cfg, tmp_path, caplog, monkeypatch):
    # online without an account (no API key, no netrc): W&B refuses to start; nothing reaches the network
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    cfg = make_cfg(*FAST, "logger=wandb", "logger.wandb.mode=online", "trainer.plots=false")
    with caplog.at_level(logging.WARNING, logger="fer_sweep"):
        result = train(cfg)
    assert result["status"] == "completed" and result["test_acc"] is not None
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "logger " in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("logger wandb failed in start"), said


def test_a_wandb_mode_it_does_not_know_is_a_config_error(make_cfg):
    from fer_sweep.errors import ConfigError

    with pytest.raises(ConfigError, match="logger.wandb.mode='onlien': expected one of offline, online, disabled"):
        train(make_cfg(*FAST, "logger=wandb", "logger.wandb.mode=onlien"))


def test_without_wandb_installed_the_run_stops_before_training_naming_the_extra(make_cfg, monkeypatch):
    """As for every tracker (fer_sweep/extras.py): a missing package is the user's install, said in one line
    before any training, not a warning after an hour."""
    from fer_sweep.extras import MissingExtra

    monkeypatch.setitem(sys.modules, "wandb", None)  # what `import wandb` meets where it is not installed
    with pytest.raises(MissingExtra, match=r'logger=wandb needs wandb: pip install "fer_sweep\[trackers\]"'):
        train(make_cfg(*FAST, "logger=wandb", "trainer.plots=false"))
