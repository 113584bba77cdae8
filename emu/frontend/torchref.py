"""Torch's own quantize/dequantize float semantics, to cross-check the integer emulator.

`torch_layer_outputs` interprets the converted torch graph with every IR tensor's quantize node fed the
integers the emulator computed, so each layer runs torch's own ops (``dequantize_per_tensor``, the float
conv/linear/pool/add with the model's float bias, the activation, ``quantize_per_tensor``: round half to
even, saturating) on exactly the emulator's inputs.
Any disagreement with the integer datapath is then a property of the integer requantization (Q31
multiplier, round half up, integer bias), expected to be at most 1 LSB.
"""
from __future__ import annotations

import numpy as np
import torch

from emu.compiler import ir
from emu.compiler.host import ir_to_torch, torch_to_ir
from emu.frontend.lower import constants_of, static_batch

__all__ = ["torch_layer", "torch_layer_outputs", "checked_tensor", "torch_forward", "torch_input", "static_batch"]


def _in_batches(ep: torch.export.ExportedProgram, n: int, run):
    """`run(start, stop, pad)` over [0, n) in slices a static-batch model takes (padded to its batch), or in
    one slice for a dynamic one; returns the list of the results, each already cut to its slice."""
    b = static_batch(ep)
    if b is None:
        return [run(0, n, 0)]
    return [run(s, min(s + b, n), b - (min(s + b, n) - s)) for s in range(0, n, b)]


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


def torch_layer_outputs(ep: torch.export.ExportedProgram, graph: ir.Graph,
                        inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`_layer_outputs` in slices of a static-batch model's batch (padding repeats the last sample)."""
    n = len(next(iter(inputs.values())))

    def run(start, stop, pad):
        part = {k: np.concatenate([v[start:stop]] + [v[stop - 1:stop]] * pad) for k, v in inputs.items()}
        return {k: v[:stop - start] for k, v in _layer_outputs(ep, graph, part).items()}
    parts = _in_batches(ep, n, run)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _layer_outputs(ep: torch.export.ExportedProgram, graph: ir.Graph,
                   inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Torch's integer output of every IR node whose inputs are all in `inputs`, fed exactly those integers.

    The converted graph is interpreted node by node; the quantize node that defines an IR tensor given in
    `inputs` is replaced by those integers for everything downstream, so each layer sees the same inputs
    as the integer emulator. {node name: int64 [B, *output shape] in IR layout}."""
    arg = _evaluator(ep)
    B = len(next(iter(inputs.values())))
    env: dict[str, torch.Tensor] = {}
    computed: dict[str, torch.Tensor] = {}
    user = ep.graph_signature.user_inputs
    # the value a layer with a fused activation table requantizes to: torch's tensor before the table
    before = {n.activation.tensor: n for n in graph.nodes if getattr(n, "activation", None) and n.activation.tensor}

    def resolve(a):
        if isinstance(a, torch.fx.Node):
            return env[a.name] if a.name in env else arg(a)
        if isinstance(a, (list, tuple)):
            return type(a)(resolve(x) for x in a)
        return a

    with torch.no_grad():
        for node in ep.graph.nodes:
            if node.op == "placeholder" and node.name in user:
                shape = node.meta["val"].shape
                env[node.name] = torch.zeros((B,) + tuple(int(d) for d in shape[1:]))
            elif node.op == "call_function":
                v = node.target(*resolve(node.args), **resolve(dict(node.kwargs)))
                if node.name in graph.tensors or node.name in before:
                    computed[node.name] = v
                    if node.name in inputs and node.name in graph.tensors:
                        v = ir_to_torch(inputs[node.name], graph.tensors[node.name].shape).reshape(v.shape)
                env[node.name] = v
        for n in graph.nodes:
            if n.output not in computed and all(t in inputs for t in n.inputs):
                # a tensor the lowering made for a concatenation (lower.py visit_cat), which torch's graph
                # has no node for: torch's quantize(dequantize(x)) of each input with the output's
                # parameters, side by side
                qo = graph.tensors[n.output].qparams
                parts = []
                for t in n.inputs:
                    qi = graph.tensors[t].qparams
                    real = torch.ops.quantized_decomposed.dequantize_per_tensor(
                        ir_to_torch(inputs[t], graph.tensors[t].shape), qi.scale, qi.zero_point, qi.qmin, qi.qmax,
                        torch.int8)
                    parts.append(torch.ops.quantized_decomposed.quantize_per_tensor(
                        real, qo.scale, qo.zero_point, qo.qmin, qo.qmax, torch.int8))
                computed[n.output] = torch.cat(parts, 1)
    return {n.name: torch_to_ir(computed[checked_tensor(n)], graph.tensors[n.output].shape)
            for n in graph.nodes if all(t in inputs for t in n.inputs)}


def checked_tensor(node) -> str:
    """The tensor of torch's graph a node is compared at: its output, or for a layer with a fused activation
    table the value before the table (the table is torch's own function of it, exact)."""
    act = getattr(node, "activation", None)
    return act.tensor if act is not None and act.tensor is not None else node.output


def torch_layer(node_name: str, ep: torch.export.ExportedProgram, graph: ir.Graph, *x_int: np.ndarray) -> np.ndarray:
    """Torch's integer output of IR node `node_name` fed its integer input(s) (IR layout, batch first)."""
    node = next(n for n in graph.nodes if n.name == node_name)
    return torch_layer_outputs(ep, graph, dict(zip(node.inputs, x_int)))[node_name]


def torch_input(ep: torch.export.ExportedProgram, graph: ir.Graph, x_float: np.ndarray) -> np.ndarray | None:
    """Torch's own quantization of the model input (its quantize node on the float input, in the user's
    layout), as int64 [B, *input shape] in IR layout; None when that node does not read the input itself."""
    qnode = next(n for n in ep.graph.nodes if n.name == graph.input)
    if qnode.args[0].op != "placeholder":
        return None
    arg = _evaluator(ep)
    x = torch.from_numpy(np.ascontiguousarray(x_float, dtype=np.float32))
    with torch.no_grad():
        q = qnode.target(x, *arg(list(qnode.args[1:])), **arg(dict(qnode.kwargs)))
    return torch_to_ir(q, graph.tensors[graph.input].shape)


def torch_forward(ep: torch.export.ExportedProgram, x_float: np.ndarray) -> np.ndarray:
    """The whole converted model end to end in torch: float32 [B, ...] in, float32 out. A model exported
    with a static batch runs in slices of that batch, the last padded with zeros."""
    module = ep.module()
    x = np.ascontiguousarray(x_float, dtype=np.float32)

    def run(start, stop, pad):
        part = np.concatenate([x[start:stop], np.zeros((pad,) + x.shape[1:], np.float32)]) if pad else x[start:stop]
        with torch.no_grad():
            return module(torch.from_numpy(part)).numpy()[:stop - start]
    return np.concatenate(_in_batches(ep, len(x), run)).astype(np.float32)
