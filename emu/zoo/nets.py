"""The small networks Systola trains itself: digits (8x8) and MNIST (28x28) classifiers.

All take images with pixels scaled to [0, 1] and return [batch, 10] logits. `DigitsMLP` takes [batch, 64]
float32, `DigitsCNN` [batch, 1, 8, 8] (NCHW); `MnistFC` [batch, 784], `MnistCNN` [batch, 1, 28, 28].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DigitsMLP", "DigitsCNN", "MnistFC", "MnistCNN"]


class DigitsMLP(nn.Module):
    """64 -> 64 -> ReLU -> 32 -> ReLU -> 10 (Linear layers with bias)."""

    def __init__(self, hidden: tuple[int, int] = (64, 32)):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def _conv_bn(cin: int, cout: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)


class DigitsCNN(nn.Module):
    """A small residual CNN for [batch, 1, 8, 8] digits; every convolution is 3x3, padding 1, no bias.

    ::

        stem:  conv(1 -> c1) + BN + ReLU                                    [c1, 8, 8]
        block: conv(c1 -> c1) + BN + ReLU, conv(c1 -> c1) + BN, add(x, .), ReLU
        down:  conv(c1 -> c2, stride 2) + BN + ReLU6                        [c2, 4, 4]
        MaxPool2d(2)                                                        [c2, 2, 2]
        AdaptiveAvgPool2d(1), flatten, Linear(c2 -> 10)

    The batch norms are folded into the convolutions by quantization (PTQ and QAT alike).
    """

    def __init__(self, channels: tuple[int, int] = (16, 32)):
        super().__init__()
        c1, c2 = channels
        self.stem, self.stem_bn = _conv_bn(1, c1)
        self.conv1, self.bn1 = _conv_bn(c1, c1)
        self.conv2, self.bn2 = _conv_bn(c1, c1)
        self.down, self.down_bn = _conv_bn(c1, c2, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        branch = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        x = F.relu(x + branch)
        x = F.relu6(self.down_bn(self.down(x)))
        x = self.gap(self.pool(x))
        return self.fc(torch.flatten(x, 1))


class MnistFC(nn.Module):
    """784 -> width -> ReLU -> width -> ReLU -> width -> ReLU -> 10: the fully connected networks of the
    Brevitas/FINN BNN-PYNQ results, TFC (width 64), SFC (256) and LFC (1024), without their batch norms and
    dropout."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.fc1 = nn.Linear(784, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, width)
        self.fc4 = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc4(F.relu(self.fc3(x)))


class MnistCNN(nn.Module):
    """A small CNN for [batch, 1, 28, 28] MNIST; 3x3 convolutions, padding 1, no bias, batch norm folded.

    ::

        conv(1 -> c1) + BN + ReLU, MaxPool2d(2)        [c1, 14, 14]
        conv(c1 -> c2) + BN + ReLU, MaxPool2d(2)       [c2, 7, 7]
        conv(c2 -> c2) + BN + ReLU                     [c2, 7, 7]
        AdaptiveAvgPool2d(1), flatten, Linear(c2 -> 10)
    """

    def __init__(self, channels: tuple[int, int] = (16, 32)):
        super().__init__()
        c1, c2 = channels
        self.conv1, self.bn1 = _conv_bn(1, c1)
        self.conv2, self.bn2 = _conv_bn(c1, c2)
        self.conv3, self.bn3 = _conv_bn(c2, c2)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(self.gap(x), 1))
