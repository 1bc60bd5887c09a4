"""Optional packages, and the one line that names the extra to install when one is missing.

The core install trains, sweeps (grid and Optuna, journal or SQLite storage) and reports. The rest comes with
extras (pyproject.toml):

    pip install "fer_sweep[predict]"      opencv-python-headless, onnx, onnxruntime, onnxscript: predict, export
    pip install "fer_sweep[distributed]"  the joblib and submitit launchers, psycopg (postgresql:// storages)
    pip install "fer_sweep[trackers]"     tensorboard, mlflow: logger=tensorboard|mlflow|many
    pip install -e ".[dev]"               all of them, and the test tools

Every import of an optional package goes through `require`, which raises MissingExtra (a UserError): the command
prints `fer_sweep: error: predict needs opencv-python-headless: pip install "fer_sweep[predict]"` and exits 2.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Dict, NamedTuple, Optional, Sequence

from fer_sweep.errors import UserError


class Extra(NamedTuple):
    extra: str     # the pip extra that installs it
    package: str   # its name on PyPI


MODULES: Dict[str, Extra] = {
    "cv2": Extra("predict", "opencv-python-headless"),
    "onnx": Extra("predict", "onnx"),
    "onnxruntime": Extra("predict", "onnxruntime"),
    "onnxscript": Extra("predict", "onnxscript"),
    "psycopg": Extra("distributed", "psycopg[binary]"),
    "hydra_plugins.hydra_joblib_launcher": Extra("distributed", "hydra-joblib-launcher"),
    "hydra_plugins.hydra_submitit_launcher": Extra("distributed", "hydra-submitit-launcher"),
    "tensorboard": Extra("trackers", "tensorboard"),
    "mlflow": Extra("trackers", "mlflow"),
    "wandb": Extra("trackers", "wandb"),
    "ray": Extra("ray", "ray"),
}
# hydra/launcher choices -> the plugin module they need
LAUNCHERS = {"joblib": "hydra_plugins.hydra_joblib_launcher", "submitit_local": "hydra_plugins.hydra_submitit_launcher",
             "submitit_slurm": "hydra_plugins.hydra_submitit_launcher",
             "slurm_gpu": "hydra_plugins.hydra_submitit_launcher", "ray": "ray", "ray_gpu": "ray"}


class MissingExtra(UserError):
    """An optional package is not installed; the message names the extra that installs it."""


def message(module: str, purpose: str) -> str:
    extra = MODULES.get(module, Extra("dev", module))
    return f'{purpose} needs {extra.package}: pip install "fer_sweep[{extra.extra}]"'


def available(module: str) -> bool:
    """Whether `module` imports here (None in sys.modules counts as missing, as `import` treats it)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or set to None
        return False


def require(module: str, purpose: str) -> ModuleType:
    """import `module` (a key of MODULES), or raise MissingExtra saying what `purpose` needs and how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and not (module == exc.name or module.startswith(exc.name + ".")
                                         or exc.name.startswith(module + ".")):
            raise  # the package is there but something it imports is broken: not ours to rename
        raise MissingExtra(message(module, purpose)) from None


def require_all(modules: Sequence[str], purpose: str) -> None:
    for module in modules:
        require(module, purpose)


def missing_launcher(argv: Sequence[str]) -> Optional[str]:
    """The one-line message for a `hydra/launcher=NAME` override whose plugin is not installed, else None.
    (Hydra's own message would list the launchers it can see, without saying which package adds the one asked.)"""
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if sep and key == "hydra/launcher" and value in LAUNCHERS and not available(LAUNCHERS[value]):
            return message(LAUNCHERS[value], f"hydra/launcher={value}")
    return None
