"""EMA, mixup/cutmix, the augmentation finish, test-time augmentation and class weights; a run with them all."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_sweep import app
from fer_sweep.app import train
from fer_sweep.data.arrays import FERArrays
from fer_sweep.data.batches import DeviceBatches
from fer_sweep.engine import loop
from fer_sweep.engine.callbacks import Callback
from fer_sweep.engine.precision import Precision
from fer_sweep.augment import build_augmentation
from fer_sweep.engine.techniques import (EMA, AugmentationFinish, balanced_class_weights, mix_batch,
                                         tta_views)
from fer_sweep.errors import ConfigError
from fer_sweep.optim import Schedule, build_optimizer
from tests.conftest import FAST

FP32 = Precision(torch.device("cpu"), "fp32")


def toy_batches(n=140, seed=0):
    """Linearly separable 48x48 uint8 faces: class c is a bright band at rows 6c..6c+5 over noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 7
    images = rng.integers(0, 100, (n, 48, 48)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 6 * c:6 * c + 6] += 150
    return DeviceBatches(FERArrays(images, labels.astype(np.int64), np.zeros(n, dtype=np.int8)))


def linear_model(band_detector=False):
    """A linear classifier; band_detector=True sets it to sum each class's band (near-perfect on toy_batches)."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))
    if band_detector:
        with torch.no_grad():
            model[1].bias.zero_()
            model[1].weight.copy_(torch.stack([(torch.arange(48) // 6 == c).float().repeat_interleave(48)
                                               for c in range(7)]))
    return model


def toy_fit(model, lr=0.0, epochs=1, schedule=None, **kwargs):
    """fit() on toy_batches in fp32, batches of 16; lr 0 (SGD) keeps the model as it is."""
    optimizer = build_optimizer({"name": "sgd" if lr == 0 else "adam", "lr": lr}, model.parameters())
    return loop.fit(model, toy_batches(), toy_batches(70, seed=1), optimizer, schedule or Schedule(), FP32,
                    epochs=epochs, batch_size=16, generator=torch.Generator().manual_seed(0), num_classes=7,
                    **kwargs)


def test_ema_decay_warms_up():
    """decay = min(decay, (1 + step) / (10 + step)): the first update takes 90% of the weights."""
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    before = ema.model.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, before + 0.9)
    for _ in range(10):
        ema.update(model)
    assert ema.current_decay() == 0.5


def test_ema_of_a_short_run_scores_like_the_raw_model():
    """27 steps at decay 0.999: without the warm-up 97% of the random init would remain (near chance)."""
    torch.manual_seed(0)
    model = linear_model()
    ema = EMA(model, decay=0.999)
    toy_fit(model, lr=1e-3, epochs=3, ema=ema)
    val = toy_batches(70, seed=1)
    raw_acc, ema_acc = (loop.evaluate(m, val, FP32).acc for m in (model, ema.model))
    assert raw_acc > 0.9 and abs(ema_acc - raw_acc) <= 0.05


@pytest.mark.parametrize("mixup, cutmix", [(0.4, 0.0), (0.0, 1.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mix_batch_soft_targets(mixup, cutmix, seed):
    """Soft targets = lam * onehot + (1 - lam) * onehot[perm], with lam read off the mixed images: the mixup
    ratio, or cutmix's kept-area fraction. mix[i, j] is the share of image j in mixed image i."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(16) % 7
    if mixup:  # image j is one bright pixel at j: mixed pixel j holds image j's weight
        x = torch.eye(16, 48 * 48).reshape(16, 1, 48, 48)
    else:  # image j is the constant j + 1: the area showing j + 1 is image j's share
        x = (torch.arange(16.0) + 1).reshape(16, 1, 1, 1).expand(16, 1, 48, 48)
    mixed, targets = mix_batch(x, labels, 7, mixup, cutmix, g)
    flat = mixed.flatten(1)
    if mixup:
        mix = flat[:, :16]
        assert not flat[:, 16:].any()
    else:
        mix = torch.stack([(flat == j + 1).float().mean(1) for j in range(16)], 1)
    assert torch.allclose(mix.sum(1), torch.ones(16))
    lam = float(mix.diagonal().min())  # one ratio for the batch: every share is lam, 1 - lam or 1 (perm[i] == i)
    assert 0 < lam < 1 and all(min(abs(v - w) for w in (lam, 1 - lam, 1)) < 1e-6 for v in mix[mix > 0].tolist())
    assert torch.allclose(targets, mix @ F.one_hot(labels, 7).float(), atol=1e-6)


