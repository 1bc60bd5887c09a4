"""ResNets for 48x48 grayscale faces: the article's small ResNet9 (and a leaner-downsampling twin for CPUs), the
DAWNBench-width ResNet9 and a ResNet-18."""
from typing import Sequence

import torch
import torch.nn as nn

from fer_sweep.models.registry import register_model


def conv_block(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    """Conv3x3(pad 1) -> BN -> ReLU (-> MaxPool2)."""
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def down_block(c_in: int, c_out: int, how: str) -> nn.Sequential:
    """A conv block that halves the map. "pool": the article's Conv -> BN -> ReLU -> MaxPool2. "pool_first":
    Conv -> MaxPool2 -> BN -> ReLU (airbench's order), so BN and ReLU run on a quarter of the pixels. "stride": a
    stride-2 conv, which also does a quarter of the conv's work. All three have the same parameters."""
    if how == "pool":
        return conv_block(c_in, c_out, pool=True)
    if how == "pool_first":
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.MaxPool2d(2), nn.BatchNorm2d(c_out),
                             nn.ReLU(inplace=True))
    if how == "stride":
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out),
                             nn.ReLU(inplace=True))
    raise ValueError(f"unknown downsampling {how!r}; known: pool, pool_first, stride")


class Residual(nn.Module):
    """x + f(x), with f two conv blocks of the same width."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_block(channels, channels), conv_block(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """ResNet9 for 48x48 input (40-47 work too: 5x5 final maps pool to 3x3 as well), prep, two residual stages,
    and a pooled classifier.

    widths=(16, 32, 64, 128) is the article's grayscale variant; the DAWNBench network the article pictures
    uses 64-128-256-512 (`resnet9_wide`). `downsample` says how each of the three halvings is done (down_block).
    """

    def __init__(self, num_classes: int = 7, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64, 128),
                 hidden: int = 512, downsample: Sequence[str] = ("pool", "pool", "pool")):
        super().__init__()
        w0, w1, w2, w3 = widths
        down1, down2, down3 = downsample
        self.prep = nn.Sequential(conv_block(in_channels, w0), down_block(w0, w1, down1))  # 48 -> 24
        self.res1 = Residual(w1)
        self.layer2 = down_block(w1, w2, down2)   # 24 -> 12
        self.layer3 = down_block(w2, w3, down3)   # 12 -> 6
        self.res2 = Residual(w3)
        # ceil_mode: 6 -> 3 as a plain 2x2 pool, and 5 -> 3 for the 40x40 crops of input_crop (models/input_crop.py)
        self.classifier = nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(),  # 6 -> 3
                                        nn.Linear(w3 * 3 * 3, hidden), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res1(self.prep(x))
        x = self.res2(self.layer3(self.layer2(x)))
        return self.classifier(x)


def doubling_widths(base_width: int) -> tuple:
    """base_width channels in the first layer, doubling per stage."""
    return tuple(base_width * 2**k for k in range(4))


@register_model("resnet9")
def resnet9(num_classes: int = 7, in_channels: int = 1, base_width: int = 16) -> ResNet9:
    """base_width channels in the first layer, doubling per stage: 16 is the article's, 64 `resnet9_wide`.
    Compute grows with its square, so it is the knob that trades accuracy against CPU time."""
    return ResNet9(num_classes, in_channels, widths=doubling_widths(base_width))


@register_model("resnet9_lean")
def resnet9_lean(num_classes: int = 7, in_channels: int = 1, base_width: int = 16) -> ResNet9:
    """resnet9 with the same parameters but cheaper halvings for a CPU: the 48x48 stage's second conv strides 2
    instead of max-pooling its output, and the later stages pool before BN and ReLU. On a 2-core CPU that stage
    costs about 40% of a step (profiled, bf16); this trained 1.1-1.3x the images a second (two bench runs)."""
    return ResNet9(num_classes, in_channels, widths=doubling_widths(base_width),
                   downsample=("stride", "pool_first", "pool_first"))


@register_model("resnet9_wide")
def resnet9_wide(num_classes: int = 7, in_channels: int = 1) -> ResNet9:
    return resnet9(num_classes, in_channels, base_width=64)


@register_model("resnet18")
def resnet18(num_classes: int = 7, in_channels: int = 1) -> nn.Module:
    """torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool, so 48x48 keeps spatial detail."""
    import torchvision  # here, not at the top: importing it costs every CLI process 2-3 s (it pulls in dynamo)

    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net
