"""Elementwise host ops onto the accelerator: each becomes an activation table (ir.Activation).

A host op that is a function of each element of its one input (hardswish, sigmoid, SiLU, GELU, tanh, ...,
emu.frontend.ops.ELEMENTWISE_OPS) maps each of the input's 2**bits integers to one output integer, so its
whole effect is a table of torch's own results over those integers (`HostGraph.elementwise_values`): exact
against torch on every element. The table goes where the value is made:

- into the layer that writes the input (Dense, Conv2d, Pool2d, Add) when the host op is that tensor's only
  reader: the layer requantizes to the input's parameters and looks its results up, in the same POST;
- otherwise (the model input, a tensor with other readers, a concatenation's or a host op's result) into a
  1x1 max pool of its own, which requantizes the input to itself exactly (real scale 1) and looks it up.
"""
from __future__ import annotations

import dataclasses

from emu.compiler.ir import Activation, Add, Conv2d, Dense, Graph, Host, Pool2d

__all__ = ["tabulate"]

_LAYERS = (Dense, Conv2d, Pool2d, Add)


def tabulate(graph: Graph, elementwise: frozenset[str]) -> Graph:
    """`graph` with every elementwise Host node (ops named in `elementwise`) replaced by an activation table."""
    readers: dict[str, int] = {graph.output: 1}
    for node in graph.nodes:
        for t in node.inputs:
            readers[t] = readers.get(t, 0) + 1
    tensors, nodes = dict(graph.tensors), []
    producer: dict[str, int] = {}          # tensor -> index in `nodes` of the layer that writes it
    for node in graph.nodes:
        values = node.graph.elementwise_values(elementwise) if isinstance(node, Host) else None
        src = node.inputs[0]
        if values is None or tensors[src].shape != tensors[node.output].shape:
            producer[node.output] = len(nodes)
            nodes.append(node)
            continue
        q = tensors[src].qparams
        act = Activation(values, q, node.ops)
        k = producer.get(src)
        if k is not None and isinstance(nodes[k], _LAYERS) and nodes[k].activation is None and readers[src] == 1:
            fused = dataclasses.replace(act, tensor=src)
            nodes[k] = dataclasses.replace(nodes[k], output=node.output, activation=fused,
                                           source=f"{nodes[k].source} -> {node.source}")
            del tensors[src]
            producer[node.output] = k
            continue
        producer[node.output] = len(nodes)
        nodes.append(Pool2d(name=node.name, input=src, output=node.output, kind="max", kernel=(1, 1),
                            clamp=(q.qmin, q.qmax), source=node.source, activation=act))
    return dataclasses.replace(graph, tensors=tensors, nodes=nodes)
