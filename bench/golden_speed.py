"""Golden emulator throughput on the digits MLP (the whole test split in one batch) against torch float32
eager on the same model (its weights dequantized), measured side by side in one run; prints the ratio.

    python bench/golden_speed.py [--rows R --cols C] [--repeats N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from emu.compiler.codegen import compile_graph
from emu.contract.config import AccelConfig
from emu.frontend import load_pt2, lower
from emu.emulator.reference import run_reference
from emu.runtime.run import quantize_input, run_program
from emu.zoo import digits


def float_twin(graph) -> torch.nn.Sequential:
    """torch float32 layers with the IR's dequantized weights and biases (ReLU where the layer clamps)."""
    layers = []
    for node in graph.nodes:
        sx = graph.tensors[node.input].qparams.scale
        lin = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0])
        lin.weight.data = torch.tensor(node.weight * node.weight_scale[:, None], dtype=torch.float32)
        lin.bias.data = torch.tensor(node.bias * sx * node.weight_scale, dtype=torch.float32)
        layers += [lin, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).eval()


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)  # eager small matmuls are fastest on one thread; two fight the emulator for 2 cores
    graph = lower(load_pt2(digits.checkpoint("w8a8")))
    x = digits.load_split()[2]
    model = float_twin(graph)
    xt = torch.from_numpy(x)
    print(f"digits MLP, {len(x)} samples in one batch; best of {args.repeats}")
    print(f"{'array':>6s} {'instrs':>6s} {'golden ms':>9s} {'torch ms':>8s} {'golden/torch speed':>18s} {'bit-exact':>9s}")
    for rows, cols in [(8, 8), (16, 16), (64, 64)]:
        cfg = AccelConfig(rows=rows, cols=cols)
        program = compile_graph(graph, cfg, batch=len(x))
        xq = quantize_input(program, x)
        out = run_program(program, xq)
        exact = np.array_equal(out.output, run_reference(graph, xq)[graph.output])
        with torch.no_grad():
            # interleaved in one run so both see the same machine load
            t_torch = best_of(lambda: model(xt), args.repeats)
            t_gold = best_of(lambda: run_program(program, xq), args.repeats)
        print(f"{rows:>3d}x{cols:<2d} {program.prog_len:6d} {1e3 * t_gold:9.2f} {1e3 * t_torch:8.3f} "
              f"{t_torch / t_gold:18.3f} {'yes' if exact else 'NO':>9s}")


if __name__ == "__main__":
    main()
