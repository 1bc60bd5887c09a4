"""What happens to an image before the network, kept inside the model so predict and ONNX export apply it too.

FER2013 as distributed with this project has a domain shift between splits (measured in README "Data
shift"): the Training images are blurred (mean |horizontal gradient| of standardised images 0.10 vs 0.26)
and have lower, per-image varying contrast (pixel std 52 vs 65; per-image minimum 36 vs 1) than PublicTest
and PrivateTest. Two switches undo it:

* ``input_norm=per_image`` standardises every image to mean 0 and std 1, so brightness and contrast
  (any a*x + b with a > 0) no longer matter;
* ``eval_blur=sigma`` (set from ``data.eval_blur``) Gaussian-blurs inputs in eval mode only (validation, test, predict, export), so sharp
  test images look like the blurred images the network was trained on. Training inputs pass unchanged.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_NORMS = ("none", "per_image")


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """1-D Gaussian weights (odd length, radius ceil(3 sigma)) summing to 1."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    weights = torch.exp(-t**2 / (2 * sigma**2))
    return weights / weights.sum()


def gaussian_blur(x: torch.Tensor, kernel: torch.Tensor, radius: Optional[int] = None) -> torch.Tensor:
    """Separable blur of (B, 1, H, W) with reflected borders; `radius` = len(kernel) // 2 (pass it when tracing)."""
    r = len(kernel) // 2 if radius is None else radius
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), kernel.view(1, 1, -1, 1))


class InputAdapter(nn.Module):
    """`net` behind optional per-image standardisation and eval-only blur (computed in fp32)."""

    def __init__(self, net: nn.Module, per_image: bool, eval_blur: Optional[float], eps: float = 1e-2):
        super().__init__()
        self.net, self.per_image, self.eps = net, per_image, eps
        self.register_buffer("blur_kernel", torch.ones(1), persistent=False)  # state_dict keys stay net.*
        self.set_eval_blur(eval_blur)

    def set_eval_blur(self, sigma: Optional[float]) -> None:
        self.eval_blur = float(sigma) if sigma else None
        kernel = gaussian_kernel(self.eval_blur) if self.eval_blur else torch.ones(1)
        self.blur_kernel = kernel.to(self.blur_kernel.device)
        self.blur_radius = len(self.blur_kernel) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype, x = x.dtype, x.float()
        if self.eval_blur and not self.training:
            x = gaussian_blur(x.contiguous(), self.blur_kernel, self.blur_radius)
        if self.per_image:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) / x.std(dim=(1, 2, 3), keepdim=True, unbiased=False).clamp_min(self.eps)
        return self.net(x.to(dtype).contiguous(memory_format=torch.channels_last))


def with_input_adapter(net: nn.Module, input_norm: str = "none", eval_blur: Optional[float] = None) -> nn.Module:
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"unknown input_norm {input_norm!r}; known: {', '.join(INPUT_NORMS)}")
    if eval_blur is not None and not (isinstance(eval_blur, (int, float)) and 0 <= eval_blur <= 15):
        raise ValueError(f"eval_blur must be null or a Gaussian sigma in pixels, 0-15; got {eval_blur!r}")
    if input_norm == "none" and not eval_blur:
        return net
    return InputAdapter(net, input_norm == "per_image", eval_blur)


def with_eval_blur(model: nn.Module, sigma: Optional[float]) -> nn.Module:
    """`model` with its eval-time blur set to sigma (wrapping it when it has no input adapter yet)."""
    if isinstance(model, InputAdapter):
        model.set_eval_blur(sigma)
        return model
    return InputAdapter(model, per_image=False, eval_blur=sigma) if sigma else model
