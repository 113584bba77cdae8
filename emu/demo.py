"""`systola demo`: the digits MLP at W8A8 and W4A4, from the shipped checkpoints, end to end.

For each precision: float accuracy, torch's quantized (Q/DQ) accuracy, the golden emulator's accuracy
(equal to the integer reference's, checked), optionally the RTL's on a sample, cycles per inference and
array utilization, on an 8x8 array.
"""
from __future__ import annotations

import sys

import numpy as np

from .compiler import compile_graph
from .config import AccelConfig
from .reference import run_reference
from .runtime import get_backend, quantize_input, run_program

__all__ = ["run_demo"]


def _bar(desc):
    from tqdm import tqdm

    def wrap(it):
        return tqdm(it, desc=desc, unit="run", leave=False, file=sys.stderr)
    return wrap


def run_demo(*, quick: bool = False, rtl: bool = False, cfg: AccelConfig = AccelConfig()) -> int:
    from .frontend.lower import load_pt2, lower
    from .frontend.torchref import torch_forward
    from .zoo import digits

    _, _, x_test, y_test = digits.load_split()
    if quick:
        x_test, y_test = x_test[:100], y_test[:100]
    float_acc = digits.accuracy(digits.float_model(), x_test, y_test)
    print(f"Systola demo: digits MLP (64-64-32-10) on {len(x_test)} held-out images, {cfg.describe()}")
    head = f"{'precision':9s} {'float':>7s} {'torch Q/DQ':>10s} {'golden':>7s}" + (f" {'RTL':>13s}" if rtl else "") \
        + f" {'= int ref':>9s} {'cycles/inference':>16s} {'utilization':>11s}"
    rows, ok = [], True
    for tag in ("w8a8", "w4a4"):
        ep = load_pt2(digits.checkpoint(tag))
        graph = lower(ep)
        program = compile_graph(graph, cfg, batch=150)  # the 450 test images in three full runs
        xq = quantize_input(program, x_test)
        torch_acc = float(np.mean(torch_forward(ep, x_test).argmax(1) == y_test))
        gold = run_program(program, xq, progress=_bar(f"{tag} golden"))
        ref = run_reference(graph, xq)
        exact = all(np.array_equal(gold.layers[n.output], ref[n.output]) for n in graph.nodes)
        golden_acc = float(np.mean(gold.output.argmax(1) == y_test))
        rtl_cell = ""
        if rtl:
            n = 16
            out = run_program(program, xq[:n], backend=get_backend("rtl"))
            same = np.array_equal(out.output, gold.output[:n])
            exact = exact and same
            rtl_cell = f" {100 * float(np.mean(out.output.argmax(1) == y_test[:n])):5.1f}% of {n:<3d}"
        ok = ok and exact
        rows.append(f"{tag.upper():9s} {100 * float_acc:6.2f}% {100 * torch_acc:9.2f}% {100 * golden_acc:6.2f}%"
                    f"{rtl_cell} {'yes' if exact else 'NO':>9s} {gold.cycles / len(x_test):16.0f} "
                    f"{100 * gold.utilization(cfg):10.1f}%")
    print(head)
    print("\n".join(rows))
    print("golden and integer reference agree on every element of every layer" if ok else
          "MISMATCH between a backend and the integer reference")
    return 0 if ok else 1
