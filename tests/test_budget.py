"""trainer.time_budget_s: the epochs that fit on this machine, measured before training (engine/budget.py)."""
import json
import logging
import math
import random

import numpy as np
import pandas as pd
import pytest
import torch

import fer_sweep.app as app
from fer_sweep.app import train
from fer_sweep.data.arrays import FERArrays
from fer_sweep.data.batches import DeviceBatches
from fer_sweep.engine import budget
from fer_sweep.engine.budget import (FINISH_S, SLACK, Deadline, EpochEstimate, epochs_within, estimate_epoch,
                                     record_plan)
from fer_sweep.engine.techniques import EMA
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
    random.seed(1)
    np.random.seed(1)
    streams_before = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    train_set, val_set, test_set = split(96, 0), split(40, 1), split(20, 2)
    estimate = estimate_epoch(model, lambda p: build_optimizer({"name": "adam", "lr": 1e-3}, p), train_set,
                              val_set, test_set, resolve_precision("fp32", torch.device("cpu")), batch_size=32,
                              tta="tencrop", steps=2, warmup=1, ema_decay=0.99,
                              options={"mixup_alpha": 0.2, "num_classes": 7})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(streams_before[0], torch.get_rng_state()) and streams_before[1] == random.getstate()
    assert np.array_equal(streams_before[2], np.random.get_state()[1])
    assert estimate.steps_per_epoch == 3 and estimate.step_s > 0 and estimate.val_s > 0
    assert estimate.test_s == pytest.approx(estimate.val_s * 10 * 20 / 40)  # ten views of half as many faces


def test_the_probe_times_the_loops_whole_batch_on_copies(monkeypatch):
    """A clock that moves only inside the EMA update (1 s) and the schedule's step (0.5 s): the probe's step time
    is their sum, so it times the batch as fit runs it; the probe's EMA and schedule are its own."""
    now = [0.0]
    ema_updates = []
    real_update = EMA.update

    def update(self, model):
        ema_updates.append(self)
        now[0] += 1.0
        real_update(self, model)

    monkeypatch.setattr(EMA, "update", update)
    stepped = []

    def make_schedule(optimizer):
        schedule = Schedule()
        schedule.after_batch = lambda: (stepped.append(optimizer), now.__setitem__(0, now[0] + 0.5))
        return schedule

    torch.manual_seed(0)
    model = linear_model()
    run_optimizer = build_optimizer({"name": "adam", "lr": 1e-3}, model.parameters())
    run_ema = EMA(model, 0.9)
    estimate = estimate_epoch(model, lambda p: build_optimizer({"name": "adam", "lr": 1e-3}, p), split(96, 0),
                              split(40, 1), split(20, 2), resolve_precision("fp32", torch.device("cpu")), batch_size=16,
                              steps=3, warmup=1, make_schedule=make_schedule, ema_decay=0.9, clock=lambda: now[0])
    assert estimate.step_s == 1.5 and estimate.val_s == 0.0
    assert len(ema_updates) == len(stepped) == 4 and run_ema not in ema_updates  # warm-up + steps, on copies
    assert all(opt is not run_optimizer for opt in stepped) and run_ema.step == 0


def history_without_times(run_dir):
    return pd.read_csv(run_dir / "history.csv").drop(columns="epoch_time_s")


def test_a_budget_that_never_limits_trains_the_same_random_run_as_fixed_epochs(make_cfg, tmp_path):
    """cnn draws dropout masks from torch's global generator: the probe's own batches must leave it (and the
    run's other streams) as they were, or the budgeted run trains on other masks than its fixed-epoch twin."""
    common = [*FAST, "model=cnn", "trainer.plots=false", "trainer.precision=fp32", "trainer.device=cpu",
              "trainer.ema_decay=0.9", "augmentation=crop_flip"]
    fixed = train(make_cfg(*common, output_dir=tmp_path / "fixed"))
    budgeted = train(make_cfg(*common, "trainer.time_budget_s=1000000", output_dir=tmp_path / "budgeted"))
    assert budgeted["epochs_run"] == fixed["epochs_run"] == 2
    pd.testing.assert_frame_equal(history_without_times(tmp_path / "budgeted"),
                                  history_without_times(tmp_path / "fixed"))
    assert budgeted["test_acc"] == fixed["test_acc"]


