"""Schedules: OneCycle peaks at the optimizer's lr, per-batch vs per-epoch stepping, clear option errors."""
import pytest
import torch

from fer_sweep.optim import Schedule, build_optimizer, build_schedule
from tests.test_techniques import linear_model, toy_fit


def _lrs(scheduler_cfg, epochs=4, steps=10, lr=0.01, val_losses=None):
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer({"name": "adam", "lr": lr}, model.parameters())
    schedule = build_schedule(scheduler_cfg, opt, epochs, steps)
    lrs = []
    for epoch in range(epochs):
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.after_batch()
        schedule.after_epoch(val_losses[epoch] if val_losses else 1.0)
    return lrs


def test_onecycle_peaks_at_max_lr():
    lrs = _lrs({"name": "onecycle", "pct_start": 0.3})
    assert max(lrs) == pytest.approx(0.01)
    assert lrs.index(max(lrs)) == pytest.approx(0.3 * 40, abs=1)
    assert lrs[0] == pytest.approx(0.01 / 25) and lrs[-1] < 1e-4


def test_none_is_constant():
    assert set(_lrs({"name": "none"})) == {0.01}


def test_cosine_warmup_then_decay():
    lrs = _lrs({"name": "cosine", "warmup_epochs": 1})
    assert lrs[:10] == sorted(lrs[:10]) and lrs[9] == pytest.approx(0.01)
    assert lrs[10:] == sorted(lrs[10:], reverse=True)


def test_step_is_per_epoch():
    lrs = _lrs({"name": "step", "step_size": 2, "gamma": 0.1})
    assert lrs[0] == lrs[19] == pytest.approx(0.01) and lrs[20] == pytest.approx(0.001)


def test_plateau_follows_val_loss():
    """ReduceLROnPlateau keeps the lr while the val loss falls and cuts it when it stalls; fit() hands the
    schedule each epoch's val loss."""
    plateau = {"name": "plateau", "patience": 0, "factor": 0.5}
    assert set(_lrs(plateau, val_losses=[4.0, 3.0, 2.0, 1.0])) == {0.01}
    lrs = _lrs(plateau, val_losses=[1.0, 1.0, 1.0, 1.0])
    assert lrs[-1] < lrs[0]

    seen = []

    class Recording(Schedule):
        def after_epoch(self, val_loss):
            seen.append(val_loss)

    torch.manual_seed(0)
    history = toy_fit(linear_model(), lr=1e-3, epochs=3, schedule=Recording())
    assert seen == [row["val_loss"] for row in history.epochs] and len(set(seen)) == 3


def test_unknown_option_names_the_key():
    with pytest.raises(ValueError, match=r"scheduler=onecycle has no option\(s\) \['max_lr'\]"):
        _lrs({"name": "onecycle", "max_lr": 0.1})
    with pytest.raises(KeyError, match="known schedulers: cosine, none, onecycle, plateau, step"):
        _lrs({"name": "exponential"})


def test_optimizers():
    params = [torch.nn.Parameter(torch.zeros(1))]
    assert type(build_optimizer({"name": "adamw", "lr": 0.1}, params, weight_decay=0.1)).__name__ == "AdamW"
    sgd = build_optimizer({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, params)
    assert sgd.param_groups[0]["nesterov"] is True
