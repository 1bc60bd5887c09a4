"""Model shapes and parameter counts, pinned so an accidental architecture change is caught."""
import subprocess
import sys

import pytest
import torch

from fer_sweep.models import MODELS, build_model, count_parameters

PARAMS = {"cnn": 5_530_119, "resnet9": 1_005_863, "resnet9_lean": 1_005_863, "resnet9_wide": 8_932_487,
          "resnet18": 11_171_271, "vgg": 40_376_519}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_shape_and_parameter_count(name):
    model = build_model(name, num_classes=7).eval()
    assert count_parameters(model) == PARAMS[name]
    x = torch.randn(3, 1, 48, 48).contiguous(memory_format=torch.channels_last)
    assert model(x).shape == (3, 7)


def test_resnet9_width_is_one_knob():
    """base_width doubles per stage: 64 is exactly resnet9_wide, 32 sits between."""
    assert count_parameters(build_model("resnet9", base_width=64)) == PARAMS["resnet9_wide"]
    assert PARAMS["resnet9"] < count_parameters(build_model("resnet9", base_width=32)) < PARAMS["resnet9_wide"]


def _batchnorm_map_sizes(name: str) -> list:
    sizes = []
    model = build_model(name).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.register_forward_hook(lambda m, inputs, out: sizes.append(inputs[0].shape[-1]))
    model(torch.randn(1, 1, 48, 48))
    return sizes


def test_resnet9_lean_normalises_smaller_maps_with_the_same_parameter_shapes():
    """The lean twin's halvings come before BN (a stride-2 conv, then pooling before BN), so BN and ReLU of the
    three halving blocks see 24/12/6 maps where resnet9's see 48/24/12; the parameters have the same shapes."""
    assert _batchnorm_map_sizes("resnet9") == [48, 48, 24, 24, 24, 12, 6, 6]
    assert _batchnorm_map_sizes("resnet9_lean") == [48, 24, 24, 24, 12, 6, 6, 6]
    shapes = {k: v.shape for k, v in build_model("resnet9").state_dict().items()}
    assert sorted(shapes.values()) == sorted(v.shape for v in build_model("resnet9_lean").state_dict().values())


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


def test_per_image_input_norm_ignores_brightness_and_contrast():
    """With input_norm=per_image the model cannot tell a*x+b from x (photos under other light look alike)."""
    torch.manual_seed(0)
    model = build_model("resnet9", input_norm="per_image").eval()
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(model(x), model(0.6 * x + 0.4), atol=1e-5)
        assert torch.isfinite(model(torch.zeros(2, 1, 48, 48))).all()  # a blank image stays finite
    assert count_parameters(model) == count_parameters(build_model("resnet9"))


def test_unknown_input_norm_is_named():
    with pytest.raises(ValueError, match="unknown input_norm 'zscore'; known: none, per_image"):
        build_model("cnn", input_norm="zscore")


def test_model_table_command_lists_params_and_flops():
    done = subprocess.run([sys.executable, "-m", "fer_sweep.models", "cnn", "resnet9"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[1:]}
    assert rows["cnn"][0] == "5,530,119" and rows["resnet9"][0] == "1,005,863"
    assert 50 < float(rows["resnet9"][1]) < 500  # MFLOPs per image
    bad = subprocess.run([sys.executable, "-m", "fer_sweep.models", "resnet99"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown model 'resnet99'; known models: cnn" in bad.stderr


def test_the_cli_does_not_import_torchvision():
    """torchvision pulls in torch._dynamo: 2-3 s more for every `python -m fer_sweep ...` that never builds a
    resnet18 (a bad-input message, predict, evaluate); the model imports it when it builds one."""
    probe = "import sys, fer_sweep.app, fer_sweep.predict, fer_sweep.evaluate; print('torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    assert count_parameters(build_model("resnet18")) == PARAMS["resnet18"]  # and resnet18 still builds
