"""Random integer graphs for property tests (Dense chains, convolution networks) with plausible
quantization, and the one comparison every compiler test makes."""
from __future__ import annotations

import numpy as np

from emu.compiler.codegen import compile_graph
import dataclasses

from emu.compiler.ir import Activation, Add, Concat, Conv2d, Dense, Graph, Pool2d, QParams, TensorInfo, add_weights
from emu.emulator.reference import run_reference
from emu.runtime.run import run_program


def assert_matches_reference(graph, cfg, x, batch=None):
    """Compile, run on golden, compare every layer's every element with the integer reference, exactly."""
    program = compile_graph(graph, cfg, batch=batch)
    out = run_program(program, x)
    ref = run_reference(graph, x)
    for node in graph.nodes:
        np.testing.assert_array_equal(out.layers[node.output], ref[node.output], err_msg=node.name)
    return program, out


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


class NetBuilder:
    """Builds a random integer CNN layer by layer: `b.conv(...)`, `b.pool(...)`, `b.add(...)`, `b.concat(...)`,
    `b.dense(...)`, `b.lookup(...)`; each returns the new tensor's name (`b.activate()` gives the last layer a
    random activation table). Weights span the full signed range; scales are near
    what PTQ gives."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, ...], *, act_bits: int = 8,
                 weight_bits: int = 8):
        self.rng, self.act_bits, self.weight_bits = rng, act_bits, weight_bits
        self.tensors = {"x": TensorInfo("x", tuple(shape), self._qparams(0.05))}
        self.nodes = []
        self.last = "x"

    def _qparams(self, scale: float, relu: bool = False) -> QParams:
        lo, hi = -(1 << (self.act_bits - 1)), (1 << (self.act_bits - 1)) - 1
        zp = int(self.rng.integers(lo, 1)) if relu else int(self.rng.integers(lo // 2, hi // 2 + 1))
        return QParams(float(scale), zp, self.act_bits)

    def _out(self, shape, scale, relu=False) -> tuple[str, tuple[int, int]]:
        name = f"t{len(self.nodes) + 1}"
        q = self._qparams(scale, relu)
        self.tensors[name] = TensorInfo(name, tuple(shape), q)
        return name, ((max(q.qmin, q.zero_point) if relu else q.qmin), q.qmax)

    def conv(self, cout: int, kernel=(3, 3), stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), *,
             src: str | None = None, relu: bool = True) -> str:
        src = src or self.last
        h, w, cin = self.tensors[src].shape
        (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = kernel, stride, padding, dilation
        oh, ow = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
        wmax = (1 << (self.weight_bits - 1)) - 1
        weight = self.rng.integers(-wmax, wmax + 1, size=(cout, kh, kw, cin))
        k = kh * kw * cin
        w_scale = self.rng.uniform(0.5, 2.0, size=cout) / (wmax * np.sqrt(k))
        sx = self.tensors[src].qparams.scale
        out, clamp = self._out((oh, ow, cout), sx * self.rng.uniform(0.3, 1.5), relu)
        self.nodes.append(Conv2d(f"conv{len(self.nodes) + 1}", src, out, weight, w_scale, self.weight_bits,
                                 self.rng.integers(-2000, 2000, size=cout), clamp, stride, padding, dilation))
        self.last = out
        return out

    def pool(self, kind: str, kernel=(2, 2), stride=(2, 2), padding=(0, 0, 0, 0), *, src: str | None = None) -> str:
        src = src or self.last
        h, w, c = self.tensors[src].shape
        (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, stride, padding
        oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
        sx = self.tensors[src].qparams.scale
        out, clamp = self._out((oh, ow, c), sx * self.rng.uniform(0.5, 1.5))
        self.nodes.append(Pool2d(f"{kind}pool{len(self.nodes) + 1}", src, out, kind, kernel, clamp, stride, padding))
        self.last = out
        return out

    def add(self, a: str, b: str, *, same_scale: bool = False, relu: bool = True) -> str:
        sa, sb = self.tensors[a].qparams.scale, self.tensors[b].qparams.scale
        if same_scale:
            sb = sa
            qb = self.tensors[b].qparams
            self.tensors[b] = TensorInfo(b, self.tensors[b].shape, QParams(sa, qb.zero_point, qb.bits))
        weights, unit, bits = add_weights(sa, sb, self.weight_bits)
        out, clamp = self._out(self.tensors[a].shape, max(sa, sb) * self.rng.uniform(1.0, 2.0), relu)
        self.nodes.append(Add(f"add{len(self.nodes) + 1}", a, b, out, weights, unit, bits, clamp))
        self.last = out
        return out

    def concat(self, *parts: str) -> str:
        """The parts' channels side by side; every part takes the first's parameters, as the quantizer makes
        them share."""
        q = self.tensors[parts[0]].qparams
        for p in parts:
            self.tensors[p] = TensorInfo(p, self.tensors[p].shape, q)
        h, w, _ = self.tensors[parts[0]].shape
        name = f"t{len(self.nodes) + 1}"
        self.tensors[name] = TensorInfo(name, (h, w, sum(self.tensors[p].shape[-1] for p in parts)), q)
        self.nodes.append(Concat(f"cat{len(self.nodes) + 1}", tuple(parts), name))
        self.last = name
        return name

    def dense(self, n: int, *, src: str | None = None, relu: bool = False) -> str:
        src = src or self.last
        k = self.tensors[src].size
        wmax = (1 << (self.weight_bits - 1)) - 1
        sx = self.tensors[src].qparams.scale
        out, clamp = self._out((n,), sx * self.rng.uniform(0.3, 1.5), relu)
        self.nodes.append(Dense(f"fc{len(self.nodes) + 1}", src, out, self.rng.integers(-wmax, wmax + 1, (n, k)),
                                self.rng.uniform(0.5, 2.0, size=n) / (wmax * np.sqrt(k)), self.weight_bits,
                                self.rng.integers(-2000, 2000, size=n), clamp))
        self.last = out
        return out

    def _activation(self, q: QParams) -> Activation:
        """A random table from the integers of `q` to the output range (any function: what a table can hold)."""
        lo, hi = -(1 << (self.act_bits - 1)), (1 << (self.act_bits - 1)) - 1
        return Activation(self.rng.integers(lo, hi + 1, 1 << q.bits), q, ("aten.random.default",))

    def activate(self) -> str:
        """The last layer requantizes to new parameters, clamps there and looks its results up in a random
        table; its output keeps its own parameters."""
        node = self.nodes[-1]
        q = self._qparams(self.tensors[node.output].qparams.scale * self.rng.uniform(0.5, 2.0))
        self.nodes[-1] = dataclasses.replace(node, activation=self._activation(q), clamp=(q.zero_point, q.qmax))
        return node.output

    def lookup(self, src: str | None = None) -> str:
        """A random table applied alone (as emu.compiler.activations makes one: a 1x1 max pool to itself)."""
        src = src or self.last
        q = self.tensors[src].qparams
        out, _ = self._out(self.tensors[src].shape, q.scale)
        self.nodes.append(Pool2d(f"table{len(self.nodes) + 1}", src, out, "max", (1, 1), (q.qmin, q.qmax),
                                 activation=self._activation(q)))
        self.last = out
        return out

    def graph(self) -> Graph:
        return Graph(dict(self.tensors), list(self.nodes), "x", self.last, "nhwc")
