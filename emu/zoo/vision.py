"""Published image classifiers, written from their papers' definitions (torchvision's wheel does not import
on the CPU torch), with random weights and BatchNorm statistics measured on the model's own activations.

- `resnet18`: He et al. 2016, the ImageNet ResNet-18 exactly as torchvision defines it (7x7/2 stem, 3x3/2
  max pool, four stages of two basic blocks, 64-128-256-512 channels, 1x1/2 projection shortcuts),
  [batch, 3, 224, 224] -> 1000 logits.
- `vgg11`: Simonyan and Zisserman 2015, configuration A's feature extractor (eight 3x3 convolutions,
  64-128-256-256-512-512-512-512 channels, five 2x2 max pools) at 32x32, then a global average pool and one
  linear layer, as CIFAR adaptations do. `lenet5`: LeCun et al. 1998 at 28x28 (5x5 convs of 6 and 16
  channels with padding 2 on the first, 2x2 average pools, 120-84-10 linear layers, ReLU for tanh).
- `mobilenet_v3_small`, `mobilenet_v2`, `efficientnet_b0`, `shufflenet_v2_x0_5`: the mobile networks of
  `emu.zoo.mobile`, [batch, 3, 224, 224] -> 1000 logits; their hardswish, sigmoid-style gates,
  squeeze-excitation multiplies and ShuffleNet's split and shuffle are host ops (docs/operators.md).
- `squeezenet1_1`: Iandola et al. 2016, SqueezeNet 1.1 as torchvision defines it (ceil-mode 3x3/2 max pools,
  Fire modules whose channel concatenation is a memory layout), [batch, 3, 224, 224] -> 1000 logits: with
  `SystolaQuantizer` it runs wholly on the accelerator.
- `resnet20`: He et al. 2016 section 4.2, the CIFAR-10 ResNet-20 (3x3 stem, three stages of three basic
  blocks, 16-32-64 channels, global average pool), [batch, 3, 32, 32] -> 10 logits. Its shortcuts are the
  paper's option B (1x1 projections where the shape changes; option A's zero-padded identity is a channel
  concatenation the accelerator does not have yet).
- `vit_tiny`, `mixer_tiny`: a tiny ViT and MLP-Mixer of `emu.zoo.transformer` at 32x32 -> 10 logits; their
  linear layers run on the accelerator, LayerNorm, GELU and attention on the host.
- `lstm`, `gru`: the sequence classifiers of `emu.zoo.recurrent` over [batch, 8, 16] -> 5 logits; their
  linear layers and gate activations run on the accelerator, the gates' products on the host.
- `m5`: Dai et al. 2017, the M5 raw-waveform network as torchaudio's tutorial defines it (an 80-sample
  stride-16 Conv1d, three 3-tap Conv1ds of 32-32-64-64 channels, each with BatchNorm, ReLU and a 4-wide max
  pool, a global average pool and one linear layer), [batch, 1, 8000] (one second at 8 kHz) -> 35 keyword
  logits. The tutorial's final permute and log_softmax are left out: flattening gives the same logits, and
  log_softmax does not change the class.

No pretrained weights are reachable here, so `random_model` initialises the weights (He-normal, as
torchvision) and then sets every BatchNorm's running statistics from the activations of random inputs, as
training would leave them: every layer sees activations of unit scale and the network neither explodes nor
collapses to zero, so quantization ranges and accumulator widths are those of a trained network.
"""
from __future__ import annotations

import torch
from torch import nn

from emu.zoo.mobile import EfficientNet, MobileNetV2, MobileNetV3, ShuffleNetV2
from emu.zoo.recurrent import GRU, LSTM
from emu.zoo.transformer import Mixer, ViT

__all__ = ["ResNet", "resnet18", "resnet20", "VGG", "vgg11", "LeNet5", "SqueezeNet", "M5",
           "random_model", "quantized", "ARCHITECTURES", "QUANTIZERS"]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    """A ResNet of basic blocks: `stem` "imagenet" (7x7/2 conv + 3x3/2 max pool) or "cifar" (3x3 conv)."""

    def __init__(self, blocks: tuple[int, ...], widths: tuple[int, ...], classes: int, stem: str):
        super().__init__()
        w0 = widths[0]
        if stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(3, w0, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(w0),
                                      nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, w0, 3, padding=1, bias=False), nn.BatchNorm2d(w0), nn.ReLU())
        layers, cin = [], w0
        for stage, (n, width) in enumerate(zip(blocks, widths)):
            for b in range(n):
                layers.append(BasicBlock(cin, width, 2 if b == 0 and stage > 0 else 1))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def resnet18(classes: int = 1000) -> ResNet:
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), classes, "imagenet")


def resnet20(classes: int = 10) -> ResNet:
    return ResNet((3, 3, 3), (16, 32, 64), classes, "cifar")