def test_a_budget_that_limits_trains_fewer_epochs_than_the_cap_and_ends_in_time(make_cfg, tmp_path, monkeypatch):
    """A probe that says epochs take a twentieth of their time plans the cap (50): the Deadline sees the real
    pace and stops the run in time; result.json, the kept checkpoint and MLflow's params say the plan that ran."""
    pytest.importorskip("mlflow")
    real = app.estimate_epoch

    def optimistic(*args, **kwargs):
        estimate = real(*args, **kwargs)
        return EpochEstimate(estimate.step_s / 20, estimate.steps_per_epoch, estimate.val_s / 20, estimate.test_s)

    monkeypatch.setattr(app, "estimate_epoch", optimistic)
    budget_s = 45  # loading, the probe and the trackers take ~10 s of it on a shared 2-core CPU
    cfg = make_cfg(*FAST, "trainer.epochs=50", f"trainer.time_budget_s={budget_s}", "trainer.plots=false",
                   "logger=many")
    result = train(cfg, tmp_path / "r")
    assert 1 <= result["epochs_run"] < 50 and result["epochs"] == result["epochs_run"] == cfg.trainer.epochs
    assert result["train_time_s"] <= budget_s
    saved = torch.load(tmp_path / "r" / CHECKPOINT_FILE, weights_only=True)
    assert saved["config"]["trainer"]["epochs"] == result["epochs_run"]  # not the plan of its epoch

    from tests.test_trackers import experiments, mlflow_client
    client = mlflow_client(tmp_path / "r" / "mlflow.db")
    [run] = client.search_runs([experiments(client)[0].experiment_id])
    assert run.data.params["trainer.epochs"] == str(result["epochs_run"])  # the plan, not the cap

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["trainer.epochs"].number_value == result["epochs_run"]


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


def replay(deadline, epoch_seconds, now):
    """Epochs of the given wall times on a simulated clock (now[0]) until the deadline's plan is done: the
    epochs run and the epochs at which the schedule was re-fitted."""
    deadline.on_train_start(5)
    refits, epoch = [], 0
    for seconds in epoch_seconds:
        if epoch >= deadline.epochs:
            break
        epoch += 1
        now[0] += seconds
        before = deadline.refits
        assert deadline.on_epoch_end(epoch, {}) is False  # the loop ends at the plan; the Deadline never stops it
        if deadline.refits > before:
            refits.append(epoch)
    return epoch, refits


def test_deadline_replans_to_the_pace_fewer_epochs_when_slow_more_up_to_the_cap_when_fast():
    now, retargets, plans = [0.0], [], []
    # planned 12 at the probe's 7 s, but 10 s an epoch: 9 fit in the 90 s before the reserve
    slow = Deadline(budget_s=100, start=0.0, epochs=12, reserve_s=10, schedule=Schedule(retarget=retargets.append),
                    steps_per_epoch=5, clock=lambda: now[0], on_replan=plans.append, epoch_s=7.0)
    ran, refits = replay(slow, [10.0] * 20, now)
    assert ran == slow.epochs == 9 and now[0] <= 90
    assert plans == [10, 9] and retargets == [50, 45]  # the pace (the probe's 7 s counting as one epoch) converges

    now[0], retargets[:] = 0.0, []  # planned 10 at the probe's 17 s, but 5 s an epoch: more, up to the cap, once
    fast = Deadline(budget_s=200, start=0.0, epochs=10, reserve_s=10, schedule=Schedule(retarget=retargets.append),
                    steps_per_epoch=5, cap=24, clock=lambda: now[0], epoch_s=17.0)
    assert replay(fast, [5.0] * 40, now) == (24, [10]) and retargets == [120]  # not before SETTLE_EPOCHS

    now[0], retargets[:] = 0.0, []  # one more epoch fits, not two: the plan stays
    steady = Deadline(budget_s=100, start=0.0, epochs=8, reserve_s=10, schedule=Schedule(retarget=retargets.append),
                      steps_per_epoch=5, cap=20, clock=lambda: now[0], epoch_s=10.0)
    assert replay(steady, [10.0] * 20, now)[0] == 8 and retargets == []


