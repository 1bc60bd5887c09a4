"""Per-image standardisation, kept inside the model so predict and the ONNX/TorchScript exports apply it too.

``input_norm=per_image`` scales every image to mean 0 and std 1 before the network, so brightness and contrast
(any a*x + b with a > 0) no longer matter: faces photographed under other light look alike to the network.
It costs nothing measurable and is on in every conf/model/*.yaml.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from fer_sweep.errors import ConfigError

INPUT_NORMS = ("none", "per_image")


class PerImageStandardize(nn.Module):
    """`net` behind per-image standardisation (computed in fp32, whatever the autocast precision)."""

    def __init__(self, net: nn.Module, eps: float = 1e-2):
        super().__init__()
        self.net, self.eps = net, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype, x = x.dtype, x.float()
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / x.std(dim=(1, 2, 3), keepdim=True, unbiased=False).clamp_min(self.eps)
        return self.net(x.to(dtype).contiguous(memory_format=torch.channels_last))


def with_input_norm(net: nn.Module, input_norm: str = "none") -> nn.Module:
    if input_norm not in INPUT_NORMS:
        raise ConfigError(f"unknown input_norm {input_norm!r}; known: {', '.join(INPUT_NORMS)}")
    return PerImageStandardize(net) if input_norm == "per_image" else net
