"""Lower a PT2E-converted, `torch.export`-ed model to Systola's integer graph IR (`emu.ir.Graph`).

Accepted graph (after `convert_pt2e` and `torch.export`, static or dynamic batch)::

    x --quantize_per_tensor--> q0                                   (the graph input tensor, [B, K])
    dequantize_per_tensor(q_i), dequantize_per_channel(w_int) [, float bias]
        -> aten.linear -> [relu | relu_ | relu6 | hardtanh | clamp]* -> quantize_per_tensor   (one ir.Dense)
    ... -> dequantize_per_tensor -> output

Each `ir.Dense` takes: weight int [N, K] and weight_scale [N] (per-tensor weights broadcast their scale);
weight_bits from the weight's quant_min/quant_max ([-(2**(b-1)-1), 2**(b-1)-1] or the full signed range);
bias = round_half_even(bias_float / (in_scale * weight_scale[n])) as int64, which must fit int32; clamp =
the output integer range after the activation, computed with torch's own quantize op on the activation's
float bounds (rounding commutes with clamping, so this is exact); output QParams from the quantize node.
Activations must use the signed full range [-2**(b-1), 2**(b-1)-1] of torch.int8, b in 2..8.

No-op nodes are skipped: flatten/view/reshape that keep a [B, features] tensor, `contiguous`, `clone`,
eval-mode dropout, shape arithmetic and `_assert_*` nodes, and a dequantize that is re-quantized with
identical parameters. Everything else raises `UnsupportedModelError`.
"""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import torch

from .. import ir
from . import UnsupportedModelError
from .quantizer import ACTIVATION_OPS

__all__ = ["load_pt2", "lower", "constants_of", "SUPPORTED"]

aten = torch.ops.aten
qd = torch.ops.quantized_decomposed

#: One line for error messages: what the lowering accepts.
SUPPORTED = ("supported: quantize/dequantize_per_tensor (signed int8 dtype, 2..8-bit full range), "
             "dequantize_per_channel weights (axis 0, zero point 0), aten.linear, relu/relu6/hardtanh/clamp "
             "after a linear, and no-op flatten/view/reshape/contiguous/clone/dropout(eval)")

_QUANTIZE = (qd.quantize_per_tensor.default, qd.quantize_per_tensor.tensor)
_DEQUANTIZE = (qd.dequantize_per_tensor.default, qd.dequantize_per_tensor.tensor)
_NOOP_VIEWS = (aten.flatten.using_ints, aten.view.default, aten.reshape.default, aten._unsafe_view.default,
               aten.contiguous.default, aten.clone.default, aten.alias.default, aten.dropout.default,
               aten.detach.default)


def load_pt2(path: str | os.PathLike) -> torch.export.ExportedProgram:
    """Load a `.pt2` file written by `torch.export.save`.

    Its quantized_decomposed ops resolve because importing `emu.frontend` has imported torchao's PT2E
    package (quietly) already.
    """
    return torch.export.load(os.fspath(path))


def constants_of(ep: torch.export.ExportedProgram) -> dict[str, torch.Tensor]:
    """Placeholder name -> tensor for every lifted parameter, buffer and constant of `ep`."""
    sig = ep.graph_signature
    table = {**sig.inputs_to_parameters, **sig.inputs_to_buffers, **sig.inputs_to_lifted_tensor_constants}
    out = {}
    for name, target in table.items():
        out[name] = ep.state_dict[target] if target in ep.state_dict else ep.constants[target]
    return out


# ---- symbolic values the walk assigns to torch nodes ----
@dataclasses.dataclass
class _FloatInput:          # the user's float input
    shape: tuple[int, ...]


@dataclasses.dataclass
class _Quantized:           # an integer tensor of the IR
    tensor: str


@dataclasses.dataclass
class _Dequantized:         # dequantize_per_tensor of an IR tensor
    tensor: str


@dataclasses.dataclass
class _Weight:              # a dequantized integer weight
    values: np.ndarray      # int64
    scale: np.ndarray       # float64, per output channel (or [1] per tensor)
    bits: int


@dataclasses.dataclass
class _Linear:              # a float linear result, possibly clamped, not yet quantized
    input: str
    weight: _Weight
    bias: np.ndarray | None
    lo: float
    hi: float
    nodes: list


