"""Digits classifiers, quantization-aware trained for Systola and exported as `.pt2`.

Data: scikit-learn's bundled `load_digits()` (1797 8x8 images, no download), split with
``train_test_split(test_size=0.25, random_state=0, stratify=y)``. Pixels (0..16) are divided by 16, so
inputs are float32 in [0, 1]: flattened to [n, 64] for the MLP, [n, 1, 8, 8] for the CNN
(``load_split(model)``).

Models (`emu.zoo.nets`): ``"mlp"`` = `DigitsMLP` (64-64-32-10), ``"cnn"`` = `DigitsCNN` (3x3 convolutions
with batch norm, one residual block, a stride-2 convolution, max and global average pooling, one linear).

Flow: `train_float` (Adam, fixed seed) -> `qat` (torch.export, `prepare_qat_pt2e` with `SystolaQuantizer`,
fine-tuning, `convert_pt2e`) -> `export_pt2` (torch.export with a static or dynamic batch,
`torch.export.save`). The fine-tuning recipe per model and width is `RECIPES`: at 8 and 4 bits fake
quantization with moving-average min/max observers; at 2 bits LSQ (learned scales and zero points,
torchao's `LearnableFakeQuantize` with LSQ gradient scaling) initialised by MSE-optimal clipping on the
training set, a cosine learning-rate decay, and 8-bit logits. Everything is seeded and `main` runs single-threaded, so a rerun on the same machine reproduces the
same weights, quantization parameters and accuracies (only the archive's random serialization id differs).

``python examples/train_digits.py`` regenerates ``emu/zoo/models/digits_{mlp,cnn}_{float.pt,w8a8.pt2,
w4a4.pt2,w2a2.pt2}`` and ``accuracy.json`` (correct test images of each), and prints the table;
`checkpoint(tag, model)` and `float_model(model)` read them back.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from emu.zoo import datasets, train
from emu.zoo.nets import DigitsCNN, DigitsMLP
from emu.zoo.train import accuracy, export_pt2, qat


__all__ = ["load_split", "DigitsMLP", "DigitsCNN", "train_float", "qat", "export_pt2", "accuracy", "MODELS_DIR",
           "main", "checkpoint", "float_model", "TAGS", "MODELS", "RECIPES", "ACCURACY_FILE",
           "recorded_accuracy"]

MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
#: Correct test images of every shipped model, written by `main`.
ACCURACY_FILE = os.path.join(MODELS_DIR, "accuracy.json")
SEED = train.SEED

#: Model name -> network class.
MODELS = {"mlp": DigitsMLP, "cnn": DigitsCNN}
#: Model name -> shape of one input (without the batch dimension).
INPUT_SHAPES = {"mlp": (64,), "cnn": (1, 8, 8)}
#: Quantized checkpoints shipped for every model.
TAGS = ("w8a8", "w4a4", "w2a2")
#: Float training (epochs, learning rate) per model.
FLOAT_TRAINING = {"mlp": (100, 3e-3), "cnn": (40, 3e-3)}

#: Fine-tuning recipe per model and width (act_bits = weight_bits): `qat` keyword arguments. At 2 bits the
#: logits (the last layer's output) stay 8-bit: 4 output levels would tie most argmaxes.
RECIPES = {
    "mlp": {
        8: dict(epochs=30, lr=1e-3),
        4: dict(epochs=30, lr=1e-3),
        2: dict(epochs=120, lr=3e-3, cosine=True, calibration="mse", weight_calibration="mse", learn_scales=True,
                layer_bits={"fc3": (8, 2)}),
    },
    "cnn": {
        8: dict(epochs=30, lr=1e-3),
        4: dict(epochs=30, lr=1e-3),
        2: dict(epochs=60, lr=3e-3, cosine=True, calibration="mse", weight_calibration="mse", learn_scales=True,
                layer_bits={"fc": (8, 2)}),
    },
}


def _check_model(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"digits model {model!r} is not accepted: expected one of {', '.join(MODELS)}")
    return model


def checkpoint(tag: str, model: str = "mlp") -> str:
    """Path of a shipped quantized checkpoint: tag is one of TAGS, model one of MODELS."""
    _check_model(model)
    if tag not in TAGS:
        raise ValueError(f"digits checkpoint {tag!r} is not accepted: expected one of {', '.join(TAGS)}")
    return os.path.join(MODELS_DIR, f"digits_{model}_{tag}.pt2")


def float_model(model: str = "mlp") -> torch.nn.Module:
    """The float model the shipped checkpoints were fine-tuned from."""
    net = MODELS[_check_model(model)]()
    net.load_state_dict(torch.load(os.path.join(MODELS_DIR, f"digits_{model}_float.pt"), weights_only=True))
    return net.eval()


def recorded_accuracy(model: str = "mlp") -> dict[str, int]:
    """Correct test images ("float" and each tag) recorded when the shipped checkpoints were trained."""
    with open(ACCURACY_FILE) as f:
        return json.load(f)[_check_model(model)]


def load_split(model: str = "mlp") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): x float32 in [0, 1] shaped for `model`, y int64 labels 0..9
    (`emu.zoo.datasets.load("digits")`)."""
    shape = INPUT_SHAPES[_check_model(model)]
    split = datasets.load("digits")
    return (split.x_train.reshape(-1, *shape), split.y_train, split.x_test.reshape(-1, *shape), split.y_test)


def train_float(x_train: np.ndarray, y_train: np.ndarray, epochs: int | None = None, lr: float | None = None,
                model: str = "mlp") -> torch.nn.Module:
    """A float `model` trained from a fixed seed (epochs and lr default to FLOAT_TRAINING[model])."""
    default_epochs, default_lr = FLOAT_TRAINING[_check_model(model)]
    return train.train_float(MODELS[model], x_train, y_train, epochs=epochs or default_epochs,
                             lr=lr or default_lr)


def train_model(model: str, tags: tuple[str, ...] = TAGS, out_dir: str = MODELS_DIR) -> dict[str, int]:
    """Train `model` in float and at each tag; write its checkpoints; return correct test images of each."""
    x_train, y_train, x_test, y_test = load_split(model)
    net = train_float(x_train, y_train, model=model)
    torch.save(net.state_dict(), os.path.join(out_dir, f"digits_{model}_float.pt"))
    correct = {"float": train.correct(net, x_test, y_test)}
    for tag in tags:
        bits = int(tag[1])
        converted = qat(net, bits, bits, x_train, y_train, **RECIPES[model][bits])
        path = os.path.join(out_dir, f"digits_{model}_{tag}.pt2")
        ep = export_pt2(converted, path, dynamic_batch=True, input_shape=INPUT_SHAPES[model])
        correct[tag] = train.correct(ep.module(), x_test, y_test)
    return correct


def main() -> None:
    torch.set_num_threads(1)  # bit-for-bit repeatable training
    total = len(load_split()[3])
    results = {model: train_model(model) for model in MODELS}
    with open(ACCURACY_FILE, "w") as f:
        json.dump({"test_images": total, **results}, f, indent=2)
        f.write("\n")
    print(f"digits test accuracy ({total} held-out images), torch float and QAT-converted Q/DQ models")
    print(f"{'model':5s} {'float':>7s}" + "".join(f" {tag.upper():>7s}" for tag in TAGS))
    for model, correct in results.items():
        print(f"{model:5s}" + "".join(f" {100 * correct[k] / total:6.2f}%" for k in ("float",) + TAGS))
    print(f"checkpoints and {os.path.relpath(ACCURACY_FILE)} in {os.path.relpath(MODELS_DIR)}")


if __name__ == "__main__":
    main()