MEAN_S, BUDGET_S, RESERVE_S, LOADING_S = 45.0, 3600.0, 40.0, 30.0  # an hour of 45 s epochs, as experiment=fast


def hour_run(seed, slow_from=None, probe_s=MEAN_S):
    """An hour's budget replayed with epochs drawn uniformly within +-10% of 45 s (seeded), 30% slower from epoch
    `slow_from` on: (epochs run, epochs re-fitted at, the first plan, when training ended)."""
    rng, now = random.Random(seed), [LOADING_S]
    first = epochs_within(BUDGET_S, LOADING_S, EpochEstimate(probe_s, 1, 0.0, RESERVE_S - FINISH_S), cap=1000)
    deadline = Deadline(BUDGET_S, 0.0, first, RESERVE_S, Schedule(), 10, cap=1000, clock=lambda: now[0],
                        epoch_s=probe_s)
    times = [MEAN_S * (1 + rng.uniform(-0.1, 0.1)) * (1.3 if slow_from and e >= slow_from else 1.0)
             for e in range(1, 1000)]
    ran, refits = replay(deadline, times, now)
    return ran, refits, first, now[0]


@pytest.mark.parametrize("seed", range(12))
def test_the_plan_settles_under_ordinary_noise_and_the_run_ends_within_the_budget(seed):
    """The issue's run moved its plan 11 times in 13 epochs; under +-10% noise the plan now changes at most once
    in any ten epochs, and training still ends before the reserve for the test pass and files."""
    ran, refits, first, end = hour_run(seed)
    assert all(b - a >= 10 for a, b in zip(refits, refits[1:])), refits
    assert len(refits) <= 2 and abs(ran - first) <= 3, (ran, first, refits)
    assert end <= BUDGET_S - RESERVE_S + 0.1 * MEAN_S and end + FINISH_S <= BUDGET_S  # the last epoch's noise


@pytest.mark.parametrize("seed", range(4))
def test_a_real_slowdown_still_shrinks_the_plan(seed):
    ran, refits, first, end = hour_run(seed, slow_from=5)
    assert refits and refits[0] <= 8  # seen within a few epochs of the slowdown
    assert ran < first * 0.85 and end <= BUDGET_S - RESERVE_S + 0.13 * MEAN_S


def test_an_optimistic_probe_is_corrected_once():
    """The probe said 40 s, epochs take 45 s: one shrink early, not a plan that keeps moving."""
    for seed in range(6):
        ran, refits, first, end = hour_run(seed, probe_s=40.0)
        assert ran < first and all(b - a >= 10 for a, b in zip(refits, refits[1:])), refits
        assert end <= BUDGET_S - RESERVE_S + 0.1 * MEAN_S