class _Lowering:
    def __init__(self, ep: torch.export.ExportedProgram):
        self.ep = ep
        self.consts = constants_of(ep)
        self.values: dict[torch.fx.Node, object] = {}
        self.tensors: dict[str, ir.TensorInfo] = {}
        self.nodes: list[ir.Dense] = []
        self.input: str | None = None
        self.output: str | None = None

    # -- helpers --
    def fail(self, node: torch.fx.Node, what: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"node {node.name!r} ({_op_name(node)}) is not supported: {what}; {SUPPORTED}")

    def scalar(self, node, arg):
        if isinstance(arg, torch.fx.Node):
            if arg.name not in self.consts:
                raise self.fail(node, f"quantization parameter {arg.name!r} is not a constant")
            return self.consts[arg.name].detach().item()
        return arg

    def const(self, node, arg) -> torch.Tensor:
        if isinstance(arg, torch.fx.Node) and arg.name in self.consts:
            return self.consts[arg.name].detach()
        raise self.fail(node, f"{getattr(arg, 'name', arg)!r} must be a constant tensor")

    def act_qparams(self, node) -> ir.QParams:
        _, scale, zp, qmin, qmax, dtype = node.args[:6]
        scale, zp = float(self.scalar(node, scale)), int(self.scalar(node, zp))
        bits = _bits_of(qmax)
        if dtype != torch.int8 or not 2 <= bits <= 8 or qmin != -(1 << (bits - 1)):
            raise self.fail(node, f"activation range [{qmin}, {qmax}] of {dtype} is not a signed full range "
                                  f"[-2**(b-1), 2**(b-1)-1] of torch.int8 with b in 2..8")
        if not (math.isfinite(scale) and scale > 0):
            raise self.fail(node, f"activation scale {scale} must be positive and finite")
        return ir.QParams(scale, zp, bits)

    def weight(self, node, per_channel: bool) -> _Weight:
        if per_channel:
            w, scale, zp, axis, qmin, qmax, dtype = node.args[:7]
            scale, zp = self.const(node, scale).double().numpy(), self.const(node, zp).numpy()
            if axis != 0:
                raise self.fail(node, f"per-channel weight axis {axis} (only axis 0, the output channel)")
        else:
            w, scale, zp, qmin, qmax, dtype = node.args[:6]
            scale, zp = np.array([float(self.scalar(node, scale))]), np.array([int(self.scalar(node, zp))])
        values = self.const(node, w)
        bits = _bits_of(qmax)
        if dtype != torch.int8 or not 2 <= bits <= 8 or qmin not in (-qmax, -qmax - 1):
            raise self.fail(node, f"weight range [{qmin}, {qmax}] of {dtype} is not a signed symmetric "
                                  f"range of torch.int8 with 2..8 bits")
        if np.any(zp != 0):
            raise self.fail(node, "weights with a nonzero zero point (weights must be symmetric)")
        if values.dim() != 2:
            raise self.fail(node, f"weight of shape {tuple(values.shape)} (linear weights are [N, K])")
        v = values.to(torch.int64).numpy()
        if v.min() < qmin or v.max() > qmax:
            raise self.fail(node, f"weight values outside [{qmin}, {qmax}]")
        return _Weight(v, scale.astype(np.float64).reshape(-1), bits)

    def shape(self, node) -> tuple[int, ...]:
        val = node.meta.get("val")
        return tuple(val.shape) if isinstance(val, torch.Tensor) else ()

    # -- the walk --
    def run(self) -> ir.Graph:
        user_inputs = self.ep.graph_signature.user_inputs
        for node in self.ep.graph.nodes:
            if node.op == "placeholder":
                if node.name in user_inputs:
                    self.values[node] = _FloatInput(self.shape(node))
            elif node.op == "get_attr":
                self.consts[node.name] = getattr(self.ep.graph_module, node.target)
            elif node.op == "call_function":
                self.visit(node)
            elif node.op == "output":
                self.visit_output(node)
            else:
                raise self.fail(node, f"node kind {node.op}")
        if len(user_inputs) != 1:
            raise UnsupportedModelError(f"the model takes {len(user_inputs)} inputs {list(user_inputs)}; "
                                        f"supported: exactly one [batch, features] tensor")
        if self.input is None or not self.nodes:
            raise UnsupportedModelError(f"the model has no quantized input or no quantized linear layer; {SUPPORTED}")
        return ir.Graph(self.tensors, self.nodes, self.input, self.output)

    def visit(self, node: torch.fx.Node) -> None:
        t = node.target
        src = node.args[0] if node.args else None
        val = self.values.get(src) if isinstance(src, torch.fx.Node) else None
        if not isinstance(node.meta.get("val"), torch.Tensor) and not _uses_values(node, self.values):
            return  # shape arithmetic, _assert_*, sym_size: no tensor flows through it
        if t in _QUANTIZE:
            self.values[node] = self.visit_quantize(node, val)
        elif t in _DEQUANTIZE:
            if isinstance(val, _Quantized):
                if self.act_qparams(node) != self.tensors[val.tensor].qparams:
                    raise self.fail(node, "a dequantize whose parameters differ from its quantize")
                self.values[node] = _Dequantized(val.tensor)
            else:
                self.values[node] = self.weight(node, per_channel=False)
        elif t == qd.dequantize_per_channel.default:
            self.values[node] = self.weight(node, per_channel=True)
        elif t == aten.linear.default:
            self.values[node] = self.visit_linear(node, val)
        elif t in ACTIVATION_OPS:
            if not isinstance(val, _Linear) or len(src.users) != 1:
                raise self.fail(node, "an activation that does not directly follow a linear layer")
            lo, hi = _activation_bounds(node)
            val.lo, val.hi = max(val.lo, lo), min(val.hi, hi)
            val.nodes.append(node)
            self.values[node] = val
        elif t in _NOOP_VIEWS:
            if t == aten.dropout.default and (len(node.args) < 3 or node.args[2]):
                raise self.fail(node, "dropout in training mode (export the model in eval mode)")
            in_shape, out_shape = self.shape(src), self.shape(node)
            if len(in_shape) != 2 or in_shape[1:] != out_shape[1:] or len(out_shape) != 2:
                raise self.fail(node, f"a reshape from {in_shape} to {out_shape} (only [batch, features] "
                                      f"tensors, unchanged)")
            self.values[node] = val
        else:
            raise self.fail(node, "this op")

    def visit_quantize(self, node, val):
        q = self.act_qparams(node)
        if isinstance(val, _Dequantized):
            if q != self.tensors[val.tensor].qparams:
                raise self.fail(node, "requantizing a tensor to different parameters")
            return _Quantized(val.tensor)
        if isinstance(val, _FloatInput):
            if self.input is not None:
                raise self.fail(node, "a second quantization of the model input")
            if len(val.shape) != 2:
                raise self.fail(node, f"an input of shape {val.shape} (only [batch, features])")
            self.input = node.name
            self.tensors[node.name] = ir.TensorInfo(node.name, (int(val.shape[1]),), q)
            return _Quantized(node.name)
        if isinstance(val, _Linear):
            self.nodes.append(self.make_dense(node, val, q))
            return _Quantized(node.name)
        raise self.fail(node, "a quantize that follows neither the input, a linear layer nor a dequantize")

    def visit_linear(self, node, val) -> _Linear:
        if not isinstance(val, _Dequantized):
            raise self.fail(node, "a linear whose input is not a dequantized per-tensor activation")
        weight = self.values.get(node.args[1])
        if not isinstance(weight, _Weight):
            raise self.fail(node, "a linear whose weight is not a dequantized integer constant")
        bias = node.args[2] if len(node.args) > 2 else None
        if bias is not None:
            bias = self.const(node, bias).double().numpy()
        k = self.tensors[val.tensor].shape[0]
        if weight.values.shape[1] != k:
            raise self.fail(node, f"weight shape {weight.values.shape} does not match input features {k}")
        return _Linear(val.tensor, weight, bias, -math.inf, math.inf, [node])

    def make_dense(self, node, lin: _Linear, q: ir.QParams) -> ir.Dense:
        n = lin.weight.values.shape[0]
        w_scale = np.broadcast_to(lin.weight.scale, (n,)).astype(np.float64).copy()
        in_scale = self.tensors[lin.input].qparams.scale
        if lin.bias is None:
            bias = np.zeros(n, np.int64)
        else:
            bias = np.round(lin.bias / (in_scale * w_scale)).astype(np.int64)
            if np.abs(bias).max() >= 1 << 31:
                raise self.fail(node, "a bias that does not fit int32 in units of in_scale * weight_scale")
        clamp = _clamp_range(lin.lo, lin.hi, node, q)
        self.tensors[node.name] = ir.TensorInfo(node.name, (n,), q)
        linear = lin.nodes[0]
        return ir.Dense(name=linear.name, input=lin.input, output=node.name, weight=lin.weight.values,
                        weight_scale=w_scale, weight_bits=lin.weight.bits, bias=bias, clamp=clamp,
                        source=" -> ".join(x.name for x in lin.nodes + [node]))

    def visit_output(self, node) -> None:
        outs = node.args[0]
        if not isinstance(outs, (tuple, list)) or len(outs) != 1:
            raise self.fail(node, "a model with more than one output")
        val = self.values.get(outs[0])
        if not isinstance(val, (_Dequantized, _Quantized)):
            raise self.fail(node, "an output that is not a (de)quantized tensor of the last layer")
        self.output = val.tensor
        expected = self.input
        for d in self.nodes:
            if d.input != expected:
                raise self.fail(node, f"layer {d.name!r} reads {d.input!r}, not {expected!r} (only chains)")
            expected = d.output
        if self.output != expected:
            raise self.fail(node, f"the output {self.output!r} is not the last layer's output {expected!r}")


