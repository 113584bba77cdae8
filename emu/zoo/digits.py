"""A small digits classifier, quantization-aware trained for Systola and exported as `.pt2`.

Data: scikit-learn's bundled `load_digits()` (1797 8x8 images, no download), split with
``train_test_split(test_size=0.25, random_state=0, stratify=y)``. Pixels (0..16) are divided by 16, so
inputs are float32 in [0, 1], flattened to 64 features.

Model: `DigitsMLP`, 64 -> 64 -> ReLU -> 32 -> ReLU -> 10 (torch.nn.Linear layers with bias).

Flow: `train_float` (Adam, fixed seed) -> `qat` (torch.export, `prepare_qat_pt2e` with `SystolaQuantizer`,
a few fine-tuning epochs, `convert_pt2e`) -> `export_pt2` (torch.export with a static or dynamic batch,
`torch.export.save`). Everything is seeded and `main` runs single-threaded, so a rerun reproduces the same
weights, quantization parameters and accuracies (only the archive's random serialization id differs).

``python examples/train_digits.py`` regenerates ``emu/zoo/models/digits_mlp_{float.pt,w8a8.pt2,w4a4.pt2}``
and prints float and quantized test accuracies; `checkpoint(tag)` and `float_model()` read them back.
"""
from __future__ import annotations

import copy
import os

import numpy as np
import torch
import torch.nn.functional as F

from ..frontend import SystolaQuantizer  # imports torchao quietly, so it goes first
from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train  # noqa: E402
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e  # noqa: E402

__all__ = ["load_split", "DigitsMLP", "train_float", "qat", "export_pt2", "accuracy", "MODELS_DIR", "main",
           "checkpoint", "float_model", "TAGS"]

MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
SEED = 0
_DYNAMIC_BATCH = {"x": {0: torch.export.Dim("batch")}}


TAGS = ("w8a8", "w4a4")


def checkpoint(tag: str) -> str:
    """Path of a shipped quantized checkpoint: tag is one of TAGS."""
    if tag not in TAGS:
        raise ValueError(f"digits checkpoint {tag!r} is not accepted: expected one of {', '.join(TAGS)}")
    return os.path.join(MODELS_DIR, f"digits_mlp_{tag}.pt2")


def float_model() -> "DigitsMLP":
    """The float model the shipped checkpoints were fine-tuned from."""
    model = DigitsMLP()
    model.load_state_dict(torch.load(os.path.join(MODELS_DIR, "digits_mlp_float.pt"), weights_only=True))
    return model.eval()


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): x float32 [n, 64] in [0, 1], y int64 labels 0..9."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    return x_train, y_train, x_test, y_test


class DigitsMLP(torch.nn.Module):
    def __init__(self, hidden: tuple[int, int] = (64, 32)):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, hidden[0])
        self.fc2 = torch.nn.Linear(hidden[0], hidden[1])
        self.fc3 = torch.nn.Linear(hidden[1], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def _fit(model, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, batch: int = 64) -> None:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(batch):
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in [0, 1] of a float or converted model on float32 inputs."""
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def train_float(x_train: np.ndarray, y_train: np.ndarray, epochs: int = 100, lr: float = 3e-3) -> DigitsMLP:
    """A float DigitsMLP trained from a fixed seed."""
    torch.manual_seed(SEED)
    model = DigitsMLP()
    _fit(model, x_train, y_train, epochs, lr)
    return model.eval()


def qat(model: torch.nn.Module, act_bits: int, weight_bits: int, x_train: np.ndarray, y_train: np.ndarray,
        epochs: int = 30, lr: float = 1e-3) -> torch.fx.GraphModule:
    """Quantization-aware fine-tuning of a copy of `model`; returns the `convert_pt2e` result."""
    torch.manual_seed(SEED)
    example = (torch.from_numpy(x_train[:8]),)
    graph = torch.export.export(_copy(model), example, dynamic_shapes=_DYNAMIC_BATCH).module()
    prepared = prepare_qat_pt2e(graph, SystolaQuantizer(act_bits=act_bits, weight_bits=weight_bits, is_qat=True))
    move_exported_model_to_train(prepared)
    _fit(prepared, x_train, y_train, epochs, lr)
    move_exported_model_to_eval(prepared)
    return convert_pt2e(prepared)


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).eval()


def export_pt2(converted: torch.fx.GraphModule, path: str, dynamic_batch: bool = True,
               features: int = 64) -> torch.export.ExportedProgram:
    """torch.export `converted` ([batch, features] float input) and save it to `path`.

    The float weights `convert_pt2e` leaves behind (unused once the integer weights are folded in) are
    dropped first so the file holds only what the graph reads.
    """
    _drop_unused_parameters(converted)
    example = (torch.zeros(8, features),)
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


def main() -> None:
    torch.set_num_threads(1)  # bit-for-bit repeatable training
    x_train, y_train, x_test, y_test = load_split()
    model = train_float(x_train, y_train)
    print(f"float      test accuracy {100 * accuracy(model, x_test, y_test):.2f} %")
    torch.save(model.state_dict(), os.path.join(MODELS_DIR, "digits_mlp_float.pt"))
    for bits in (8, 4):
        converted = qat(model, bits, bits, x_train, y_train)
        path = os.path.join(MODELS_DIR, f"digits_mlp_w{bits}a{bits}.pt2")
        ep = export_pt2(converted, path, dynamic_batch=True)
        print(f"W{bits}A{bits} QAT   test accuracy {100 * accuracy(ep.module(), x_test, y_test):.2f} %  "
              f"-> {os.path.relpath(path)} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
