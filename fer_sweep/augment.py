"""Batched, per-sample training augmentation that runs on the training device (airbench style).

Instead of transforming one PIL image at a time in DataLoader workers, a whole (B, C, H, W) batch is
augmented at once: every sample draws its own parameters, all geometric steps are folded into one 2x3
matrix per sample, and a single `grid_sample` call warps the batch. Presets are chosen by name
(`build_augmentation("seed")`) so Hydra configs can select them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from fer_sweep.errors import ConfigError
from fer_sweep.registry import Registry

AUGMENTATIONS = Registry("augmentation")
Params = Dict[str, torch.Tensor]


def _affine(a, b, c, d, tx=None, ty=None) -> torch.Tensor:
    """Batched 3x3 homogeneous matrices [[a, b, tx], [c, d, ty], [0, 0, 1]] from (n,) tensors."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    tx = zero if tx is None else tx
    ty = zero if ty is None else ty
    return torch.stack([a, b, tx, c, d, ty, zero, zero, one], dim=-1).view(-1, 3, 3)


@dataclass
class Augmentation:
    """Per-sample random augmentation of a batch; field semantics follow the torchvision transforms.

    Forward order (as in the `seed` pipeline): crop shift -> rotation -> shear -> scale -> translate -> flip,
    all about the image centre, then a random crop x crop window when `crop` is set, then random erasing.
    Borders are filled by reflection (grid_sample's reflection repeats the edge pixel, unlike
    pad(mode="reflect"); this only touches the outer band).
    Erased rectangles are filled with 0: the batch is expected to be normalised already, so 0 is the
    dataset mean, exactly like torchvision's RandomErasing(value=0) placed after Normalize.
    """

    name: str = "none"
    crop_padding: int = 0                      # RandomCrop(padding=p): integer shift in [-p, p] px per axis
    rotation: float = 0.0                      # RandomRotation(deg): angle ~ U(-deg, deg), positive = CCW
    translate: Tuple[float, float] = (0.0, 0.0)  # dx ~ U(-a*W, a*W), dy ~ U(-b*H, b*H) px (not rounded)
    shear: Tuple[float, float] = (0.0, 0.0)    # x-shear angle ~ U(lo, hi) degrees (torchvision 2-sequence)
    scale: Tuple[float, float] = (1.0, 1.0)    # zoom factor ~ U(lo, hi); > 1 zooms in
    flip: float = 0.0                          # horizontal flip probability
    erasing: float = 0.0                       # RandomErasing probability (area 2-20%, aspect 0.3-3.3)
    crop: int = 0                              # RandomCrop(crop): a crop x crop window; 0 keeps the whole image

    def __post_init__(self) -> None:
        # Hydra hands over ListConfigs and ints; normalise so equality and arithmetic behave.
        self.crop_padding, self.rotation = int(self.crop_padding), float(self.rotation)
        self.flip, self.erasing, self.crop = float(self.flip), float(self.erasing), int(self.crop or 0)
        for f in ("translate", "shear", "scale"):
            value = tuple(float(v) for v in getattr(self, f))
            if len(value) != 2:
                raise ConfigError(f"augmentation.{f} must have two values, got {value}")
            setattr(self, f, value)
        if self.crop_padding < 0 or self.rotation < 0 or min(self.translate) < 0 or self.crop < 0:
            raise ConfigError("augmentation: crop_padding, rotation, translate and crop must be >= 0")
        if not (0 < self.scale[0] <= self.scale[1]) or self.shear[0] > self.shear[1]:
            raise ConfigError("augmentation: need 0 < scale lo <= hi and shear lo <= hi, "
                              f"got {self.scale}, {self.shear}")
        if not (0 <= self.flip <= 1 and 0 <= self.erasing <= 1):
            raise ConfigError("augmentation: flip and erasing are probabilities in [0, 1]")

    @property
    def warps(self) -> bool:
        """True when some geometric step other than flipping is on, i.e. grid_sample is needed."""
        return bool(self.crop_padding or self.rotation or any(self.translate) or any(self.shear)
                    or self.scale != (1.0, 1.0) or self.crop)

    @property
    def is_identity(self) -> bool:
        return not (self.warps or self.flip or self.erasing)

    def sample_params(self, n: int, generator: Optional[torch.Generator] = None, device="cpu",
                      size: Tuple[int, int] = (48, 48)) -> Params:
        """Draw every sample's parameters from one uniform block, so a seeded generator fixes them all.

        Draws happen on the generator's own device (the CPU one if that is what was given) and are then
        moved to `device`. Returns pixel/degree values: shift (n,2), angle, translate (n,2), shear, scale,
        flip (bool), erase (bool), erase_box (n,4) = top, left, height, width (in the output, the window when
        cropping) and, with `crop`, window (n,2) = the crop's left and top in the warped image.
        """
        H, W = size
        gen_device = generator.device if generator is not None else device
        u = torch.rand(n, 13, generator=generator, device=gen_device).to(device)
        window, (out_h, out_w) = None, size  # erasing happens in the output: the whole image or the crop
        if self.crop:  # a separate draw, so presets without a crop keep their random streams
            if self.crop > min(H, W):
                raise ConfigError(f"augmentation.crop={self.crop} is larger than the {H}x{W} images")
            v = torch.rand(n, 2, generator=generator, device=gen_device).to(device)
            limits = torch.tensor([W, H], device=device) - self.crop
            window = torch.minimum((v * (limits + 1)).floor(), limits)
            out_h = out_w = self.crop
        p = self.crop_padding
        span = lambda col, lo, hi: lo + (hi - lo) * u[:, col]  # noqa: E731 - U(lo, hi) from column col
        area = span(9, 0.02, 0.2) * out_h * out_w
        ratio = torch.exp(span(10, math.log(0.3), math.log(3.3)))
        h = torch.sqrt(area * ratio).round().clamp(1, out_h)
        w = torch.sqrt(area / ratio).round().clamp(1, out_w)
        return {
            "shift": (u[:, 0:2] * (2 * p + 1)).floor().clamp(max=2 * p) - p,
            "angle": span(2, -self.rotation, self.rotation),
            "translate": torch.stack([span(3, -1, 1) * self.translate[0] * W,
                                      span(4, -1, 1) * self.translate[1] * H], dim=1),
            "shear": span(5, *self.shear),
            "scale": span(6, *self.scale),
            "flip": u[:, 7] < self.flip,
            "erase": u[:, 8] < self.erasing,
            "erase_box": torch.stack([torch.minimum((u[:, 11] * (out_h - h + 1)).floor(), out_h - h),
                                      torch.minimum((u[:, 12] * (out_w - w + 1)).floor(), out_w - w),
                                      h, w], dim=1).long(),
            **({"window": window} if window is not None else {}),
        }

    def matrices(self, params: Params, size: Tuple[int, int] = (48, 48)) -> torch.Tensor:
        """(n, 2, 3) thetas for F.affine_grid (align_corners=False).

        affine_grid maps OUTPUT coordinates to INPUT coordinates, so we build the inverse of the forward
        pipeline directly: undo crop . undo rotate . undo (scale*shear) . undo translate . undo flip.
        Each step works in pixels centred on the image middle (y points down); normalised coordinates are
        then x_n = 2*x/W, y_n = 2*y/H, e.g. a shift of s px to the right gives theta[0, 2] = -2*s/W.
        With `crop`, the output is the crop x crop window at params["window"]: its pixels, centred on the window,
        are first moved to where the window lies in the warped image.
        """
        H, W = size
        angle, shear = torch.deg2rad(params["angle"]), torch.deg2rad(params["shear"])
        cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        zero, one, s = torch.zeros_like(angle), torch.ones_like(angle), params["scale"]
        undo_crop = _affine(one, zero, zero, one, -params["shift"][:, 0], -params["shift"][:, 1])
        undo_rotate = _affine(cos, -sin, sin, cos)  # forward CCW rotation is [[cos, sin], [-sin, cos]]
        undo_scale_shear = _affine(1 / s, tan / s, zero, 1 / s)  # forward is s * [[1, -tan], [0, 1]]
        undo_translate = _affine(one, zero, zero, one, -params["translate"][:, 0], -params["translate"][:, 1])
        undo_flip = _affine(1 - 2 * params["flip"].to(angle.dtype), zero, zero, one)
        inverse = undo_crop @ undo_rotate @ undo_scale_shear @ undo_translate @ undo_flip
        out_h, out_w = H, W
        if self.crop:
            out_h = out_w = self.crop
            window = params["window"].to(angle.dtype)
            inverse = inverse @ _affine(one, zero, zero, one, window[:, 0] + (out_w - W) / 2,
                                        window[:, 1] + (out_h - H) / 2)
        to_norm = torch.diag(torch.tensor([2 / W, 2 / H, 1.0], dtype=inverse.dtype, device=inverse.device))
        from_norm = torch.diag(torch.tensor([out_w / 2, out_h / 2, 1.0], dtype=inverse.dtype,
                                            device=inverse.device))
        return (to_norm @ inverse @ from_norm)[:, :2, :]

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Augment `x` (B, C, H, W) with given params; dtype, memory format and (without `crop`) shape are kept."""
        if self.is_identity:
            return x
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        B, C, H, W = x.shape
        if self.warps:
            work = x if x.dtype in (torch.float32, torch.float64) else x.float()  # bf16/fp16: warp in fp32
            theta = self.matrices(params, (H, W)).to(work.dtype)
            if self.crop:
                H = W = self.crop
            grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)
            out = F.grid_sample(work, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        elif self.flip:
            out = torch.where(params["flip"].view(B, 1, 1, 1), x.flip(-1), x)
        else:
            out = x
        if self.erasing:
            top, left, h, w = params["erase_box"].unbind(1)
            ys = torch.arange(H, device=x.device).view(1, H, 1)
            xs = torch.arange(W, device=x.device).view(1, 1, W)
            inside = ((ys >= top.view(B, 1, 1)) & (ys < (top + h).view(B, 1, 1))
                      & (xs >= left.view(B, 1, 1)) & (xs < (left + w).view(B, 1, 1)))
            out = out.masked_fill((inside & params["erase"].view(B, 1, 1)).unsqueeze(1), 0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return out.to(x.dtype).contiguous(memory_format=fmt)

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if self.is_identity:
            return x
        return self.apply(x, self.sample_params(x.shape[0], generator, x.device, tuple(x.shape[-2:])))


@AUGMENTATIONS.register("none")
def _none() -> Augmentation:
    return Augmentation(name="none")


@AUGMENTATIONS.register("seed")
def _seed() -> Augmentation:
    """The article's transforms: RandomCrop(48, 4, reflect), RandomRotation(15), RandomAffine, HFlip."""
    return Augmentation(name="seed", crop_padding=4, rotation=15.0, translate=(0.01, 0.12),
                        shear=(0.01, 0.03), flip=0.5)


@AUGMENTATIONS.register("strong")
def _strong() -> Augmentation:
    return Augmentation(name="strong", rotation=10.0, translate=(0.2, 0.2), scale=(0.8, 1.2),
                        flip=0.5, erasing=0.5)


@AUGMENTATIONS.register("crop_flip")
def _crop_flip() -> Augmentation:
    """The classic light pair, RandomCrop(48, 4, reflect) + HFlip: shifts like the ten-crop test views, no warps."""
    return Augmentation(name="crop_flip", crop_padding=4, flip=0.5)


@AUGMENTATIONS.register("flip")
def _flip() -> Augmentation:
    return Augmentation(name="flip", flip=0.5)


def build_augmentation(name: str, **overrides) -> Augmentation:
    """The preset `name` with some fields replaced, e.g. build_augmentation("seed", flip=0.0)."""
    preset = AUGMENTATIONS.build(name)
    valid = [f.name for f in fields(Augmentation)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(f"unknown augmentation field(s) {unknown}; valid fields: {', '.join(valid)}")
    return replace(preset, **overrides)
