"""model.input_crop: the network trains on random crop x crop windows and scores the centre one (or ten crops)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from fer_sweep import export
from fer_sweep.app import train_augmentation
from fer_sweep.augment import Augmentation, build_augmentation
from fer_sweep.checkpoint import load_checkpoint
from fer_sweep.data.batches import normalize
from fer_sweep.engine.loop import predict_logits
from fer_sweep.engine.precision import Precision
from fer_sweep.engine.techniques import tta_views
from fer_sweep.errors import ConfigError
from fer_sweep.models import build_model, input_crop_of
from fer_sweep.models.input_crop import CenterCropInput
from fer_sweep.predict import Predictor
from tests.conftest import FAST, run_cli, train_tiny

FP32 = Precision(torch.device("cpu"), "fp32")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------- the model
def test_ceil_mode_pool_leaves_48x48_resnet9_unchanged():
    """The classifier's ceil-mode pool (so 40x40 crops work) computes what the plain 2x2 pool did at 48x48."""
    torch.manual_seed(0)
    model = build_model("resnet9").eval()
    plain = copy.deepcopy(model)
    plain.classifier[0] = nn.MaxPool2d(2)
    x = torch.randn(4, 1, 48, 48)
    assert torch.equal(model(x), plain(x))


def test_the_model_scores_the_centre_crop_of_a_48x48_face():
    torch.manual_seed(0)
    model = build_model("resnet9", input_norm="per_image", input_crop=40).eval()
    assert isinstance(model, CenterCropInput) and input_crop_of(model) == 40
    x = torch.randn(3, 1, 48, 48)
    torch.testing.assert_close(model(x), model.net(x[..., 4:44, 4:44]), rtol=0, atol=0)
    assert torch.equal(model(x[..., 4:44, 4:44]), model(x))  # a training crop passes unchanged
    assert input_crop_of(copy.deepcopy(model)) == 40          # EMA copies keep it
    assert input_crop_of(nn.Sequential(model)) == 40          # so do wrappers (predict's renormalising)


@pytest.mark.parametrize("crop", [None, 48])
def test_no_crop_builds_the_plain_network(crop):
    model = build_model("resnet9", input_crop=crop)
    assert not isinstance(model, CenterCropInput) and input_crop_of(model) is None


@pytest.mark.parametrize("name, crop, message", [
    ("cnn", 40, "this network does not take 40x40 inputs"),
    ("resnet9", 56, "expected a size below 48"),
])
def test_a_crop_the_network_cannot_take_is_named(name, crop, message):
    with pytest.raises(ConfigError, match=f"model.input_crop={crop}: {message}"):
        build_model(name, input_crop=crop)


# ---------------------------------------------------------------------------------------- the augmentation
def test_training_crops_are_windows_of_the_face():
    """Without other warps, every output is exactly the 40x40 window its parameters name."""
    aug = Augmentation(crop=40)
    x = torch.randn(64, 1, 48, 48, generator=_gen())
    params = aug.sample_params(64, _gen(1))
    out = aug.apply(x, params)
    assert out.shape == (64, 1, 40, 40)
    left, top = params["window"].long().unbind(1)
    assert left.min() == 0 and left.max() == 8 and top.min() == 0 and top.max() == 8  # every offset in reach
    for i in range(64):
        window = x[i, :, top[i]:top[i] + 40, left[i]:left[i] + 40]
        torch.testing.assert_close(out[i], window, atol=1e-4, rtol=0)


def test_crop_keeps_format_and_the_other_draws():
    """Channels-last survives; the crop's offsets are a separate draw, so a preset's own draws stay as they were."""
    seed, cropped = build_augmentation("seed"), build_augmentation("seed", crop=40, erasing=0.5)
    x = torch.randn(16, 1, 48, 48, generator=_gen()).contiguous(memory_format=torch.channels_last)
    out = cropped(x, _gen())
    assert out.shape == (16, 1, 40, 40) and out.is_contiguous(memory_format=torch.channels_last)
    plain, with_crop = seed.sample_params(16, _gen()), cropped.sample_params(16, _gen())
    for key in ("shift", "angle", "translate", "shear", "scale", "flip"):
        assert torch.equal(plain[key], with_crop[key]), key
    top, left, h, w = with_crop["erase_box"].unbind(1)
    assert ((top + h) <= 40).all() and ((left + w) <= 40).all()  # erasing lands inside the crop


