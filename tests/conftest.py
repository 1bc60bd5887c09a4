"""Shared fixtures: real FER2013 samples from ../shared/data, composed configs, and CLI runners."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from hydra import compose, initialize_config_dir

from fer_sweep.app import CONFIG_DIR, train

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
MINI_CSV = SHARED_DATA / "fer2013_mini.csv.gz"
FOLDER_SAMPLE = SHARED_DATA / "fer2013_folder_sample"

# Tiny, fast jobs: small synthetic set, 2 epochs, no plots unless a test asks for them.
TINY_TRAINING = ["trainer.epochs=2", "trainer.batch_size=64", "trainer.threads=1"]
FAST = ["data=synthetic", "data.n_train=210", "data.n_public=70", "data.n_private=70", *TINY_TRAINING]
# For mini-CSV runs whose point is the data, split or table, not the network: resnet9 at width 4 (seconds, not a minute)
NARROW_RESNET9 = ["model=resnet9", "model.base_width=4"]


def shared_sample(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is missing (the shared FER2013 samples live in ../shared/data)")
    return path


@pytest.fixture
def mini_csv() -> Path:
    return shared_sample(MINI_CSV)


@pytest.fixture
def folder_sample() -> Path:
    return shared_sample(FOLDER_SAMPLE)


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(*overrides) -> the composed config, with output_dir in tmp_path (no Hydra run needed)."""

    def _make(*overrides: str, output_dir: Path | None = None):
        out = output_dir or tmp_path / "run"
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose("config", overrides=[f"output_dir={out}", "++data.cache_dir=" + str(tmp_path / "cache"),
                                                *overrides])

    return _make


def run_cli(args: List[str], module: str = "fer_sweep", timeout: int = 600, env_extra=None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` the way a user would; returns the completed process."""
    env = {k: v for k, v in os.environ.items() if k != "FER2013_PATH"}  # no accidental real dataset
    env.update(PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd or ROOT)


def train_tiny(model: str, out: Path, *overrides: str) -> Path:
    """One epoch on a tiny synthetic set: a real checkpoint, as `python -m fer_sweep` writes it, in ~2 s."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            f"output_dir={out}", f"model={model}", "data=synthetic", "data.n_train=140", "data.n_public=35",
            "data.n_private=35", "trainer.epochs=1", "trainer.batch_size=64", "trainer.threads=1",
            "trainer.plots=false", "trainer.precision=fp32", "trainer.device=cpu", *overrides])
    train(cfg)
    return out / "checkpoints" / "best.pt"
