"""Training for Systola's model zoo: float training, quantization-aware fine-tuning and `.pt2` export.

Everything is seeded (`SEED`): a rerun on the same machine, single-threaded, gives the same weights and
quantization parameters. `qat` is torch.export -> `prepare_qat_pt2e` with `SystolaQuantizer` -> fine-tuning
-> `convert_pt2e`; its keyword arguments are the recipe (see `emu.zoo.digits.RECIPES`).
"""
from __future__ import annotations

import copy
import math
import os
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from emu.frontend import SystolaQuantizer  # imports torchao quietly, so it goes first
from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train  # noqa: E402
from torchao.quantization.pt2e.learnable_fake_quantize import enable_range_learning  # noqa: E402
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e  # noqa: E402
from emu.frontend.binary import binarize_weights  # noqa: E402

__all__ = ["SEED", "fit", "accuracy", "correct", "train_float", "qat", "export_pt2"]

SEED = 0
_DYNAMIC_BATCH = {"x": {0: torch.export.Dim("batch")}}


def shifted(x: torch.Tensor, gen: torch.Generator, pixels: int) -> torch.Tensor:
    """Square images x (batch first, [b, 1, s, s] or flattened [b, s*s]) each moved by a random whole number
    of pixels, up to `pixels` in each direction; what moves in is 0."""
    side = math.isqrt(x[0].numel())
    images = x.reshape(len(x), 1, side, side)
    padded = F.pad(images, (pixels,) * 4)
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, len(x)), generator=gen)
    rows = (dy[:, None] + torch.arange(side))[:, :, None]           # [b, s, 1]
    cols = (dx[:, None] + torch.arange(side))[:, None, :]           # [b, 1, s]
    out = padded[torch.arange(len(x))[:, None, None], 0, rows, cols]
    return out.reshape(x.shape)


def fit(model, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, batch: int = 64,
        cosine: bool = False, augment: int = 0) -> None:
    """Adam on cross-entropy; ``cosine`` anneals the learning rate to 0 over the epochs; ``augment`` > 0
    moves each training image by up to that many pixels each time it is seen (`shifted`, its own seeded
    generator, so the batch order is that of ``augment=0``)."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(SEED)
    moves = torch.Generator().manual_seed(SEED + 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs) if cosine else None
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(batch):
            opt.zero_grad()
            xb = shifted(xt[idx], moves, augment) if augment else xt[idx]
            F.cross_entropy(model(xb), yt[idx]).backward()
            opt.step()
        if schedule is not None:
            schedule.step()


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in [0, 1] of a float or converted model on float32 inputs."""
    return correct(model, x, y) / len(y)


def correct(model, x: np.ndarray, y: np.ndarray) -> int:
    with torch.no_grad():
        return int((model(torch.from_numpy(x)).argmax(1).numpy() == y).sum())


def train_float(net: Callable[[], torch.nn.Module], x_train: np.ndarray, y_train: np.ndarray, *, epochs: int,
                lr: float, augment: int = 0) -> torch.nn.Module:
    """A float network made by `net()` under a fixed seed and trained with `fit`; returned in eval mode."""
    torch.manual_seed(SEED)
    model = net()
    model.train()
    fit(model, x_train, y_train, epochs, lr, augment=augment)
    return model.eval()


def qat(model: torch.nn.Module, act_bits: int, weight_bits: int, x_train: np.ndarray, y_train: np.ndarray,
        epochs: int = 30, lr: float = 1e-3, *, calibration: str = "minmax", weight_calibration: str = "minmax",
        learn_scales: bool = False, layer_bits: dict | None = None, cosine: bool = False,
        augment: int = 0) -> torch.fx.GraphModule:
    """Quantization-aware fine-tuning of a copy of `model`; returns the `convert_pt2e` result.

    With ``learn_scales`` the quantizers are first calibrated on the whole training set (eval mode, so
    batch norms keep their statistics), then their scales and zero points train with the weights (LSQ).
    """
    torch.manual_seed(SEED)
    example = (torch.from_numpy(x_train[:8]),)
    graph = torch.export.export(_copy(model), example, dynamic_shapes=_DYNAMIC_BATCH).module()
    quantizer = SystolaQuantizer(act_bits=act_bits, weight_bits=weight_bits, is_qat=True, calibration=calibration,
                                 weight_calibration=weight_calibration, learn_scales=learn_scales,
                                 layer_bits=layer_bits)
    prepared = prepare_qat_pt2e(graph, quantizer)
    if learn_scales:
        move_exported_model_to_eval(prepared)
        with torch.no_grad():
            prepared(torch.from_numpy(x_train))
        prepared.apply(enable_range_learning)
    move_exported_model_to_train(prepared)
    fit(prepared, x_train, y_train, epochs, lr, cosine=cosine, augment=augment)
    move_exported_model_to_eval(prepared)
    binarize_weights(prepared)     # 1-bit weights to exactly ±scale, so that they convert to ±1, never 0
    return convert_pt2e(prepared)


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).eval()


def export_pt2(converted: torch.fx.GraphModule, path: str, dynamic_batch: bool = True,
               input_shape: tuple[int, ...] = (64,)) -> torch.export.ExportedProgram:
    """torch.export `converted` ([batch, *input_shape] float input) and save it to `path`.

    The float weights `convert_pt2e` leaves behind (unused once the integer weights are folded in) are
    dropped first so the file holds only what the graph reads.
    """
    _drop_unused_parameters(converted)
    example = (torch.zeros(8, *input_shape),)
    dynamic = _DYNAMIC_BATCH if dynamic_batch else None
    ep = torch.export.export(converted, example, dynamic_shapes=dynamic)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.export.save(ep, path)
    return ep


def _drop_unused_parameters(gm: torch.fx.GraphModule) -> None:
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(gm.get_submodule(owner) if owner else gm, attr)
