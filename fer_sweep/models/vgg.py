"""The VGG variant of Khaireddin & Chen (2021), the best published single network on FER2013 (73.28%)."""
import torch.nn as nn

from fer_sweep.models.registry import register_model


def _stage(c_in: int, c_out: int) -> list:
    """Two Conv3x3-BN-ReLU blocks and a 2x2 max-pool."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.MaxPool2d(2)]


@register_model("vgg")
def vgg(num_classes: int = 7, in_channels: int = 1, hidden: int = 4096, dropout: float = 0.2) -> nn.Sequential:
    return nn.Sequential(
        *_stage(in_channels, 64), *_stage(64, 128), *_stage(128, 256), *_stage(256, 512),  # 48 -> 3
        nn.Flatten(),
        nn.Linear(512 * 3 * 3, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )
