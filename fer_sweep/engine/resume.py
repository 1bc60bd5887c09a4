"""Runs that survive interruption: `checkpoints/last.pt`, written at the end of every epoch, holds what a
bit-identical continuation needs, and the same command on the same run folder continues from it.

last.pt holds: the model, optimizer, schedule (engine's optim.Schedule) and EMA states; the history so far
(epoch rows and the lr of every batch); the planned epoch count; the train time spent over every attempt and how
many restarts there were; the state of every run callback that has one (the protocol of engine/callbacks.py:
best-so-far, the augmentation finish, early stopping, the time budget's deadline, the trackers' run ids, the
Optuna trial's reports); every random state (python, numpy, torch CPU and CUDA, the run's batch generator); the
data's fingerprint; the Optuna trial number; and the resume key (app.config_hash) with the config it hashes, so
that a folder holding another config's run is refused with the settings that differ.

trainer.resume: `auto` continues a run folder's last.pt when its key matches; `never` removes it and starts
over. A completed run removes its last.pt (best.pt stays): it is skipped as completed anyway.
"""
from __future__ import annotations

import logging
import random
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch

from fer_sweep.errors import ConfigError, UserError
from fer_sweep.results import atomic_torch_save

log = logging.getLogger("fer_sweep")

LAST_FILE = "checkpoints/last.pt"
RESUME_CHOICES = ("auto", "never")
FORMAT = 1  # last.pt's layout version
MAX_DIFFS = 6  # settings named in a refusal


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run: last.pt holds the last completed epoch; exit 128 + the signal's number.
    A KeyboardInterrupt, so whatever treats Ctrl-C as the user stopping everything (Hydra, launchers) does."""

    def __init__(self, signum: int = signal.SIGINT, epoch: Optional[int] = None, planned: Optional[int] = None):
        super().__init__(signum)
        self.signum, self.epoch, self.planned = int(signum), epoch, planned

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def message(self) -> str:
        if self.epoch is None:
            return "interrupted before training started; run the same command to start again"
        return f"interrupted at epoch {self.epoch} of {self.planned}; run the same command to continue"


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises Interrupted, as Ctrl-C raises KeyboardInterrupt, while the block runs; only where nobody
    else handles SIGTERM (submitit's job process does: its own handler stays) and in the main thread."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def resume_mode(trainer_cfg: Mapping[str, Any]) -> str:
    mode = trainer_cfg.get("resume", "auto")
    if mode not in RESUME_CHOICES:
        raise ConfigError(f"trainer.resume={mode!r}; expected auto (continue the run folder's last.pt) or never")
    return str(mode)


def flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(node, Mapping) and node:
        out: Dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """`trainer.epochs 6 -> 8, seed 0 -> 1`: the settings whose values differ, in the config's order."""
    old, new = flatten(before), flatten(now)
    keys = list(dict.fromkeys([*new, *old]))
    diffs = [f"{k} {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in keys if old.get(k) != new.get(k)]
    if len(diffs) > MAX_DIFFS:
        diffs = diffs[:MAX_DIFFS] + [f"and {len(diffs) - MAX_DIFFS} more"]
    return ", ".join(diffs) or "the data or its resolution on this machine"


def read_state(path: Path) -> Dict[str, Any]:
    """last.pt's content; an unreadable file is the user's to remove, named with the way out."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, another format, another program's file
        raise UserError(f"{path} is not a readable last.pt ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                        "use another run folder or trainer.resume=never") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a last.pt of this fer_sweep version; use another run folder or "
                        "trainer.resume=never")
    return state


def find_state(out: Path, key: str, config: Mapping[str, Any], mode: str) -> Optional[Dict[str, Any]]:
    """The run state to continue from in run folder `out`: None for a fresh start (no last.pt, or mode never,
    which removes it); a UserError when last.pt holds a run of another config."""
    path = Path(out) / LAST_FILE
    if mode == "never":
        path.unlink(missing_ok=True)
        return None
    if not path.is_file():
        return None
    state = read_state(path)
    if state.get("key") != key:
        raise UserError(f"{path} holds a run of another config (differs in: "
                        f"{differences(state.get('config') or {}, config)}); use another run folder or "
                        "trainer.resume=never")
    state["path"] = str(path)
    return state


def adopt_state(source_dir: Path, out: Path, key: str) -> bool:
    """A retried Optuna trial continues the dead trial's run: copy last.pt and best.pt from its folder when
    they hold this config's run. The trackers' runs are the dead trial's: the retry starts its own."""
    import shutil

    source = Path(source_dir) / LAST_FILE
    target = Path(out) / LAST_FILE
    if target.exists() or not source.is_file():
        return False
    try:
        state = read_state(source)
    except UserError as exc:
        log.warning("not continuing from %s: %s", source, exc)
        return False
    if state.get("key") != key:
        return False
    state["callbacks"] = {k: v for k, v in (state.get("callbacks") or {}).items() if k != "trackers"}
    best = Path(source_dir) / "checkpoints" / "best.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    if best.is_file():
        shutil.copyfile(best, target.parent / "best.pt")
    atomic_torch_save(state, target)
    log.info("continuing trial's run from %s", source)
    return True


def random_states(generator: Optional[torch.Generator]) -> Dict[str, Any]:
    """Every random stream a run draws from, in a form torch.load(weights_only=True) reads back."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generator": generator.get_state() if generator is not None else None}


def set_random_states(states: Mapping[str, Any], generator: Optional[torch.Generator]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = states["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["gauss"]))
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if generator is not None and states.get("generator") is not None:
        generator.set_state(states["generator"])


def stateful(callbacks: Sequence[Any]) -> Dict[str, Any]:
    """The callbacks with a state_dict/load_state_dict, by a stable name (`state_key`, else the class name)."""
    named: Dict[str, Any] = {}
    for cb in callbacks:
        if not (hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict")):
            continue
        key = getattr(cb, "state_key", type(cb).__name__)
        name, n = key, 1
        while name in named:
            n += 1
            name = f"{key}.{n}"
        named[name] = cb
    return named


def load_callback_states(callbacks: Sequence[Any], states: Mapping[str, Any]) -> None:
    for name, cb in stateful(callbacks).items():
        if name in states:
            cb.load_state_dict(states[name])


class RunStateSaver:
    """fit()'s save_state: writes last.pt atomically after every epoch (and its callbacks: best.pt first)."""

    def __init__(self, path: Path, *, key: str, config: Mapping[str, Any], model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, schedule: Any, ema: Any, generator: Optional[torch.Generator],
                 callbacks: Sequence[Any], planned: Callable[[], int], train_time_s: Callable[[], float],
                 restarts: int, extra: Optional[Dict[str, Any]] = None):
        self.path, self.key, self.config = Path(path), key, dict(config)
        self.model, self.optimizer, self.schedule, self.ema, self.generator = model, optimizer, schedule, ema, \
            generator
        self.callbacks, self.planned, self.train_time_s, self.restarts = list(callbacks), planned, train_time_s, \
            restarts
        self.extra = dict(extra or {})

    def __call__(self, history: Any) -> None:
        state = {"format": FORMAT, "key": self.key, "config": self.config, "epoch": len(history.epochs),
                 "planned": int(self.planned()), "train_time_s": float(self.train_time_s()),
                 "restarts": self.restarts,
                 "history": {"epochs": list(history.epochs), "batch_lr": list(history.batch_lr),
                             "status": history.status, "stopped_early": history.stopped_early},
                 "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "schedule": self.schedule.state_dict(),
                 "ema": ({"model": self.ema.model.state_dict(), "step": self.ema.step}
                         if self.ema is not None else None),
                 "callbacks": {name: cb.state_dict() for name, cb in stateful(self.callbacks).items()},
                 "random": random_states(self.generator), **self.extra}
        atomic_torch_save(state, self.path)


def restore(state: Mapping[str, Any], *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
            ema: Any, generator: Optional[torch.Generator], callbacks: Sequence[Any]) -> None:
    """Put a run back where last.pt left it; last of all the random streams, so nothing set up draws after."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    if ema is not None and state.get("ema") is not None:
        ema.model.load_state_dict(state["ema"]["model"])
        ema.step = int(state["ema"]["step"])
    load_callback_states(callbacks, state.get("callbacks") or {})
    set_random_states(state["random"], generator)


def history_of(state: Mapping[str, Any], history_cls: Callable[..., Any]) -> Any:
    saved = state["history"]
    return history_cls(epochs=list(saved["epochs"]), batch_lr=list(saved["batch_lr"]), status=saved["status"],
                       stopped_early=bool(saved["stopped_early"]))


def remove_state(out: Path) -> None:
    (Path(out) / LAST_FILE).unlink(missing_ok=True)
