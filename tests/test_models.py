"""Model shapes and parameter counts, pinned so an accidental architecture change is caught."""
import pytest
import torch

from fer_sweep.models import MODELS, build_model, count_parameters

PARAMS = {"cnn": 5_530_119, "resnet9": 1_005_863, "resnet9_wide": 8_932_487, "resnet18": 11_171_271,
          "vgg": 40_376_519}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_shape_and_parameter_count(name):
    model = build_model(name, num_classes=7).eval()
    assert count_parameters(model) == PARAMS[name]
    x = torch.randn(3, 1, 48, 48).contiguous(memory_format=torch.channels_last)
    assert model(x).shape == (3, 7)


def test_six_classes():
    assert build_model("cnn", num_classes=6)(torch.randn(2, 1, 48, 48)).shape == (2, 6)


def test_every_model_is_pinned():
    assert set(MODELS.names()) == set(PARAMS)


def test_unknown_model_lists_known_names():
    with pytest.raises(KeyError, match="unknown model 'resnet99'; known models: cnn, resnet18, resnet9"):
        build_model("resnet99")


def test_cnn_matches_article_layout():
    layers = [m for m in build_model("cnn") if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    convs = [(m.in_channels, m.out_channels) for m in layers if isinstance(m, torch.nn.Conv2d)]
    linears = [(m.in_features, m.out_features) for m in layers if isinstance(m, torch.nn.Linear)]
    assert convs == [(1, 16), (16, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
    assert linears == [(4608, 1024), (1024, 512), (512, 7)]
