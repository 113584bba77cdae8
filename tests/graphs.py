"""Random integer graphs for property tests: a chain of Dense layers with plausible quantization."""
from __future__ import annotations

import numpy as np

from emu.ir import Dense, Graph, QParams, TensorInfo


def random_mlp(rng: np.random.Generator, dims: list[int], *, act_bits: int = 8, weight_bits: int = 8,
               relu: bool = True) -> Graph:
    """dims = [K0, N1, N2, ...]; weights uniform over the full signed range, scales near what PTQ gives."""
    amin, amax = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    wmax = (1 << (weight_bits - 1)) - 1
    tensors = {"x": TensorInfo("x", (dims[0],), QParams(0.05, int(rng.integers(amin, amax + 1)), act_bits))}
    nodes = []
    for li, (k, n) in enumerate(zip(dims[:-1], dims[1:])):
        name_in, name_out = ("x" if li == 0 else f"t{li}"), f"t{li + 1}"
        w = rng.integers(-wmax, wmax + 1, size=(n, k))
        w_scale = rng.uniform(0.5, 2.0, size=n) / (wmax * np.sqrt(k))
        sx = tensors[name_in].qparams.scale
        zy = int(rng.integers(amin, 1)) if relu else int(rng.integers(amin // 2, amax // 2 + 1))
        tensors[name_out] = TensorInfo(name_out, (n,), QParams(float(sx * rng.uniform(0.3, 1.5)), zy, act_bits))
        bias = rng.integers(-2000, 2000, size=n)
        clamp = (max(amin, zy) if relu else amin, amax)
        nodes.append(Dense(f"fc{li + 1}", name_in, name_out, w, w_scale, weight_bits, bias, clamp))
    return Graph(tensors, nodes, "x", name_out)


def random_input(rng: np.random.Generator, graph: Graph, batch: int) -> np.ndarray:
    q = graph.tensors[graph.input].qparams
    return rng.integers(q.qmin, q.qmax + 1, size=(batch,) + graph.tensors[graph.input].shape)
