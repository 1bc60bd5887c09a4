"""Tests for the batched on-device augmentation: formats, randomness, bounds and exact geometry."""
import pytest
import torch

from fer_sweep.augment import Augmentation, build_augmentation

H = W = 48


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image(c: int = 1) -> torch.Tensor:
    """An asymmetric test image (no flip or rotation symmetry), shape (1, c, 48, 48)."""
    return torch.rand(1, c, H, W, generator=_gen(123))


def _fixed_params(aug: Augmentation, n: int = 1, **values) -> dict:
    """Identity parameters for n samples, with some entries overwritten."""
    params = aug.sample_params(n, _gen())
    params.update(shift=torch.zeros(n, 2), angle=torch.zeros(n), translate=torch.zeros(n, 2),
                  shear=torch.zeros(n), scale=torch.ones(n), flip=torch.zeros(n, dtype=torch.bool),
                  erase=torch.zeros(n, dtype=torch.bool))
    params.update({k: torch.as_tensor(v).expand_as(params[k]).clone() for k, v in values.items()})
    return params


@pytest.mark.parametrize("name", ["seed", "strong"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shape_dtype_preserved(name, dtype):
    x = torch.randn(8, 1, H, W, generator=_gen()).to(dtype)
    out = build_augmentation(name)(x, _gen())
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("name", ["seed", "strong"])
@pytest.mark.parametrize("flip_only", [False, True])
def test_channels_last_preserved(name, flip_only):
    x = torch.randn(4, 3, H, W, generator=_gen()).contiguous(memory_format=torch.channels_last)
    aug = Augmentation(flip=0.5) if flip_only else build_augmentation(name)
    out = aug(x, _gen())
    assert out.is_contiguous(memory_format=torch.channels_last) and out.stride() == x.stride()


def test_none_is_identity():
    aug = build_augmentation("none")
    x = torch.randn(4, 1, H, W)
    assert aug.is_identity and aug(x, _gen()) is x
    assert not build_augmentation("seed").is_identity


@pytest.mark.parametrize("name", ["seed", "strong"])
def test_each_sample_draws_its_own_parameters(name):
    aug = build_augmentation(name)
    out = aug(_image().expand(64, 1, H, W).contiguous(), _gen())
    flat = out.flatten(1)
    distinct_pairs = (torch.cdist(flat, flat) > 1e-3).sum().item()
    assert distinct_pairs >= 64 * 63 * 0.95  # nearly every pair of outputs differs
    params = aug.sample_params(64, _gen())
    assert params["angle"].unique().numel() == 64


def test_seed_parameter_bounds():
    n = 4096
    params = build_augmentation("seed").sample_params(n, _gen(7))
    assert abs(params["flip"].float().mean().item() - 0.5) < 0.05
    angle = params["angle"]
    assert angle.abs().max() <= 15 and angle.min() < -14 and angle.max() > 14 and angle.std() > 7
    shift = params["shift"]
    assert (shift == shift.round()).all() and shift.abs().max() == 4
    assert set(shift[:, 0].tolist()) == set(range(-4, 5))  # every integer shift occurs
    dx, dy = params["translate"].unbind(1)
    assert dx.abs().max() <= 0.01 * W and dy.abs().max() <= 0.12 * H and dy.abs().max() > 0.1 * H
    assert params["shear"].min() >= 0.01 and params["shear"].max() <= 0.03
    assert (params["scale"] == 1).all() and not params["erase"].any()


def test_flip_matches_torch_flip():
    x = torch.randn(5, 1, H, W, generator=_gen())
    # the flip-only fast path, and the flip folded into the warp matrix
    assert torch.equal(Augmentation(flip=1.0)(x, _gen()), torch.flip(x, dims=[-1]))
    warp = Augmentation(rotation=1.0)
    out = warp.apply(x, _fixed_params(warp, 5, flip=True))
    torch.testing.assert_close(out, torch.flip(x, dims=[-1]), atol=1e-4, rtol=0)


def test_integer_shift_moves_content_right():
    aug = Augmentation(crop_padding=3)
    x = _image()
    theta = aug.matrices(_fixed_params(aug, shift=[3.0, 0.0]))
    torch.testing.assert_close(theta[0, :, 2], torch.tensor([-2 * 3 / W, 0.0]))
    out = aug.apply(x, _fixed_params(aug, shift=[3.0, 0.0]))
    torch.testing.assert_close(out[..., 3:], x[..., :-3], atol=1e-5, rtol=0)  # out[x] == in[x - 3]


def test_rotation_90_is_counter_clockwise():
    aug = Augmentation(rotation=90.0)
    x = _image()
    out = aug.apply(x, _fixed_params(aug, angle=90.0))
    expected = torch.rot90(x, k=1, dims=(-2, -1))  # k=1 rotates counter-clockwise, like torchvision
    torch.testing.assert_close(out[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_erasing_fills_a_rectangle_with_zero():
    aug = Augmentation(erasing=1.0)
    x = torch.rand(256, 1, H, W, generator=_gen()) + 1  # strictly positive, so zeros mark erased pixels
    out = aug(x, _gen())
    erased = (out == 0).flatten(1).float().mean(1)
    assert (erased >= 0.015).all() and (erased <= 0.25).all()
    assert torch.equal(out[out != 0], x[out != 0])


def test_same_seed_same_output_different_seed_differs():
    aug = build_augmentation("strong")
    x = torch.randn(16, 1, H, W, generator=_gen())
    assert torch.equal(aug(x, _gen(1)), aug(x, _gen(1)))
    assert not torch.allclose(aug(x, _gen(1)), aug(x, _gen(2)))


def test_build_augmentation_errors_and_overrides():
    with pytest.raises(KeyError, match="nope.*none, seed, strong"):
        build_augmentation("nope")
    seed = build_augmentation("seed", flip=0.0)
    assert seed.flip == 0.0 and seed.rotation == 15.0 and seed.name == "seed"
    assert not seed.sample_params(256, _gen())["flip"].any()
    with pytest.raises(TypeError, match="flipp.*valid fields.*flip"):
        build_augmentation("seed", flipp=0.5)


def test_flip_preset_leaves_each_face_as_it_is_or_mirrored():
    x = torch.rand(64, 1, H, W, generator=_gen(5))
    y = build_augmentation("flip")(x, _gen(6))
    kept = (y == x).flatten(1).all(1)
    mirrored = (y == x.flip(-1)).flatten(1).all(1)
    assert bool((kept | mirrored).all()) and kept.any() and mirrored.any()


def test_crop_flip_preset_only_shifts_and_flips():
    aug = build_augmentation("crop_flip")
    assert aug.crop_padding == 4 and aug.flip == 0.5 and aug.rotation == 0 and aug.shear == (0, 0)
    assert aug.translate == (0, 0) and aug.scale == (1, 1) and aug.erasing == 0