class VGG(nn.Module):
    def __init__(self, plan: tuple, classes: int):
        super().__init__()
        layers, cin = [], 3
        for v in plan:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def vgg11(classes: int = 10) -> VGG:
    return VGG((64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"), classes)


class LeNet5(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.pool = nn.AvgPool2d(2)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84), nn.Linear(84, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = torch.flatten(self.pool(torch.relu(self.conv2(x))), 1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class Fire(nn.Module):
    """SqueezeNet's module: a 1x1 squeeze, then 1x1 and 3x3 expansions side by side, concatenated."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1, self.e3 = nn.Conv2d(squeeze, e1, 1), nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.e1(s)), torch.relu(self.e3(s))], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1 as torchvision defines it (Iandola et al. 2016): 3x3/2 stem of 64, 3x3/2 ceil-mode
    max pools, eight Fire modules, a 1x1 conv classifier with ReLU and a global average pool."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)      # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(), pool(), Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(), Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, classes, 1), nn.ReLU(),
                                        nn.AdaptiveAvgPool2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class M5(nn.Module):
    def __init__(self, classes: int = 35, channels: int = 32):
        super().__init__()
        widths = (1, channels, channels, 2 * channels, 2 * channels)
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(widths, widths[1:])):
            conv = nn.Conv1d(cin, cout, 80, stride=16) if i == 0 else nn.Conv1d(cin, cout, 3)
            layers += [conv, nn.BatchNorm1d(cout), nn.ReLU(inplace=True), nn.MaxPool1d(4)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1))
        self.fc = nn.Linear(2 * channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


#: name -> (constructor, input shape per sample at the architecture's own resolution: C x H x W, C x L, or
#: steps x features for a sequence)
ARCHITECTURES = {"resnet18": (resnet18, (3, 224, 224)), "resnet20": (resnet20, (3, 32, 32)),
                 "vgg11": (vgg11, (3, 32, 32)), "lenet5": (LeNet5, (1, 28, 28)),
                 "mobilenet_v3_small": (MobileNetV3, (3, 224, 224)), "mobilenet_v2": (MobileNetV2, (3, 224, 224)),
                 "efficientnet_b0": (EfficientNet, (3, 224, 224)),
                 "shufflenet_v2_x0_5": (ShuffleNetV2, (3, 224, 224)),
                 "vit_tiny": (ViT, (3, 32, 32)), "mixer_tiny": (Mixer, (3, 32, 32)),
                 "squeezenet1_1": (SqueezeNet, (3, 224, 224)), "m5": (M5, (1, 8000)),
                 "lstm": (LSTM, (8, 16)), "gru": (GRU, (8, 16))}


def random_model(name: str, *, seed: int = 0, calibration: int = 8, resolution: int | None = None
                 ) -> tuple[nn.Module, torch.Tensor]:
    """(model in eval mode, `calibration` random inputs): He-normal weights from `seed`, BatchNorm running
    statistics measured on those inputs (the cumulative average over one pass in training mode). The input
    is the architecture's own resolution unless `resolution` (H = W) says otherwise."""
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture {name!r} is not known: expected one of {', '.join(ARCHITECTURES)}")
    make, shape = ARCHITECTURES[name]
    if resolution is not None:
        shape = (shape[0], resolution) if len(shape) == 2 else (shape[0], resolution, resolution)
    torch.manual_seed(seed)
    model = make()
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.momentum = None          # cumulative: the statistics of exactly the calibration pass
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    x = torch.rand(calibration, *shape)
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval(), x


#: quantizers `quantized` takes: Systola's own, and torchao's XNNPACK-style symmetric per-channel int8
QUANTIZERS = ("systola", "xnnpack")


def _quantizer(kind: str, act_bits: int, weight_bits: int):
    from emu.frontend import SystolaQuantizer
    if kind == "systola":
        return SystolaQuantizer(act_bits=act_bits, weight_bits=weight_bits)
    if kind != "xnnpack" or (act_bits, weight_bits) != (8, 8):
        raise ValueError(f"quantizer {kind!r} at W{weight_bits}A{act_bits} is not accepted: expected "
                         f"{' or '.join(QUANTIZERS)} (xnnpack at W8A8 only)")
    import warnings
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # XNNPACKQuantizer warns that it is deprecated
        return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))


def quantized(name: str, *, seed: int = 0, act_bits: int = 8, weight_bits: int = 8, calibration: int = 8,
              resolution: int | None = None, quantizer: str = "systola"
              ) -> tuple[torch.export.ExportedProgram, torch.Tensor]:
    """(the exported Q/DQ program of `random_model(name)` quantized post-training with `quantizer`, its
    calibration inputs); the batch is dynamic."""
    from emu.frontend import convert_pt2e, prepare_pt2e
    q = _quantizer(quantizer, act_bits, weight_bits)
    model, x = random_model(name, seed=seed, calibration=calibration, resolution=resolution)
    batch = {"x": {0: torch.export.Dim("batch")}}
    graph = torch.export.export(model, (x,), dynamic_shapes=batch).module()
    prepared = prepare_pt2e(graph, q)
    with torch.no_grad():
        prepared(x)
    return torch.export.export(convert_pt2e(prepared), (x,), dynamic_shapes=batch), x
