"""What a sweep trains: the zoo's networks by name, or a user's Python file, and the QAT recipe per width.

A user's file (``--model my_net.py``) defines, at top level::

    model = MyNet            # a float nn.Module class or a function returning a fresh float nn.Module
    input_shape = (784,)     # one sample's shape without the batch: (784,) flat or (1, 28, 28) images

and optionally ``epochs = 30`` (float training epochs), ``lr = 1e-3`` and ``augment = 0`` (training
images moved by up to that many pixels). The file is run again in every
worker (its text travels with the work, so a Ray worker on another machine needs no copy of it).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Callable

__all__ = ["SweepModel", "ZOO", "resolve", "recipe", "build_net", "last_linear", "default_logit_bits"]


@dataclasses.dataclass(frozen=True)
class SweepModel:
    """name: a zoo name or the file's name; dataset: the one it fits (None: any with its input size);
    input_shape: one sample's shape; source: the user's file text (None for a zoo network); epochs / lr:
    float training; augment: training images moved by up to that many pixels (`emu.zoo.train.shifted`), in
    float training and QAT."""
    name: str
    input_shape: tuple[int, ...]
    epochs: int
    lr: float
    dataset: str | None = None
    source: str | None = None
    augment: int = 0

    @property
    def digest(self) -> str:
        """Content key of the network's definition: the zoo's sources, or the user's file text."""
        if self.source is not None:
            text = self.source.encode()
        else:
            from emu.zoo import nets
            with open(nets.__file__, "rb") as f:
                text = f.read()
        return hashlib.sha256(text + repr((self.name, self.input_shape, self.augment)).encode()).hexdigest()[:16]


#: Zoo name -> (network factory name in emu.zoo.nets with its arguments, model).
_ZOO_NETS = {
    "digits-mlp": ("DigitsMLP", {}), "digits-cnn": ("DigitsCNN", {}),
    "mnist-tfc": ("MnistFC", {"width": 64}), "mnist-sfc": ("MnistFC", {"width": 256}),
    "mnist-lfc": ("MnistFC", {"width": 1024}), "mnist-cnn": ("MnistCNN", {}),
}
ZOO = {
    "digits-mlp": SweepModel("digits-mlp", (64,), 100, 3e-3, "digits"),
    "digits-cnn": SweepModel("digits-cnn", (1, 8, 8), 40, 3e-3, "digits"),
    "mnist-tfc": SweepModel("mnist-tfc", (784,), 60, 1e-3, "mnist", augment=2),
    "mnist-sfc": SweepModel("mnist-sfc", (784,), 60, 1e-3, "mnist", augment=2),
    "mnist-lfc": SweepModel("mnist-lfc", (784,), 40, 1e-3, "mnist", augment=2),
    "mnist-cnn": SweepModel("mnist-cnn", (1, 28, 28), 30, 3e-3, "mnist", augment=2),
}


def _exec_file(source: str, path: str) -> dict:
    scope: dict = {"__name__": "systola_sweep_model", "__file__": path}
    exec(compile(source, path, "exec"), scope)
    return scope


def resolve(spec: str) -> SweepModel:
    """A zoo name or a path to a Python file (see the module docstring); ValueError names what is wrong."""
    if spec in ZOO:
        return ZOO[spec]
    if not spec.endswith(".py"):
        raise ValueError(f"--model {spec!r} is not accepted: expected a zoo name ({', '.join(ZOO)}) or a "
                         f"Python file defining `model` and `input_shape`")
    if not os.path.isfile(spec):
        raise ValueError(f"--model {spec!r} does not exist")
    with open(spec) as f:
        source = f.read()
    try:
        scope = _exec_file(source, spec)
    except Exception as e:
        raise ValueError(f"--model {spec!r} failed to run: {type(e).__name__}: {e}") from None
    missing = [k for k in ("model", "input_shape") if k not in scope]
    if missing:
        raise ValueError(f"--model {spec!r} does not define {' and '.join(missing)}: expected `model` (a float "
                         f"nn.Module class or factory) and `input_shape` (one sample's shape, e.g. (784,))")
    shape = scope["input_shape"]
    if not (isinstance(shape, (tuple, list)) and len(shape) in (1, 3) and all(isinstance(d, int) and d > 0
                                                                              for d in shape)):
        raise ValueError(f"--model {spec!r}: input_shape={shape!r} is not accepted: expected (features,) or "
                         f"(channels, height, width)")
    return SweepModel(os.path.basename(spec), tuple(shape), int(scope.get("epochs", 30)),
                      float(scope.get("lr", 1e-3)), source=source, augment=int(scope.get("augment", 0)))