def test_tta_views():
    x = torch.randn(3, 1, 48, 48)
    assert len(tta_views(x, "none")) == 1
    flip = tta_views(x, "flip")
    assert torch.equal(flip[1], torch.flip(x, dims=[-1]))
    ten = tta_views(x, "tencrop")
    assert len(ten) == 10 and all(v.shape == x.shape for v in ten)
    shift = tta_views(x, "tenshift")
    assert len(shift) == 10 and all(v.shape == x.shape for v in shift)
    assert torch.equal(shift[8], x) and torch.equal(shift[9], torch.flip(x, dims=[-1]))  # the centre: no zoom
    assert torch.equal(shift[0][..., 2:, 2:], x[..., :-2, :-2])  # top-left window: the face moved 2 px down-right
    assert torch.equal(shift[0][..., 0, 2:], x[..., 2, :-2])  # its new top rows mirror the face's (reflect)
    with pytest.raises(ValueError, match="unknown trainer.tta"):
        tta_views(x, "twelve")


def test_balanced_weights():
    w = balanced_class_weights(torch.tensor([0, 0, 0, 1]), 2)
    assert w.tolist() == pytest.approx([4 / 6, 2.0])


def test_train_loss_is_the_per_sample_mean_with_class_weights():
    """Not PyTorch's weighted 'mean' (sum of w * loss / sum of w per batch): lr 0 keeps the model fixed."""
    torch.manual_seed(0)
    model, data = linear_model(), toy_batches()
    weights = torch.tensor([0.5, 1.0, 2.0, 3.0, 1.0, 0.25, 4.0])
    history = toy_fit(model, class_weights=weights)
    logits = loop.predict_logits(model, data.images.unsqueeze(1), FP32)
    expected = (weights[data.labels] * F.cross_entropy(logits, data.labels, reduction="none")).mean()
    assert history.epochs[0]["train_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_train_acc_of_mixed_batches_scores_the_dominant_target(monkeypatch):
    """A band detector predicts the dominant face of each mixup: scored against the soft targets' argmax it is
    right nearly always; against the unmixed labels it would be wrong wherever the other image dominates."""
    batches = []

    def recording_mix(*args, **kwargs):
        batches.append(mix_batch(*args, **kwargs))
        return batches[-1]

    monkeypatch.setattr(loop, "mix_batch", recording_mix)
    model = linear_model(band_detector=True)
    history = toy_fit(model, mixup_alpha=1.0)
    with torch.no_grad():
        hits = sum(int((model(x).argmax(1) == t.argmax(1)).sum()) for x, t in batches)
    assert history.epochs[0]["train_acc"] == pytest.approx(hits / 140) and hits / 140 > 0.9


def test_training_with_every_technique(make_cfg, tmp_path, monkeypatch):
    """Every technique does something: the batch is mixed, class weights change the loss, TTA the logits, and
    the EMA weights are not the raw ones."""
    seen = {"mixed": [], "weighted": [], "tta_changes": [], "ema": []}

    class RecordingEMA(EMA):
        def __init__(self, model, decay):
            super().__init__(model, decay)
            self.raw = model
            seen["ema"].append(self)

    def mix(x, labels, *args, **kwargs):
        mixed, targets = mix_batch(x, labels, *args, **kwargs)
        seen["mixed"].append(not torch.equal(mixed, x) and bool((targets.max(1).values < 1).any()))
        return mixed, targets

    def step(model, x, targets, optimizer, precision, class_weights, label_smoothing, *args,
             train_step=loop.train_step):
        loss, logits = train_step(model, x, targets, optimizer, precision, class_weights, label_smoothing,
                                       *args)
        unweighted = F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)
        seen["weighted"].append(class_weights is not None and not torch.isclose(loss, unweighted))
        return loss, logits

    def predict(model, images, precision, tta="none", predict_logits=loop.predict_logits):
        logits = predict_logits(model, images, precision, tta)
        if tta != "none":
            seen["tta_changes"].append(not torch.allclose(logits, predict_logits(model, images, precision)))
        return logits

    monkeypatch.setattr(app, "EMA", RecordingEMA)
    monkeypatch.setattr(loop, "mix_batch", mix)
    monkeypatch.setattr(loop, "train_step", step)
    monkeypatch.setattr(loop, "predict_logits", predict)
    result = train(make_cfg(*FAST, "trainer.ema_decay=0.9", "trainer.mixup_alpha=0.2", "trainer.cutmix_alpha=1.0",
                            "trainer.class_weights=balanced", "trainer.tta=tencrop", "trainer.label_smoothing=0.1",
                            "augmentation=strong", "optimizer=sgd", "scheduler=cosine", "scheduler.warmup_epochs=1",
                            "trainer.plots=false"), tmp_path / "t")
    assert result["status"] == "completed" and result["tta"] == "tencrop" and 0 <= result["test_acc"] <= 1
    assert seen["mixed"] and all(seen["mixed"])
    assert seen["weighted"] and all(seen["weighted"])
    assert seen["tta_changes"] and all(seen["tta_changes"])
    (ema,) = seen["ema"]
    assert not all(torch.equal(e, r) for e, r in zip(ema.model.parameters(), ema.raw.parameters()))