def _op_name(node: torch.fx.Node) -> str:
    """'aten.sigmoid.default' for an ATen/registered op, the function name otherwise, the node kind else."""
    if node.op != "call_function":
        return node.op
    if isinstance(node.target, torch._ops.OpOverload):
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


def _bits_of(qmax: int) -> int:
    """b such that qmax == 2**(b-1) - 1, else 0."""
    bits = int(qmax + 1).bit_length()
    return bits if qmax == (1 << (bits - 1)) - 1 else 0


def _uses_values(node, values) -> bool:
    return any(isinstance(a, torch.fx.Node) and a in values for a in node.all_input_nodes)


def _activation_bounds(node) -> tuple[float, float]:
    t, args = node.target, node.args
    if t in (aten.relu.default, aten.relu_.default):
        return 0.0, math.inf
    if t == aten.relu6.default:
        return 0.0, 6.0
    if t in (aten.hardtanh.default, aten.hardtanh_.default):
        lo = args[1] if len(args) > 1 else node.kwargs.get("min_val", -1.0)
        hi = args[2] if len(args) > 2 else node.kwargs.get("max_val", 1.0)
        return float(lo), float(hi)
    lo = args[1] if len(args) > 1 else node.kwargs.get("min")
    hi = args[2] if len(args) > 2 else node.kwargs.get("max")
    return (-math.inf if lo is None else float(lo)), (math.inf if hi is None else float(hi))


def _clamp_range(lo: float, hi: float, node, q: ir.QParams) -> tuple[int, int]:
    """Integer output range after clamping to [lo, hi], through torch's own quantize arithmetic."""
    bounds = torch.tensor([0.0 if math.isinf(lo) else lo, 0.0 if math.isinf(hi) else hi], dtype=torch.float32)
    qb = qd.quantize_per_tensor.default(bounds, q.scale, q.zero_point, q.qmin, q.qmax, torch.int8).tolist()
    c_lo = q.qmin if math.isinf(lo) else qb[0]
    c_hi = q.qmax if math.isinf(hi) else qb[1]
    if c_lo > c_hi:
        raise UnsupportedModelError(f"node {node.name!r} ({_op_name(node)}) is not supported: "
                                    f"activation bounds [{lo}, {hi}] leave no integer output; {SUPPORTED}")
    return int(c_lo), int(c_hi)


def lower(exported_program: torch.export.ExportedProgram) -> ir.Graph:
    """The integer graph of a PT2E-converted exported program; raises `UnsupportedModelError` otherwise."""
    return _Lowering(exported_program).run()
