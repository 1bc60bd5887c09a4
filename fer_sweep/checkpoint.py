"""Load a training checkpoint (`checkpoints/best.pt`) back into a ready-to-use model.

The file alone is enough: it names the model and its arguments, the class names, the input normalisation
and the resolved config. It is read with `torch.load(weights_only=True)`, so a checkpoint can hold tensors
and plain containers but can never run code when loaded. Older checkpoints that lack optional keys load
with defaults taken from their config (or from the project's constants).
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from fer_sweep.data.arrays import EMOTIONS
from fer_sweep.data.batches import MEAN, STD


class CheckpointError(Exception):
    """A file that cannot be used as a fer_sweep checkpoint; the message names the file and the reason."""


@dataclass
class LoadedModel:
    """A model in eval mode on the CPU, with everything needed to feed it and to read its output."""

    model: nn.Module
    name: str
    class_names: List[str]
    mean: float
    std: float
    config: Dict[str, Any] = field(default_factory=dict)
    path: Optional[Path] = None
    epoch: Optional[int] = None
    val_acc: Optional[float] = None

    @property
    def uses_default_normalization(self) -> bool:
        return (self.mean, self.std) == (MEAN, STD)

    def metadata(self) -> Dict[str, Any]:
        """What a deployed copy of the model needs to know (stored beside exported models)."""
        return {"model": self.name, "class_names": list(self.class_names), "mean": self.mean, "std": self.std,
                "input": "float32 (N, 1, 48, 48), grayscale pixels / 255 normalised as (x - mean) / std",
                "output": "logits (N, classes); softmax gives probabilities"}


def read_payload(path: str | Path) -> Dict[str, Any]:
    """The checkpoint's dict, read without unpickling arbitrary objects."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load on a foreign file raises almost anything (KeyError, EOFError...)
        raise CheckpointError(_load_failure(path, exc)) from None
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{path}: not a fer_sweep checkpoint: it holds a {type(payload).__name__}, "
                              "not a dict with 'state_dict' and 'model'/'config'")
    if not isinstance(payload.get("state_dict"), Mapping):
        raise CheckpointError(f"{path}: not a fer_sweep checkpoint: no 'state_dict' "
                              f"(keys: {sorted(payload)})")
    return dict(payload)


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Build the checkpoint's model, load its weights and return it in eval mode with its metadata."""
    from fer_sweep.models import build_model

    path = Path(path)
    payload = read_payload(path)
    config = payload.get("config") or {}
    name, kwargs = _model_spec(path, payload, config)
    class_names = list(payload.get("class_names") or _default_class_names(config))
    mean, std = _normalization(payload)
    try:
        model = build_model(name, num_classes=len(class_names), **kwargs)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the weights do not fit model {name!r} with {len(class_names)} "
                              f"classes and arguments {kwargs} ({_first_line(exc)})") from None
    model.eval()
    return LoadedModel(model, name, class_names, mean, std, config, path, payload.get("epoch"),
                       payload.get("val_acc"))


def _model_spec(path: Path, payload: Mapping[str, Any],
                config: Mapping[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """(registry name, builder arguments): from the payload, else from the saved config's model group."""
    model_cfg = config.get("model") if isinstance(config.get("model"), Mapping) else {}
    name = payload.get("model") or model_cfg.get("name")
    if not name:
        raise CheckpointError(f"{path}: not a fer_sweep checkpoint: neither 'model' nor config.model.name "
                              "says which model the weights belong to")
    kwargs = payload.get("model_kwargs")
    if kwargs is None:
        kwargs = {k: v for k, v in model_cfg.items() if k != "name"}
    return str(name), dict(kwargs)


def _default_class_names(config: Mapping[str, Any]) -> Tuple[str, ...]:
    """FER2013's classes, less disgust when the run merged it into angry (data.merge_disgust)."""
    data_cfg = config.get("data") if isinstance(config.get("data"), Mapping) else {}
    if data_cfg.get("merge_disgust"):
        return tuple(c for c in EMOTIONS if c != "disgust")
    return EMOTIONS


def _normalization(payload: Mapping[str, Any]) -> Tuple[float, float]:
    norm = payload.get("normalization") or {}
    return float(norm.get("mean", MEAN)), float(norm.get("std", STD))


def _load_failure(path: Path, exc: Exception) -> str:
    """Say whether the file is not a checkpoint at all, or one that weights_only loading refuses."""
    if isinstance(exc, pickle.UnpicklingError) and zipfile.is_zipfile(path):
        unsupported = [line.strip() for line in str(exc).splitlines() if "Unsupported global" in line]
        detail = unsupported[0] if unsupported else _first_line(exc)
        return (f"{path}: refused to load: it holds objects other than tensors and plain containers, "
                f"and loading them could run code ({detail})")
    if not zipfile.is_zipfile(path):
        return f"{path}: not a PyTorch checkpoint file (torch.save writes a zip archive; this is not one)"
    return f"{path}: not a PyTorch checkpoint file ({type(exc).__name__}: {_first_line(exc)[:200]})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