def test_validation_uses_no_tta(make_cfg, tmp_path, monkeypatch):
    """trainer.tta is for the test split only: model selection must not see it."""
    modes = []

    class EndOfTraining(Callback):
        def on_train_end(self, history):
            modes.append("end of training")

    monkeypatch.setattr(loop, "tta_views", lambda x, mode, crop=None: modes.append(mode) or tta_views(x, mode, crop))
    train(make_cfg(*FAST, "trainer.tta=flip", "trainer.plots=false"), tmp_path / "t", callbacks=[EndOfTraining()])
    end = modes.index("end of training")
    assert modes[:end] and set(modes[:end]) == {"none"}
    assert modes[end + 1:] and set(modes[end + 1:]) == {"flip"}


def test_validation_and_test_score_the_ema_weights(make_cfg, tmp_path, monkeypatch):
    scored, emas = [], []

    def spy(phase, evaluate=loop.evaluate):
        def _evaluate(model, *args, **kwargs):
            scored.append((phase, model))
            return evaluate(model, *args, **kwargs)
        return _evaluate

    monkeypatch.setattr(app, "EMA", lambda *args: emas.append(EMA(*args)) or emas[-1])
    monkeypatch.setattr(loop, "evaluate", spy("val"))
    monkeypatch.setattr(app, "evaluate", spy("test"))
    train(make_cfg(*FAST, "trainer.ema_decay=0.9", "trainer.plots=false"), tmp_path / "t")
    assert [phase for phase, _ in scored] == ["val", "val", "test"]
    assert all(model is emas[0].model for _, model in scored)


def test_augmentation_finish_follows_the_plan():
    """The last round(fraction * planned) epochs train with the finish; a re-planned length moves the switch."""
    plan = {"epochs": 10}
    finish = AugmentationFinish(build_augmentation("seed"), build_augmentation("flip"), 0.2, lambda: plan["epochs"])
    finish.on_train_start(5)
    used = {}
    for epoch in range(1, 11):
        used[epoch] = finish.current.name
        if epoch == 9:  # the first finishing epoch, then the budget finds ten more: the finish moves to 17-20
            plan["epochs"] = 20
        finish.on_epoch_end(epoch, {})
    assert [used[e] for e in range(1, 11)] == ["seed"] * 8 + ["flip", "seed"]
    assert finish.current is finish.full and finish.finish_starts() == 17


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_augmentation_finish_rejects_a_fraction_outside_0_1(fraction):
    with pytest.raises(ConfigError, match="finish_fraction"):
        AugmentationFinish(build_augmentation("seed"), build_augmentation("flip"), fraction, lambda: 10)


@pytest.mark.parametrize("finish", ["flip", "crop_flip"])
def test_a_run_ends_on_the_finish_augmentation(make_cfg, tmp_path, monkeypatch, finish):
    """trainer.finish_fraction reaches the loop: the first epochs use the article's warps, the last the finish."""
    used = []

    def record(self, x, generator=None, call=AugmentationFinish.__call__):
        used.append(self.current.name)
        return call(self, x, generator)

    monkeypatch.setattr(AugmentationFinish, "__call__", record)
    result = train(make_cfg(*FAST, "trainer.epochs=4", "trainer.finish_fraction=0.5",
                            f"trainer.finish_augmentation={finish}", "trainer.plots=false"), tmp_path / "t")
    assert result["status"] == "completed"
    half = len(used) // 2
    assert used[:half] == ["seed"] * half and used[half:] == [finish] * half


def test_an_unknown_finish_augmentation_is_named(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="trainer.finish_augmentation='blur'.*known: crop_flip, flip"):
        train(make_cfg(*FAST, "trainer.finish_fraction=0.5", "trainer.finish_augmentation=blur"), tmp_path / "t")


def test_an_unknown_tta_stops_the_run_before_training(make_cfg, tmp_path):
    """Not at the test pass, after the hour of training it would waste."""
    with pytest.raises(ConfigError, match="unknown trainer.tta 'tenshfit'"):
        train(make_cfg(*FAST, "trainer.tta=tenshfit"), tmp_path / "t")
    assert not (tmp_path / "t" / "checkpoints").exists()