def build_net(model: SweepModel) -> Callable:
    """A factory of fresh float networks for `model`."""
    if model.source is None:
        from emu.zoo import nets
        cls, kwargs = _ZOO_NETS[model.name]
        return lambda: getattr(nets, cls)(**kwargs)
    return _exec_file(model.source, model.name)["model"]


def last_linear(net) -> str:
    """Name of the last nn.Linear or nn.Conv2d module: the layer whose output is the logits."""
    import torch.nn as nn
    names = [n for n, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not names:
        raise ValueError("the model has no Linear or Conv2d layer")
    return names[-1]


def default_logit_bits(act_bits: int) -> int:
    """Width of the logits of a network with `act_bits` activations: 8 at 4 bits or fewer, where 16 output
    levels or fewer saturate the largest logit for many samples and tie their argmax (the MNIST TFC at W4A4
    scored 73.6 % with 4-bit logits)."""
    return 8 if act_bits <= 4 else act_bits


def recipe(model: SweepModel, *, weight_bits: int, act_bits: int, logit_bits: int, scale: float) -> dict:
    """`emu.zoo.train.qat` keyword arguments for one width, as JSON (layer_bits values are lists). At 8 bits:
    fake quantization with moving-average min/max observers for max(10, 30·scale) epochs. Below: LSQ with
    MSE-optimal initial clipping and a cosine decay, at 1-2 bits for max(20, 120·scale) epochs (60·scale
    for a CNN) at learning rate 3e-3, at 3-7 bits for max(20, 60·scale) at 1e-3. The last layer's output is
    `logit_bits` wide. The digits networks at 8, 4 and 2 bits use the shipped
    checkpoints' own recipes (`emu.zoo.digits.RECIPES`) at scale 1."""
    last = last_linear(build_net(model)())
    low = min(weight_bits, act_bits) < 8
    if model.name in ("digits-mlp", "digits-cnn") and weight_bits == act_bits and scale == 1:
        from emu.zoo.digits import RECIPES
        shipped = RECIPES[model.name.split("-")[1]].get(weight_bits)
        if shipped is not None and dict(shipped.get("layer_bits", {})).get(last, (act_bits, weight_bits)) == \
                (logit_bits, weight_bits):
            return dict(shipped, layer_bits={k: list(v) for k, v in shipped.get("layer_bits", {}).items()})
    conv = len(model.input_shape) == 3
    if not low:
        r = dict(epochs=max(10, round(30 * scale)), lr=1e-3)
    else:
        # 1-2 bits need the larger steps to move weights across their few levels; at 3 bits and more they
        # overshoot (the MNIST TFC at W4A4: 90.6 % at 3e-3 for 120 epochs, 95.8 % at 1e-3 for 60)
        narrow = min(weight_bits, act_bits) <= 2
        epochs = (60 if conv else 120) if narrow else 60
        r = dict(epochs=max(20, round(epochs * scale)), lr=3e-3 if narrow else 1e-3, cosine=True,
                 calibration="mse", weight_calibration="mse", learn_scales=True)
    r["layer_bits"] = {last: [logit_bits, weight_bits]} if logit_bits != act_bits else {}
    if model.augment:
        r["augment"] = model.augment
    return r