def test_a_crop_larger_than_the_images_is_named():
    with pytest.raises(ConfigError, match="augmentation.crop=50 is larger than the 48x48 images"):
        Augmentation(crop=50)(torch.zeros(2, 1, 48, 48), _gen())


def test_train_augmentation_follows_the_model(make_cfg):
    assert train_augmentation(make_cfg("model=resnet9")).get("crop", 0) == 0
    assert train_augmentation(make_cfg("model=resnet9", "+lever=crop_40"))["crop"] == 40
    with pytest.raises(ConfigError, match="augmentation.crop=36 but model.input_crop=40"):
        train_augmentation(make_cfg("model=resnet9", "+lever=crop_40", "+augmentation.crop=36"))


# ------------------------------------------------------------------------------------------ test-time views
def test_ten_crops_at_the_networks_size():
    x = torch.randn(2, 1, 48, 48, generator=_gen())
    views = tta_views(x, "tencrop", crop=40)
    assert len(views) == 10 and all(v.shape == (2, 1, 40, 40) for v in views)
    corners = [(0, 0), (0, 8), (8, 0), (8, 8), (4, 4)]
    for (dy, dx), view, mirror in zip(corners, views[::2], views[1::2]):
        assert torch.equal(view, x[..., dy:dy + 40, dx:dx + 40]) and torch.equal(mirror, view.flip(-1))
    # a whole-face network keeps its 44x44 crops resized to 48x48
    assert all(torch.equal(a, b) for a, b in zip(tta_views(x, "tencrop", crop=None), tta_views(x, "tencrop")))
    assert tta_views(x, "tencrop")[0].shape == x.shape


def test_predict_logits_uses_the_models_crop():
    torch.manual_seed(0)
    model = build_model("resnet9", input_crop=40).eval()
    faces = torch.randint(0, 256, (3, 1, 48, 48), dtype=torch.uint8)
    ten = predict_logits(model, faces, FP32, "tencrop")
    expected = torch.stack([model(v) for v in tta_views(normalize(faces), "tencrop", 40)]).mean(0)
    torch.testing.assert_close(ten, expected)


# ----------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def cropped_checkpoint(tmp_path_factory):
    return train_tiny("resnet9", tmp_path_factory.mktemp("crop"), "model.base_width=4", "+lever=crop_40",
                      "trainer.tta=tencrop")


def test_a_cropped_checkpoint_predicts_and_exports_48x48_faces(cropped_checkpoint, tmp_path):
    loaded = load_checkpoint(cropped_checkpoint)
    assert input_crop_of(loaded.model) == 40 and loaded.config["model"]["input_crop"] == 40
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    probs = Predictor([loaded], torch.device("cpu"), FP32, tta=True).probabilities(faces)
    assert probs.shape == (5, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)
    out = tmp_path / "fer.onnx"
    assert export.export(cropped_checkpoint, "onnx", out) <= export.TOLERANCE  # the crop travels in the export


def test_cli_trains_on_crops(tmp_path):
    proc = run_cli(["model=resnet9", "model.base_width=4", "+lever=crop_40", "trainer.tta=tencrop",
                    "trainer.plots=false", *FAST, f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr
    assert "completed" in proc.stderr + proc.stdout
    bad = run_cli(["model=cnn", "+lever=crop_40", *FAST, f"hydra.run.dir={tmp_path / 'bad'}"])
    assert bad.returncode != 0 and "model.input_crop=40: this network does not take 40x40 inputs" in bad.stderr
