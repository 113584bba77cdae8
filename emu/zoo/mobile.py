"""Mobile classifiers, written from their papers' definitions as torchvision builds them (its wheel does not
import on the CPU torch); `emu.zoo.vision` lists them with the other architectures and gives them random
weights with measured BatchNorm statistics.

- `MobileNetV3` (small): Howard et al. 2019 (hardswish, depthwise convolutions, squeeze-excitation with
  hardsigmoid), [batch, 3, 224, 224] -> 1000 logits.
- `MobileNetV2`: Sandler et al. 2018 (a 3x3/2 stem of 32, seventeen inverted residual blocks with ReLU6 and
  linear 1x1 projections, a 1x1 conv to 1280, global average pool, dropout, linear).
- `EfficientNet` (B0): Tan and Le 2019 (MBConv blocks with SiLU, 3x3 and 5x5 depthwise convolutions,
  squeeze-excitation with a sigmoid gate; stochastic depth is the identity in eval mode).
- `ShuffleNetV2` (x0.5): Ma et al. 2018 (a channel split, two branches, their concatenation and a channel
  shuffle in every block; 24-48-96-192-1024 channels).

Hardswish, hardsigmoid, SiLU, sigmoid, the squeeze-excitation multiply, ShuffleNet's chunk and shuffle (and
the cat of a chunk's half) are host ops (docs/operators.md); the convolutions, depthwise ones included, and
the cat of a stride-2 unit's two branches (a memory layout) run on the accelerator.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["MobileNetV3", "MobileNetV2", "EfficientNet", "ShuffleNetV2"]


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act=None) -> nn.Sequential:
    """A kxk convolution (padding (k-1)/2, no bias), BatchNorm, and activation module `act` unless None."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act is not None else nn.Sequential(*layers)


def _divisible(v: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: the nearest multiple of `divisor`, never 10 % below `v`."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class SqueezeExcite(nn.Module):
    """Hu et al. 2018: global average pool, 1x1 conv to `squeeze` channels, `act`, 1x1 conv back, `gate`,
    the map scaled channel by channel. MobileNetV3 uses ReLU and hardsigmoid, EfficientNet SiLU and
    sigmoid."""

    def __init__(self, channels: int, squeeze: int, act=torch.relu, gate=nn.functional.hardsigmoid):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(channels, squeeze, 1), nn.Conv2d(squeeze, channels, 1)
        self.act, self.gate = act, gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(nn.functional.adaptive_avg_pool2d(x, 1)))))