def test_deadline_state_round_trips_and_a_continued_run_keeps_its_plan():
    now = [0.0]
    first = Deadline(budget_s=3600, start=0.0, epochs=75, reserve_s=40, schedule=Schedule(), steps_per_epoch=10,
                     cap=200, clock=lambda: now[0], epoch_s=45.0, machine="AMD EPYC 9B14 (native bf16)")
    replay(first, [55.0] * 8, now)  # epochs slower than the probe said: re-planned to fewer
    state = json.loads(json.dumps(first.state_dict()))  # plain values: last.pt and logs take it as it is
    assert state["epochs"] == first.epochs < 75 and state["epoch"] == 8 and len(state["times"]) == 8
    assert state["spent_s"] == pytest.approx(440.0) and state["last_replan"] == first.last_replan > 0

    later, retargets, plans = [1000.0], [], []  # continued: a new process, its clock elsewhere
    again = Deadline(budget_s=3600, start=1000.0, epochs=80, reserve_s=40, schedule=Schedule(
        retarget=retargets.append), steps_per_epoch=10, cap=200, clock=lambda: later[0], epoch_s=44.0,
        machine="AMD EPYC 9B14 (native bf16)", on_replan=plans.append)
    again.load_state_dict(state)
    assert again.epochs == first.epochs and plans == [first.epochs] and retargets == [first.epochs * 10]
    assert again.times == first.times and again.last_replan == first.last_replan and again.epoch_s == 45.0
    later[0] += 20.0  # this attempt's loading and probe count too
    assert again.elapsed(later[0]) == pytest.approx(460.0)
    assert again.state_dict()["epochs"] == state["epochs"]


def test_a_run_continued_on_another_machine_kind_replans_and_says_so(caplog):
    now = [0.0]
    first = Deadline(budget_s=3600, start=0.0, epochs=75, reserve_s=40, schedule=Schedule(), steps_per_epoch=10,
                     cap=200, clock=lambda: now[0], epoch_s=45.0, machine="AMD EPYC 9B14 (native bf16)")
    replay(first, [45.0] * 10, now)
    later, plans = [0.0], []
    again = Deadline(budget_s=3600, start=0.0, epochs=200, reserve_s=40, schedule=Schedule(), steps_per_epoch=10,
                     cap=200, clock=lambda: later[0], epoch_s=30.0, machine="Intel Xeon Platinum 8481C (amx)",
                     on_replan=plans.append)
    with caplog.at_level(logging.INFO, logger=budget.__name__):
        again.load_state_dict(first.state_dict())
    assert ("continued on another machine kind (AMD EPYC 9B14 (native bf16) -> Intel Xeon Platinum 8481C (amx)): "
            "re-planning the time budget") in caplog.text
    left = 3600 - 450 - 40  # the first machine's 10 epochs used 450 s; this one's probe says 30 s an epoch
    assert again.epochs == 10 + math.floor(left * SLACK / 30.0) and plans[-1] == again.epochs
    assert again.times == [] and again.last_replan == 10


def test_record_plan_rewrites_the_kept_checkpoints_config(tmp_path):
    path = tmp_path / "best.pt"
    torch.save({"config": {"trainer": {"epochs": 200}}, "state_dict": {"w": torch.ones(2)}, "epoch": 3}, path)
    record_plan(path, 7)
    saved = torch.load(path, weights_only=True)
    assert saved["config"]["trainer"]["epochs"] == 7 and saved["epoch"] == 3 and torch.equal(saved["state_dict"]["w"],
                                                                                            torch.ones(2))


def test_fit_trains_the_epochs_a_growing_plan_adds():
    """A plan that grows mid-run (epochs faster than the probe said) trains to its new end: fit reads the plan
    before each epoch, so the re-fitted schedule anneals fully instead of stopping at the first plan's count."""
    now = [0.0]
    retargets, plan = [], {"epochs": 10}

    def tick() -> float:  # 5 s an epoch, as the probe said: after 10 epochs the cap of 12 fits with room to spare
        now[0] += 5.0
        return now[0]

    deadline = Deadline(budget_s=200, start=0.0, epochs=10, reserve_s=10,
                        schedule=Schedule(retarget=retargets.append), steps_per_epoch=5, cap=12, clock=tick,
                        on_replan=lambda epochs: plan.update(epochs=epochs), epoch_s=5.0)
    history = toy_fit(linear_model(), lr=1e-3, epochs=lambda: plan["epochs"], callbacks=[deadline])
    assert [m["epoch"] for m in history.epochs] == list(range(1, 13)) and plan["epochs"] == 12
    assert retargets == [60] and not history.stopped_early
