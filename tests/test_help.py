"""`python -m fer_sweep --help`: names the tool, shows the three ways to run it, lists the groups and the
config."""
from tests.conftest import run_cli


def test_help_names_the_tool_and_shows_usage_groups_and_config():
    proc = run_cli(["--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("fer_sweep: facial expression recognition") and "powered by Hydra" not in out
    usage = out.index("== Usage ==")
    for command in ("python -m fer_sweep model=resnet9 scheduler=onecycle data.path=fer2013.csv",
                    "python -m fer_sweep --multirun model=cnn,resnet9 scheduler=none,onecycle",
                    "python -m fer_sweep --multirun hparams_search=optuna_lr"):
        assert out.index(command) > usage
    groups = out.index("== Configuration groups ==")
    assert groups > usage and out.index("== Config ==") > groups
    for line in ("model: cnn, resnet18, resnet9, resnet9_lean, resnet9_wide, vgg",
                 "hparams_search: fast_search, optuna_lr", "logger: many, mlflow, none, tensorboard"):
        assert line in out[groups:]
    assert "$APP_CONFIG_GROUPS" not in out and "$CONFIG" not in out
    config = out[out.index("== Config =="):]
    assert "\nmodel:\n  name: cnn" in config and "\nseed: 0" in config  # the config, as Hydra prints it


def test_help_reflects_overrides():
    out = run_cli(["--help", "model=resnet9"], timeout=120).stdout
    assert "\nmodel:\n  name: resnet9" in out[out.index("== Config =="):]
