"""Torch's own quantize/dequantize float semantics, to cross-check the integer emulator.

`torch_layer` reruns the torch nodes one `ir.Dense` came from (its ``source``) with torch's ops:
``dequantize_per_tensor`` of the integer input, ``aten.linear`` with the dequantized weight and the model's
float bias, the activation, then ``quantize_per_tensor`` (round half to even, saturating) back to integers.
Any disagreement with the integer datapath is then a property of the integer requantization (Q31
multiplier, round half up, integer bias), expected to be at most 1 LSB.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import ir
from .lower import constants_of

__all__ = ["torch_layer", "torch_layer_outputs", "torch_forward"]


def _evaluator(ep: torch.export.ExportedProgram):
    """A function evaluating any node of `ep` whose inputs are all constants (weights, scales)."""
    consts = constants_of(ep)
    cache: dict[str, torch.Tensor] = {}

    def arg(a):
        if isinstance(a, torch.fx.Node):
            return value(a)
        if isinstance(a, (list, tuple)):
            return type(a)(arg(x) for x in a)
        return a

    def value(node: torch.fx.Node):
        if node.name not in cache:
            if node.name in consts:
                cache[node.name] = consts[node.name].detach()
            elif node.op == "get_attr":
                cache[node.name] = getattr(ep.graph_module, node.target).detach()
            elif node.op == "call_function":
                cache[node.name] = node.target(*arg(node.args), **arg(dict(node.kwargs)))
            else:
                raise ValueError(f"node {node.name!r} ({node.op}) is not a constant expression")
        return cache[node.name]

    return arg


def _dequantize_node(node: torch.fx.Node) -> torch.fx.Node:
    """The dequantize_per_tensor feeding a linear's input, looking through no-op views."""
    while node.target not in (torch.ops.quantized_decomposed.dequantize_per_tensor.default,
                              torch.ops.quantized_decomposed.dequantize_per_tensor.tensor):
        node = node.args[0]
    return node


def torch_layer(node_name: str, ep: torch.export.ExportedProgram, graph: ir.Graph, x_int: np.ndarray,
                _arg=None) -> np.ndarray:
    """Torch's integer output (int64 [B, N]) of IR node `node_name` for integer input `x_int` ([B, K])."""
    dense = next(n for n in graph.nodes if n.name == node_name)
    by_name = {n.name: n for n in ep.graph.nodes}
    chain = [by_name[s] for s in dense.source.split(" -> ")]
    arg = _arg or _evaluator(ep)
    dq = _dequantize_node(chain[0].args[0])
    x = torch.from_numpy(np.asarray(x_int, dtype=np.int8))
    v = dq.target(x, *arg(dq.args[1:]), **arg(dict(dq.kwargs)))
    with torch.no_grad():
        for node in chain:
            v = node.target(v, *arg(node.args[1:]), **arg(dict(node.kwargs)))
    return v.to(torch.int64).numpy()


def torch_layer_outputs(ep: torch.export.ExportedProgram, graph: ir.Graph,
                        x_int_per_layer_input: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`torch_layer` for every IR node: {node name: int64 [B, N]}, given {input tensor name: int64 [B, K]}."""
    arg = _evaluator(ep)
    return {n.name: torch_layer(n.name, ep, graph, x_int_per_layer_input[n.input], _arg=arg)
            for n in graph.nodes}


def torch_forward(ep: torch.export.ExportedProgram, x_float: np.ndarray) -> np.ndarray:
    """The whole converted model end to end in torch: float32 [B, ...] in, float32 out."""
    with torch.no_grad():
        y = ep.module()(torch.from_numpy(np.ascontiguousarray(x_float, dtype=np.float32)))
    return y.numpy().astype(np.float32)
