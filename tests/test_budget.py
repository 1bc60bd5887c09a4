"""trainer.time_budget_s: the epochs that fit on this machine, measured before training (engine/budget.py)."""
import json

import numpy as np
import pytest
import torch

from fer_sweep.app import train
from fer_sweep.data.arrays import FERArrays
from fer_sweep.data.batches import DeviceBatches
from fer_sweep.engine.budget import FINISH_S, SLACK, Deadline, EpochEstimate, epochs_within, estimate_epoch
from fer_sweep.engine.precision import resolve_precision
from fer_sweep.errors import ConfigError
from fer_sweep.models import build_model
from fer_sweep.optim import Schedule, build_optimizer, build_schedule
from fer_sweep.results import CHECKPOINT_FILE
from tests.conftest import FAST, run_cli
from tests.test_techniques import linear_model, toy_fit


def split(n: int, seed: int) -> DeviceBatches:
    rng = np.random.default_rng(seed)
    return DeviceBatches(FERArrays(rng.integers(0, 256, (n, 48, 48), dtype=np.uint8),
                                   rng.integers(0, 7, n).astype(np.int64), np.zeros(n, np.int8), source="test"))


def test_epochs_within_counts_whole_epochs_after_the_time_used_and_the_test_pass():
    estimate = EpochEstimate(step_s=0.1, steps_per_epoch=100, val_s=2.0, test_s=20.0)  # 12 s an epoch
    left = 600 - 30 - 20 - FINISH_S
    assert epochs_within(600, 30, estimate, cap=1000) == int(left * SLACK // 12)
    assert epochs_within(600, 30, estimate, cap=5) == 5
    with pytest.raises(ConfigError, match=r"trainer.time_budget_s=40: an epoch takes about 12 s"):
        epochs_within(40, 5, estimate, cap=10)


def test_estimate_epoch_leaves_the_model_and_the_random_streams_alone():
    torch.manual_seed(0)
    model = build_model("resnet9")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    train_set, val_set, test_set = split(96, 0), split(40, 1), split(20, 2)
    estimate = estimate_epoch(model, lambda p: build_optimizer({"name": "adam", "lr": 1e-3}, p), train_set,
                              val_set, test_set, resolve_precision("fp32", torch.device("cpu")), batch_size=32,
                              tta="tencrop", steps=2, warmup=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng_before, torch.get_rng_state())
    assert estimate.steps_per_epoch == 3 and estimate.step_s > 0 and estimate.val_s > 0
    assert estimate.test_s == pytest.approx(estimate.val_s * 10 * 20 / 40)  # ten views of half as many faces


def test_a_budget_sets_the_epochs_that_ran_and_says_so(make_cfg, tmp_path):
    cfg = make_cfg(*FAST, "trainer.epochs=3", "trainer.time_budget_s=600", "trainer.plots=false")
    result = train(cfg, tmp_path / "r")
    assert result["epochs"] == result["epochs_run"] == 3 and result["time_budget_s"] == 600  # the cap
    assert cfg.trainer.epochs == 3
    saved = torch.load(tmp_path / "r" / CHECKPOINT_FILE, weights_only=True)
    assert saved["config"]["trainer"]["epochs"] == 3  # the checkpoint's config says the plan that ran


def test_too_small_a_budget_exits_2_naming_the_key(tmp_path):
    proc = run_cli([*FAST, "trainer.time_budget_s=1", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "trainer.time_budget_s=1: an epoch takes about" in proc.stderr
    assert not (tmp_path / "result.json").exists() or json.loads((tmp_path / "result.json").read_text())[
        "status"] != "completed"


@pytest.mark.parametrize("name", ["onecycle", "cosine"])
def test_a_retargeted_schedule_continues_as_one_built_for_the_new_length(name):
    """After retarget, every later step's lr (and OneCycle's momentum) is the one a schedule built for the new
    length gives at that step."""
    def make(epochs):
        optimizer = build_optimizer({"name": "adam", "lr": 1e-2}, [torch.nn.Parameter(torch.zeros(1))])
        optimizer.step()  # the order the loop keeps (no warning about the scheduler stepping first)
        return optimizer, build_schedule({"name": name}, optimizer, epochs, steps_per_epoch=10)

    (opt_a, long), (opt_b, short) = make(10), make(6)
    for _ in range(23):
        long.after_batch()
        short.after_batch()
    long.set_total_steps(60)
    for _ in range(60 - 23 - 1):
        long.after_batch()
        short.after_batch()
        assert opt_a.param_groups[0]["lr"] == pytest.approx(opt_b.param_groups[0]["lr"])
        assert opt_a.param_groups[0]["betas"] == pytest.approx(opt_b.param_groups[0]["betas"])


def test_deadline_replans_to_the_pace_fewer_epochs_when_slow_more_up_to_the_cap_when_fast():
    now = [0.0]
    retargets = []

    def run(deadline, epoch_seconds):
        deadline.on_train_start(5)
        for epoch, seconds in enumerate(epoch_seconds, 1):
            now[0] += seconds
            if deadline.on_epoch_end(epoch, {}):
                return epoch

    now[0] = 0.0  # 10 s an epoch: 9 fit in the 90 s before the reserve, not the 10 planned
    plans = []
    slow = Deadline(budget_s=100, start=0.0, epochs=10, reserve_s=10, schedule=Schedule(retarget=retargets.append),
                    steps_per_epoch=5, clock=lambda: now[0], on_replan=plans.append)
    assert run(slow, [10.0] * 10) == 9 and slow.epochs == 9 and retargets == [45]
    assert plans == [9]  # the run's config hears of each new plan

    retargets.clear()  # planned 4 at a guessed 20 s, but 5 s an epoch: room for more, up to the cap of 12
    now[0] = 0.0
    fast = Deadline(budget_s=100, start=0.0, epochs=4, reserve_s=10, schedule=Schedule(retarget=retargets.append),
                    steps_per_epoch=5, cap=12, clock=lambda: now[0])
    assert run(fast, [5.0] * 20) == 12 and retargets == [60]

    retargets.clear()  # one more epoch fits, not two: the plan stays
    now[0] = 0.0
    steady = Deadline(budget_s=100, start=0.0, epochs=8, reserve_s=10, schedule=Schedule(retarget=retargets.append),
                      steps_per_epoch=5, cap=20, clock=lambda: now[0])
    assert run(steady, [10.0] * 20) == 8 and retargets == []


def test_fit_trains_the_epochs_a_growing_plan_adds():
    """A plan that grows mid-run (epochs faster than the probe said) trains to its new end: fit reads the plan
    before each epoch, so the re-fitted schedule anneals fully instead of stopping at the first plan's count."""
    now = [0.0]
    retargets, plan = [], {"epochs": 2}

    def tick() -> float:  # 5 s an epoch: 17 fit in the 85 s left before the reserve, capped at 4
        now[0] += 5.0
        return now[0]

    deadline = Deadline(budget_s=100, start=0.0, epochs=2, reserve_s=10,
                        schedule=Schedule(retarget=retargets.append), steps_per_epoch=5, cap=4, clock=tick,
                        on_replan=lambda epochs: plan.update(epochs=epochs))
    history = toy_fit(linear_model(), lr=1e-3, epochs=lambda: plan["epochs"], callbacks=[deadline])
    assert [m["epoch"] for m in history.epochs] == [1, 2, 3, 4] and plan["epochs"] == 4 and retargets == [20]
