"""The experiment files that reference tables rest on: each changes what its comment says and nothing else."""
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fer_sweep.app import CONFIG_DIR

LEVERS = {  # conf/lever/<name>.yaml -> the settings it changes from experiment=fast
    "baseline": {},
    "strong_aug": {"augmentation.name": "strong"},
    "mixup": {"trainer.mixup_alpha": 0.2},
    "erasing": {"augmentation.erasing": 0.25},
    "width_12": {"model.base_width": 12},
    "width_24": {"model.base_width": 24},
    "width_32": {"model.base_width": 32},
    "sgd": {"optimizer.name": "sgd", "optimizer.lr": 0.02, "trainer.weight_decay": 5.0e-4, "optimizer.betas": None,
            "optimizer.momentum": 0.9, "optimizer.nesterov": True},
    "crop_40": {"model.input_crop": 40},
    "lean": {"model.name": "resnet9_lean"},
    "flip_only_finish": {"trainer.finish_augmentation": "flip"},
    "crop_flip_finish": {},  # part of experiment=fast since fast v3; kept so its commands still run
    "no_finish": {"trainer.finish_fraction": 0.0, "trainer.tta": "tencrop"},  # fast v2: experiment=fast until v3
}


def _compose(*overrides: str, with_hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=with_hydra)


def _flat(*overrides: str) -> dict:
    """The composed config as {"trainer.epochs": 72, ...}."""
    flat = {}

    def walk(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(OmegaConf.to_container(_compose(*overrides)))
    return flat


def test_each_lever_changes_one_thing_from_experiment_fast_at_72_epochs():
    fast = _flat("experiment=fast")
    assert fast["trainer.time_budget_s"] == 3500
    for lever, changes in LEVERS.items():
        cfg = _flat("experiment=fast_levers", f"+lever={lever}")
        differ = {k: cfg.get(k) for k in set(fast) | set(cfg) if fast.get(k) != cfg.get(k)}
        expected = {"trainer.time_budget_s": None, "trainer.epochs": 72, **changes}
        if lever == "strong_aug":  # the preset swaps the article's warps for its own
            differ = {k: v for k, v in differ.items() if not k.startswith("augmentation.") or k in changes}
        assert differ == expected, lever


def test_fast_levers_sweeps_every_lever_file():
    params = _compose("experiment=fast_levers", with_hydra=True).hydra.sweeper.params
    files = sorted(p.stem for p in (Path(CONFIG_DIR) / "lever").glob("*.yaml"))
    assert sorted(params["+lever"].split(",")) == files == sorted(LEVERS)
