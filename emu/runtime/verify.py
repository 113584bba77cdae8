"""Cross-checking: every integer backend against the integer reference (exact, every element of every
layer), and the reference against torch's own converted Q/DQ model fed the same integers (within 1 LSB).
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Callable, TextIO

import numpy as np

from emu.compiler.codegen import compile_graph
from emu.contract.config import AccelConfig
from emu.compiler.ir import Graph
from emu.emulator.reference import run_reference
from emu.runtime.run import RunOutput, check_input, quantize_input, run_program

__all__ = ["LayerCheck", "check_layers", "verify"]


@dataclasses.dataclass
class LayerCheck:
    name: str
    elements: int
    backend_mismatches: dict[str, int]   # backend -> elements that differ from the reference
    torch_exact: int                     # elements equal to torch's
    torch_off_by_one: int                # elements exactly 1 LSB from torch's
    torch_worse: int                     # elements further away

    @property
    def ok(self) -> bool:
        return self.torch_worse == 0 and not any(self.backend_mismatches.values())


def check_layers(ep, graph: Graph, ref: dict[str, np.ndarray], runs: dict[str, RunOutput]) -> list[LayerCheck]:
    from emu.frontend.torchref import checked_tensor, torch_layer_outputs
    per_layer = torch_layer_outputs(ep, graph, ref)
    checks = []
    for node in graph.nodes:
        want = ref[node.output]
        mism = {b: int(np.count_nonzero(r.layers[node.output] != want)) for b, r in runs.items()}
        t = per_layer[node.name]
        d = np.abs(t - ref[checked_tensor(node)])
        checks.append(LayerCheck(node.name, want.size, mism, int((d == 0).sum()), int((d == 1).sum()),
                                 int((d > 1).sum())))
    return checks


def verify(ep, graph: Graph, cfg: AccelConfig, x: np.ndarray, backends: dict[str, Callable], *,
           batch: int | None = None, out: TextIO = sys.stdout) -> bool:
    """Compile, run every backend, compare; print a table; True if everything agrees."""
    from emu.frontend.torchref import torch_forward, torch_input
    check_input(x, graph.tensors[graph.input].shape, graph.input_layout)   # before the compile's seconds
    program = compile_graph(graph, cfg, batch=batch)
    xq = quantize_input(program, x)
    ref = run_reference(graph, xq)
    runs = {name: run_program(program, xq, backend=fn) for name, fn in backends.items()}
    checks = check_layers(ep, graph, ref, runs)

    names = list(backends)
    head = f"{'layer':16s} {'elements':>9s} " + " ".join(f"{b + ' = ref':>12s}" for b in names) \
        + f" {'torch exact':>12s} {'±1 LSB':>8s} {'worse':>6s}"
    print(f"verify on {cfg.describe()}, {len(x)} samples, {program.prog_len} instructions", file=out)
    print(head, file=out)
    for c in checks:
        cols = " ".join(f"{'equal' if c.backend_mismatches[b] == 0 else str(c.backend_mismatches[b]) + ' differ':>12s}"
                        for b in names)
        print(f"{c.name:16s} {c.elements:9d} {cols} {100 * c.torch_exact / c.elements:11.2f}% "
              f"{c.torch_off_by_one:8d} {c.torch_worse:6d}", file=out)
    for b, r in runs.items():
        print(f"{b}: {r.cycles} cycles in {r.runs} runs, utilization {100 * r.utilization(cfg):.1f} % "
              f"({100 * r.issued_utilization(cfg):.1f} % issued, with grouped convs' zero blocks)", file=out)
    if "golden" in runs and len(runs) > 1:
        for b, r in runs.items():
            if b != "golden":
                diff = r.cycles - runs["golden"].cycles
                print(f"{b} cycles - golden cycles = {diff} ({100 * diff / max(1, runs['golden'].cycles):+.3f} %)",
                      file=out)

    # end to end: each side feeds itself
    y_torch = np.asarray(torch_forward(ep, x), np.float32).reshape(len(x), -1)
    first = runs[names[0]]
    y_ours = program.output.qparams.dequantize(first.output).reshape(len(x), -1)
    agree = float(np.mean(y_torch.argmax(1) == y_ours.argmax(1)))
    print(f"end to end vs torch: max |diff| {np.abs(y_torch - y_ours).max():.4g} "
          f"(output LSB {program.output.qparams.scale:.4g}), predicted class agrees on {100 * agree:.1f} %",
          file=out)
    # the per-layer checks feed torch the program's own input, so a wrong input layout or quantization
    # would pass them: the program's input must equal torch's own quantize of the float input
    x_torch = torch_input(ep, graph, x)
    input_off = 0 if x_torch is None else int(np.count_nonzero(x_torch.reshape(len(x), -1) != xq.reshape(len(x), -1)))
    if x_torch is not None:
        print(f"input vs torch's input quantize: {'equal' if not input_off else f'{input_off} elements differ'}",
              file=out)
    ok = all(c.ok for c in checks) and not input_off
    print("PASS: backends equal the integer reference on every element; torch within 1 LSB; input as torch's"
          if ok else "FAIL", file=out)
    return ok
