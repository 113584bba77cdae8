"""The integer reference: the graph evaluated straight from the IR, no tiling, no hardware.

Every integer backend (golden, RTL) must equal it on every element of every layer.
"""
from __future__ import annotations

import numpy as np

from . import numerics
from .ir import Dense, Graph

__all__ = ["run_reference"]


def _dense(node: Dense, graph: Graph, x: np.ndarray) -> np.ndarray:
    zx = graph.tensors[node.input].qparams.zero_point
    zy = graph.tensors[node.output].qparams.zero_point
    # float64 products are exact: |sum| < 2**31 (the compiler's accumulator proof) << 2**53
    acc = ((x - zx).astype(np.float64) @ np.asarray(node.weight, np.float64).T).astype(np.int64)
    acc += np.asarray(node.bias, np.int64)
    mult, shift = node.requant(graph)
    return numerics.requantize(acc, 0, mult, shift, zy, *node.clamp)


def run_reference(graph: Graph, x_int: np.ndarray) -> dict[str, np.ndarray]:
    """Integer tensors by name (int64, batch first) for an integer input of shape [B, *input shape]."""
    values = {graph.input: np.asarray(x_int, np.int64)}
    for node in graph.nodes:
        x = values[node.input].reshape(len(x_int), -1)
        values[node.output] = _dense(node, graph, x).reshape((len(x_int),) + graph.tensors[node.output].shape)
    return values