class InvertedResidual(nn.Module):
    """MobileNetV3's block: 1x1 expansion (unless `expanded` == `cin`), depthwise kxk, optional
    squeeze-excitation, 1x1 projection; a residual add when the shape is kept."""

    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, act: str, stride: int):
        super().__init__()
        act_layer = nn.Hardswish if act == "HS" else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != cin:
            layers += [nn.Conv2d(cin, expanded, 1, bias=False), nn.BatchNorm2d(expanded), act_layer()]
        layers += [nn.Conv2d(expanded, expanded, kernel, stride, kernel // 2, groups=expanded, bias=False),
                   nn.BatchNorm2d(expanded), act_layer()]
        if se:
            layers.append(SqueezeExcite(expanded, _divisible(expanded // 4)))
        layers += [nn.Conv2d(expanded, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


#: MobileNetV3-Small's blocks (Howard et al. 2019, table 2): cin, kernel, expanded, cout, SE, activation, stride
MOBILENET_V3_SMALL = ((16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2),
                      (24, 3, 88, 24, False, "RE", 1), (24, 5, 96, 40, True, "HS", 2),
                      (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
                      (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1),
                      (48, 5, 288, 96, True, "HS", 2), (96, 5, 576, 96, True, "HS", 1),
                      (96, 5, 576, 96, True, "HS", 1))


class MobileNetV3(nn.Module):
    """MobileNetV3-Small as torchvision defines it: 3x3/2 stem of 16 channels with hardswish, the eleven
    blocks, a 1x1 conv to 576 with hardswish, global average pool, linear 1024 with hardswish, dropout,
    linear to the classes."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.blocks = nn.Sequential(*(InvertedResidual(*b) for b in MOBILENET_V3_SMALL))
        self.head = nn.Sequential(nn.Conv2d(96, 576, 1, bias=False), nn.BatchNorm2d(576), nn.Hardswish())
        self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(1024, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.head(self.blocks(self.stem(x))), 1)
        return self.classifier(torch.flatten(x, 1))


class InvertedResidualV2(nn.Module):
    """MobileNetV2's block: 1x1 expansion with ReLU6 (unless `expand` is 1), depthwise 3x3 with ReLU6, a
    linear 1x1 projection; a residual add when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = int(round(cin * expand))
        layers = [conv_bn(cin, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
        self.block = nn.Sequential(*layers, conv_bn(hidden, hidden, 3, stride, hidden, nn.ReLU6),
                                   conv_bn(hidden, cout, 1))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


#: MobileNetV2's stages (Sandler et al. 2018, table 2): expansion t, channels c, blocks n, first stride s
MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        layers, cin = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)], 32
        for t, c, n, s in MOBILENET_V2:
            for i in range(n):
                layers.append(InvertedResidualV2(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*layers, conv_bn(cin, 1280, 1, act=nn.ReLU6))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class MBConv(nn.Module):
    """EfficientNet's block: 1x1 expansion with SiLU (unless `expand` is 1), depthwise kxk with SiLU,
    squeeze-excitation to a quarter of the block's input channels, a linear 1x1 projection, a residual add
    when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1, act=nn.SiLU)] if expand != 1 else []
        self.block = nn.Sequential(*layers, conv_bn(hidden, hidden, kernel, stride, hidden, nn.SiLU),
                                   SqueezeExcite(hidden, max(1, cin // 4), nn.functional.silu, torch.sigmoid), conv_bn(hidden, cout, 1))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


#: EfficientNet-B0's stages (Tan and Le 2019, table 1): expansion, kernel, first stride, cin, cout, blocks
EFFICIENTNET_B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                   (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class EfficientNet(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        layers = [conv_bn(3, 32, 3, 2, act=nn.SiLU)]
        for t, k, s, cin, cout, n in EFFICIENTNET_B0:
            layers += [MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, t) for i in range(n)]
        self.features = nn.Sequential(*layers, conv_bn(320, 1280, 1, act=nn.SiLU))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, C, H, W] -> channels reordered as (C/groups, groups): ShuffleNet's view, transpose, view."""
    b, c, h, w = x.size()
    x = torch.transpose(x.view(b, groups, c // groups, h, w), 1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleBlock(nn.Module):
    """ShuffleNetV2's unit: with stride 1 half the channels pass and the other half go through 1x1, depthwise
    3x3 and 1x1; with stride 2 both halves are branches of the whole input. Concatenated, then shuffled."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        half = cout // 2
        self.stride = stride
        self.branch1 = nn.Sequential(conv_bn(cin, cin, 3, stride, cin), conv_bn(cin, half, 1, act=nn.ReLU)) \
            if stride > 1 else None
        self.branch2 = nn.Sequential(conv_bn(cin if stride > 1 else half, half, 1, act=nn.ReLU),
                                     conv_bn(half, half, 3, stride, half), conv_bn(half, half, 1, act=nn.ReLU))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 x0.5: 3x3/2 stem of 24 with a 3x3/2 max pool, stages of 4, 8 and 4 units of 48, 96 and
    192 channels, a 1x1 conv to 1024, the mean over H and W, one linear layer."""

    def __init__(self, classes: int = 1000, repeats: tuple[int, ...] = (4, 8, 4),
                 widths: tuple[int, ...] = (24, 48, 96, 192, 1024)):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, widths[0], 3, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1))
        units, cin = [], widths[0]
        for n, cout in zip(repeats, widths[1:-1]):
            units += [ShuffleBlock(cin, cout, 2)] + [ShuffleBlock(cout, cout, 1) for _ in range(n - 1)]
            cin = cout
        self.stages = nn.Sequential(*units)
        self.conv5 = conv_bn(cin, widths[-1], 1, act=nn.ReLU)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv5(self.stages(self.stem(x))).mean([2, 3]))
