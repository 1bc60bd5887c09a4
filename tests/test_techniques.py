"""EMA, mixup/cutmix, test-time augmentation and class weights, and a run with all of them on."""
import pytest
import torch

from fer_sweep.app import train
from fer_sweep.engine.techniques import EMA, balanced_class_weights, mix_batch, tta_views
from tests.conftest import FAST


def test_ema_moves_toward_the_weights():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    before = ema.model.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, before + 0.5)


@pytest.mark.parametrize("mixup, cutmix", [(0.4, 0.0), (0.0, 1.0)])
def test_mix_batch_soft_targets(mixup, cutmix):
    g = torch.Generator().manual_seed(0)
    x, labels = torch.randn(16, 1, 48, 48), torch.arange(16) % 7
    mixed, targets = mix_batch(x, labels, 7, mixup, cutmix, g)
    assert mixed.shape == x.shape and targets.shape == (16, 7)
    assert torch.allclose(targets.sum(1), torch.ones(16))
    assert not torch.equal(mixed, x)


def test_tta_views():
    x = torch.randn(3, 1, 48, 48)
    assert len(tta_views(x, "none")) == 1
    flip = tta_views(x, "flip")
    assert torch.equal(flip[1], torch.flip(x, dims=[-1]))
    ten = tta_views(x, "tencrop")
    assert len(ten) == 10 and all(v.shape == x.shape for v in ten)
    with pytest.raises(ValueError, match="unknown trainer.tta"):
        tta_views(x, "twelve")


def test_balanced_weights():
    w = balanced_class_weights(torch.tensor([0, 0, 0, 1]), 2)
    assert w.tolist() == pytest.approx([4 / 6, 2.0])


def test_training_with_every_technique(make_cfg, tmp_path):
    result = train(make_cfg(*FAST, "trainer.ema_decay=0.9", "trainer.mixup_alpha=0.2", "trainer.cutmix_alpha=1.0",
                            "trainer.class_weights=balanced", "trainer.tta=tencrop", "trainer.label_smoothing=0.1",
                            "augmentation=strong", "optimizer=sgd", "scheduler=cosine", "scheduler.warmup_epochs=1",
                            "trainer.plots=false"), tmp_path / "t")
    assert result["status"] == "completed" and result["tta"] == "tencrop" and 0 <= result["test_acc"] <= 1
