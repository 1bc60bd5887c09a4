"""The article's custom CNN ("EmotionRecognition"): three conv stages of two 3x3 convs, then three linears."""
import torch.nn as nn

from fer_sweep.models.registry import register_model


def _stage(c_in: int, c_mid: int, c_out: int) -> list:
    """Conv, ReLU, Conv, ReLU, BN, MaxPool2 - the article's order (BN after the second ReLU)."""
    return [nn.Conv2d(c_in, c_mid, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c_mid, c_out, 3, padding=1), nn.ReLU(inplace=True),
            nn.BatchNorm2d(c_out), nn.MaxPool2d(2)]


@register_model("cnn")
def emotion_cnn(num_classes: int = 7, in_channels: int = 1) -> nn.Sequential:
    return nn.Sequential(
        *_stage(in_channels, 16, 32),   # 48 -> 24
        *_stage(32, 64, 64),            # 24 -> 12
        *_stage(64, 128, 128),          # 12 -> 6
        nn.Flatten(),
        nn.Linear(128 * 6 * 6, 1024), nn.ReLU(inplace=True), nn.Dropout(0.3),
        nn.Linear(1024, 512), nn.ReLU(inplace=True), nn.Dropout(0.4),
        nn.Linear(512, num_classes),
    )
