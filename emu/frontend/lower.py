"""Lower a PT2E-converted, `torch.export`-ed model to Systola's integer graph IR (`emu.compiler.ir.Graph`).

Accepted graph (after `convert_pt2e` and `torch.export`, static or dynamic batch)::

    x --quantize_per_tensor--> q0          (the graph input tensor, [B, K], [B, C, L] or [B, C, H, W])
    dequantize_per_tensor(q_i) [, dequantize_per_channel(w_int), float bias]
        -> layer op -> [relu | relu6 | hardtanh | clamp | max_pool2d]* -> quantize_per_tensor   (one IR node)
    ... -> dequantize_per_tensor -> output

Layer ops: aten.linear (ir.Dense), aten.conv2d (ir.Conv2d; grouped convolutions become dense ones with
zero blocks, which the compiler skips), aten.max_pool2d / avg_pool2d / adaptive_avg_pool2d / mean over
H and W (ir.Pool2d), their 1-D forms over a [B, C, L] tensor as 2-D ones over a map of height 1 (the IR's
[1, L, C]), aten.add.Tensor of two dequantized tensors (ir.Add), and an activation or max pool
applied straight to a dequantized tensor (an ir.Pool2d max of window 1 when nothing else: a requantize).
Clamps commute with max pooling, so a clamp before or after a max pool joins its layer's clamp.
Feature maps become NHWC tensors ([H, W, C]); a flatten of a map is a view, and the next linear's weight
columns are permuted from torch's C, H, W order to H, W, C.

Each `ir.Dense` takes: weight int [N, K] and weight_scale [N] (per-tensor weights broadcast their scale);
weight_bits from the weight's quant_min/quant_max ([-(2**(b-1)-1), 2**(b-1)-1] or the full signed range;
1, binary, for a [-1, 1] weight that holds no 0);
bias = bias_float / (in_scale * weight_scale[n]) as a float (emu.compiler.ir.Dense.post_params rounds it in
POST units); clamp =
the output integer range after the activation, computed with torch's own quantize op on the activation's
float bounds (rounding commutes with clamping, so this is exact); output QParams from the quantize node.
Activations must use the signed full range [-2**(b-1), 2**(b-1)-1] of torch.int8, b in 1..8.

No-op nodes are skipped: flatten/view/reshape that keep a [B, features] tensor, `contiguous`, `clone`,
eval-mode dropout, shape arithmetic and `_assert_*` nodes, and a dequantize that is re-quantized with
identical parameters.

Host ops (`lower(..., host=True)`, the default): an op the accelerator cannot run that reads dequantized
activations (sigmoid, hardswish, LayerNorm, softmax, a product of two maps, ...) starts a host op; every
op after it up to the next quantize joins it, and the slice becomes one `ir.Host` node whose
`emu.compiler.host.HostGraph` replays exactly those torch ops. A host op that is an elementwise function
of one tensor then becomes an activation table on the accelerator (emu.compiler.activations). Everything
else (and, with host=False, every host op left) raises `UnsupportedModelError`.
"""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import torch

from emu.compiler import ir
from emu.compiler.activations import tabulate
from emu.compiler.host import HostGraph, HostInput, encode_arg, op_target
from emu.frontend import UnsupportedModelError
from emu.frontend.ops import (ACTIVATION_OPS, ADD_OPS, AVG_POOL_OPS, CAT_OPS, DEQUANTIZE, DEQUANTIZE_PER_CHANNEL,
                              ELEMENTWISE_OPS, MAX_POOL_OPS, NOOP_OPS, QUANTIZE)

__all__ = ["load_pt2", "lower", "constants_of", "static_batch", "SUPPORTED"]

aten = torch.ops.aten
qd = torch.ops.quantized_decomposed

#: One line for error messages: what the lowering accepts.
SUPPORTED = ("supported: quantize/dequantize_per_tensor (signed int8 dtype, 1..8-bit full range), "
             "dequantize_per_channel weights (axis 0, zero point 0), aten.linear, aten.conv2d/conv1d, "
             "max_pool2d/1d, avg_pool2d/1d, adaptive_avg_pool2d/1d, mean over H and W, add.Tensor, "
             "cat along the channels of tensors that share their parameters, "
             "relu/relu6/hardtanh/clamp, flatten, and no-op view/reshape/contiguous/clone/dropout(eval)")

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


def static_batch(ep: torch.export.ExportedProgram) -> int | None:
    """The batch size `ep` was exported for, or None if its batch dimension is dynamic."""
    user = ep.graph_signature.user_inputs
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            b = node.meta["val"].shape[0]
            return int(b) if isinstance(b, int) else None
    return None


# ---- symbolic values the walk assigns to torch nodes ----
@dataclasses.dataclass
class _FloatInput:          # the user's float input
    shape: tuple[int, ...]
    flat: bool = False      # [B, C*H*W] viewed as [B, C, H, W] (an MNIST model's x.view(-1, 1, 28, 28))


@dataclasses.dataclass
class _Quantized:           # an integer tensor of the IR; `flat`: torch sees a map flattened to [B, C*H*W]
    tensor: str
    flat: bool = False


@dataclasses.dataclass
class _Dequantized:         # dequantize_per_tensor of an IR tensor
    tensor: str
    flat: bool = False


@dataclasses.dataclass
class _Weight:              # a dequantized integer weight
    values: np.ndarray      # int64, torch layout ([N, K] or [N, Cin, KH, KW])
    scale: np.ndarray       # float64, per output channel (or [1] per tensor)
    bits: int


class _Host:
    """A float value torch computes on the host (emu.compiler.host)."""


@dataclasses.dataclass
class _Pending:             # a float layer result, possibly clamped, not yet quantized
    op: str                 # "linear", "conv", "max", "avg", "add", "identity"
    inputs: list            # _Dequantized values
    args: dict
    nodes: list
    lo: float = -math.inf
    hi: float = math.inf
    map_shape: tuple | None = None   # set when torch flattens the result before quantizing it: its IR map shape


def _pair(v) -> tuple[int, int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return (int(v[0]), int(v[-1]))


#: the 1-D ops, each lowered as its 2-D form over a map of height 1
_ONE_D = (aten.conv1d.default, aten.max_pool1d.default, aten.avg_pool1d.default, aten.adaptive_avg_pool1d.default)


def _window_arg(node, v, fill: int) -> tuple[int, int]:
    """A kernel/stride/padding/dilation argument as (H, W); a 1-D op's is (fill, v) over a map of height 1."""
    if node.target in _ONE_D:
        return (fill, _pair(v)[1])
    return _pair(v)


class _Lowering:
    def __init__(self, ep: torch.export.ExportedProgram, *, host: bool = True):
        self.ep = ep
        self.host = host
        self.consts = constants_of(ep)
        self.values: dict[torch.fx.Node, object] = {}
        self.tensors: dict[str, ir.TensorInfo] = {}
        self.nodes: list = []
        self.cat_parts: set[str] = set()        # tensors a Concat lays out (each in one only)
        self.const_ops: set[str] = set()        # ops on constants alone, run within host ops
        self.input: str | None = None
        self.output: str | None = None
        self.layout = "nc"

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
        if dtype != torch.int8 or not 1 <= bits <= 8 or qmin != -(1 << (bits - 1)):
            raise self.fail(node, f"activation range [{qmin}, {qmax}] of {dtype} is not a signed full range "
                                  f"[-2**(b-1), 2**(b-1)-1] of torch.int8 with b in 1..8")
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
        if values.dim() not in (2, 3, 4):
            raise self.fail(node, f"weight of shape {tuple(values.shape)} (linear [N, K], conv1d [N, C, K] or "
                                  f"conv [N, C, KH, KW])")
        v = values.to(torch.int64).numpy()
        if v.min() < qmin or v.max() > qmax:
            raise self.fail(node, f"weight values outside [{qmin}, {qmax}]")
        if (qmin, qmax) == (-1, 1) and v.all():
            bits = 1        # binary: -1 and +1 only (emu.frontend.binary), one sign bit on the accelerator
        return _Weight(v, scale.astype(np.float64).reshape(-1), bits)

    def shape(self, node) -> tuple[int, ...]:
        val = node.meta.get("val")
        return tuple(val.shape) if isinstance(val, torch.Tensor) else ()

    def ir_shape(self, node) -> tuple[int, ...]:
        """The IR shape (no batch; NHWC for maps) of a torch node's [B, ...] value. A 3-D value is a 1-D map
        [B, C, L] (a map of height 1, [1, L, C]) where a 1-D op or the model input is near it, else a
        sequence of tokens [B, N, D] (the IR's [N, D]: N positions of D channels, in torch's order)."""
        s = tuple(int(d) for d in self.shape(node)[1:])
        if len(s) == 2:
            return (1, s[1], s[0]) if self.near_1d_op(node) else s
        return (s[1], s[2], s[0]) if len(s) == 3 else s

    def near_1d_op(self, node) -> bool:
        """A 1-D op (or the model input) produces `node`'s value or reads it, through quantize, dequantize,
        clamps and no-op views."""
        through = QUANTIZE + DEQUANTIZE + ACTIVATION_OPS + NOOP_OPS

        def back(n):
            while isinstance(n, torch.fx.Node) and n.op == "call_function" and n.target in through:
                n = n.args[0]
            # the model input is a 1-D map unless a linear reads it over its last dimension (a sequence)
            if isinstance(n, torch.fx.Node) and n.op == "placeholder":
                return not forward(n, ops=(aten.linear.default,))
            return isinstance(n, torch.fx.Node) and n.target in _ONE_D

        def forward(n, depth=0, ops=_ONE_D):
            return depth < 8 and any(u.target in ops or (u.target in through and forward(u, depth + 1, ops))
                                     for u in n.users)
        return back(node) or forward(node)

    def dequantized(self, node, arg, what: str) -> _Dequantized:
        val = self.values.get(arg) if isinstance(arg, torch.fx.Node) else None
        if not isinstance(val, _Dequantized):
            raise self.fail(node, f"{what} that is not a dequantized per-tensor activation")
        return val

    # -- the walk --
    def run(self) -> ir.Graph:
        user_inputs = self.ep.graph_signature.user_inputs
        self.static_batch = static_batch(self.ep)
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
                                        f"supported: exactly one [batch, features] or [batch, C, H, W] tensor")
        if self.input is None or not self.nodes:
            raise UnsupportedModelError(f"the model has no quantized input or no quantized layer; {SUPPORTED}")
        graph = tabulate(ir.Graph(self.tensors, self.nodes, self.input, self.output, self.layout), ELEMENTWISE_OPS)
        for node in graph.nodes:
            if isinstance(node, ir.Host) and not self.host:     # elementwise ops on several tensors
                raise UnsupportedModelError(
                    f"node {node.name!r} ({', '.join(dict.fromkeys(node.ops))}) is not supported: elementwise ops "
                    f"run on the accelerator only as a function of one tensor (without --no-host, torch runs it "
                    f"on the host)")
        return graph

    def visit(self, node: torch.fx.Node) -> None:
        t = node.target
        src = node.args[0] if node.args else None
        val = self.values.get(src) if isinstance(src, torch.fx.Node) else None
        if t == aten.sym_size.int or (not isinstance(node.meta.get("val"), torch.Tensor)
                                      and not _uses_values(node, self.values)):
            return  # shape arithmetic, _assert_*, sym_size: no tensor flows through it
        tensors_in = [a for a in node.all_input_nodes if isinstance(a.meta.get("val"), torch.Tensor)]
        if all(a.name in self.consts or isinstance(self.values.get(a), _Host) and
               a.name in self.const_ops for a in tensors_in) and \
                t not in QUANTIZE + DEQUANTIZE + DEQUANTIZE_PER_CHANNEL:
            # an op on constants alone (ViT's class token expanded) or on none (a recurrent layer's zero
            # initial state): host data
            self.const_ops.add(node.name)
            self.values[node] = _Host()
        elif t in QUANTIZE and isinstance(val, _Host):
            self.values[node] = self.visit_host(node)
        elif any(isinstance(self.values.get(a), _Host) for a in node.all_input_nodes) and t not in QUANTIZE:
            if not self.host and not self.elementwise(node):
                what = "an op on the unquantized result of an elementwise op"
                raise UnsupportedModelError(f"{self.fail(node, what)} (without --no-host, torch runs it on the host)")
            self.values[node] = _Host()
        else:
            try:
                self.visit_op(node, t, src, val)
            except UnsupportedModelError as e:
                if not self.hostable(node):
                    raise
                # without host ops, an elementwise op still may: it becomes an activation table (`tabulate`)
                if not self.host and not self.elementwise(node):
                    raise UnsupportedModelError(f"{e} (without --no-host, torch runs it on the host)") from None
                self.values[node] = _Host()

    @staticmethod
    def elementwise(node) -> bool:
        parts = _op_name(node).split(".")
        return len(parts) == 3 and parts[0] == "aten" and parts[1] in ELEMENTWISE_OPS

    def hostable(self, node) -> bool:
        """The op can run on the host: it reads dequantized activations (and constants), not a layer's
        unquantized result or the float model input."""
        if node.target in QUANTIZE + DEQUANTIZE + DEQUANTIZE_PER_CHANNEL:
            return False
        ins = [self.values[a] for a in node.all_input_nodes if a in self.values]
        return any(isinstance(v, (_Dequantized, _Host)) for v in ins) and all(
            isinstance(v, (_Dequantized, _Host, _Weight)) for v in ins)

    def visit_op(self, node, t, src, val) -> None:
        if t in QUANTIZE:
            self.values[node] = self.visit_quantize(node, val)
        elif t in DEQUANTIZE:
            if isinstance(val, _Quantized):
                if self.act_qparams(node) != self.tensors[val.tensor].qparams:
                    raise self.fail(node, "a dequantize whose parameters differ from its quantize")
                self.values[node] = _Dequantized(val.tensor, val.flat)
            else:
                try:
                    self.values[node] = self.weight(node, per_channel=False)
                except UnsupportedModelError:
                    if not (self.host and src is not None and src.name in self.consts):
                        raise
                    # a quantized constant that is not a weight (XNNPACK's ViT position embedding, added
                    # to the tokens): torch dequantizes it within a host op
                    self.const_ops.add(node.name)
                    self.values[node] = _Host()
        elif t in DEQUANTIZE_PER_CHANNEL:
            self.values[node] = self.weight(node, per_channel=True)
        elif t == aten.linear.default:
            self.values[node] = self.visit_linear(node, val)
        elif t in (aten.conv2d.default, aten.conv1d.default):
            self.values[node] = self.visit_conv(node)
        elif t in ACTIVATION_OPS:
            if isinstance(val, _Dequantized):
                val = self.identity(val)
            elif not isinstance(val, _Pending) or len(src.users) != 1 or val.op == "avg":
                raise self.fail(node, "an activation that follows neither a layer nor a dequantized tensor")
            lo, hi = _activation_bounds(node)
            val.lo, val.hi = max(val.lo, lo), min(val.hi, hi)
            val.nodes.append(node)
            self.values[node] = val
        elif t in MAX_POOL_OPS:
            self.values[node] = self.visit_max_pool(node, val)
        elif t in (aten.adaptive_avg_pool2d.default, aten.adaptive_avg_pool1d.default) and \
                self.shape(src) == self.shape(node):
            self.values[node] = val     # an adaptive pool to the size it has: every bin is one element
        elif t in AVG_POOL_OPS:
            self.values[node] = self.visit_avg_pool(node)
        elif t in ADD_OPS:
            if len(node.args) != 2 or node.kwargs.get("alpha", 1) != 1:
                raise self.fail(node, "an add with alpha or a scalar operand")
            a, b = (self.dequantized(node, x, "an add input") for x in node.args)
            self.values[node] = _Pending("add", [a, b], {}, [node])
        elif t in CAT_OPS:
            self.values[node] = self.visit_cat(node)
        elif t in NOOP_OPS:
            self.values[node] = self.visit_view(node, src, val)
        else:
            raise self.fail(node, "this op")

    def visit_host(self, qnode) -> "_Quantized":
        """The host op ending at quantize node `qnode`: the slice of the graph back to dequantized IR tensors."""
        inputs: dict[torch.fx.Node, int] = {}
        order: list[torch.fx.Node] = []
        seen: set = set()

        def collect(n):
            if n in seen:
                return
            seen.add(n)
            v = self.values.get(n)
            if isinstance(v, _Dequantized):
                inputs.setdefault(n, len(inputs))
            elif n.op not in ("placeholder", "get_attr") and n.target != aten.sym_size.int:
                # (constants and the batch size are encoded where an op uses them)
                if not (isinstance(v, (_Host, _Weight)) or not isinstance(n.meta.get("val"), torch.Tensor)):
                    raise self.fail(n, "a host op reading a value that is neither dequantized nor computed on the "
                                       "host")
                for a in n.all_input_nodes:
                    collect(a)
                order.append(n)
        collect(qnode.args[0])
        index = {n: len(inputs) + k for k, n in enumerate(order)}
        consts: dict[str, np.ndarray] = {}

        def encode_node(n):
            if n in inputs:
                return {"ref": inputs[n]}
            if n in index:
                return {"ref": index[n]}
            if n.target == aten.sym_size.int:
                return {"batch": True} if n.args[1] == 0 else int(n.meta["val"])
            if n.name in self.consts:
                consts[n.name] = self.consts[n.name].detach().contiguous().numpy()
                return {"const": n.name}
            raise TypeError(f"node {n.name}")
        try:
            ops = [{"op": _op_name(n), "args": encode_arg(list(n.args), encode_node),
                    "kwargs": {k: encode_arg(v, encode_node) for k, v in n.kwargs.items()}} for n in order]
            out = encode_node(qnode.args[0])
            for op in ops:
                op_target(op["op"])
        except (TypeError, AttributeError, ValueError) as e:
            raise self.fail(qnode, f"a host op whose arguments cannot be stored ({e})") from None
        q = self.act_qparams(qnode)

        def torch_shape(n):
            return (-1,) + tuple(int(d) for d in self.shape(n)[1:])
        ins = sorted(inputs, key=inputs.get)
        graph = HostGraph([HostInput(self.values[n].tensor, self.tensors[self.values[n].tensor].qparams,
                                     torch_shape(n)) for n in ins], ops, out, q, torch_shape(qnode), consts,
                          self.static_batch)
        self.tensors[qnode.name] = ir.TensorInfo(qnode.name, self.ir_shape(qnode), q)
        names = tuple(op["op"] for op in ops)
        # named after the op that produces its result: an op in several slices (recomputed, as torch's graph
        # does) starts each of them, so only the last op or the quantize names one host op alone
        name = order[-1].name if order else qnode.name
        if any(n.name == name for n in self.nodes):
            name = qnode.name
        self.nodes.append(ir.Host(name=name,
                                  host_inputs=tuple(self.values[n].tensor for n in ins), output=qnode.name,
                                  graph=graph, ops=names, macs=sum(_macs(n) for n in order),
                                  source=" -> ".join(n.name for n in order + [qnode])))
        return _Quantized(qnode.name)

    def visit_cat(self, node) -> _Pending:
        """A channel concatenation the memory layout does. A part is a view into the concatenation's region
        when a layer writes it with the output's quantization parameters and no other concatenation takes
        it; any other part (the model input, a host op's result, parameters of its own, as XNNPACK gives
        them) is first requantized into a view of its own by a 1x1 max pool, which is torch's
        quantize(dequantize(x)) to within 1 LSB."""
        parts = [self.dequantized(node, x, "a cat input") for x in node.args[0]]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        rank = len(self.shape(node))
        # torch's channel dimension: 1 of a map [B, C, H, W] or [B, C, L], the last of tokens [B, N, D]
        channels = 1 if len(self.ir_shape(node)) == 3 else rank - 1
        if dim % rank != channels or any(p.flat for p in parts):
            raise self.fail(node, f"a cat along dimension {dim} (only along the channels)")
        out = node
        while len(out.users) == 1 and next(iter(out.users)).target in NOOP_OPS and \
                self.shape(next(iter(out.users))) == self.shape(node):
            out = next(iter(out.users))        # eval-mode dropout (XNNPACK quantizes after it)
        user = next(iter(out.users)) if len(out.users) == 1 else None
        pooled = user is not None and user.target in MAX_POOL_OPS and len(user.users) == 1
        if pooled:
            # cat -> max pool -> quantize (XNNPACK): quantizing commutes with the max, so the concatenation
            # takes the pool's output parameters and the pool keeps them
            user = next(iter(user.users))
        if user is None or user.target not in QUANTIZE:
            raise self.fail(node, "a cat whose result is not quantized")
        q = self.act_qparams(user)
        producers = {n.output: n for n in self.nodes}
        names = []
        for i, part in enumerate(parts):
            t = part.tensor
            if (isinstance(producers.get(t), (ir.Dense, ir.Conv2d, ir.Pool2d, ir.Add)) and t not in self.cat_parts
                    and t not in names and self.tensors[t].qparams == q):
                names.append(t)
                continue
            if len(self.tensors[t].shape) != 3:
                raise self.fail(node, f"a cat of a vector {t} that needs a copy (only maps are copied)")
            copy = f"{node.name}_in{i}"
            self.tensors[copy] = ir.TensorInfo(copy, self.tensors[t].shape, q)
            self.nodes.append(ir.Pool2d(name=copy, input=t, output=copy, kind="max", kernel=(1, 1),
                                        clamp=(q.qmin, q.qmax), source=f"{t} -> {node.name} (a copy into it)"))
            names.append(copy)
        self.cat_parts.update(names)
        if not pooled:
            return _Pending("concat", [_Dequantized(t) for t in names], {}, [node])
        whole = f"{node.name}_quantized"          # a tensor torch's graph does not have
        self.tensors[whole] = ir.TensorInfo(whole, self.ir_shape(node), q)
        self.nodes.append(ir.Concat(name=node.name, parts=tuple(names), output=whole, source=node.name))
        return _Dequantized(whole)

    def visit_view(self, node, src, val):
        if node.target == aten.dropout.default and (len(node.args) < 3 or node.args[2]):
            raise self.fail(node, "dropout in training mode (export the model in eval mode)")
        in_shape, out_shape = self.shape(src), self.shape(node)
        if in_shape == out_shape:
            return val
        flat_map = len(in_shape) in (3, 4) and len(out_shape) == 2 and int(np.prod(in_shape[1:])) == out_shape[1]
        if flat_map and isinstance(val, (_Dequantized, _Quantized)):
            return type(val)(val.tensor, flat=True)
        if flat_map and isinstance(val, _Pending) and val.map_shape is None:
            # a layer's float result flattened before its quantize (XNNPACK leaves pools unquantized): the
            # IR tensor stays the map, and the next linear reads it flattened
            return dataclasses.replace(val, map_shape=self.ir_shape(src))
        unflat = len(in_shape) == 2 and len(out_shape) == 4 and int(np.prod(out_shape[1:])) == in_shape[1]
        if unflat and isinstance(val, _FloatInput) and not val.flat:
            return _FloatInput(out_shape, flat=True)
        if unflat and isinstance(val, _Dequantized) and val.tensor == self.input and self.layout == "nc":
            # the model input viewed as a map: the program takes the map (NHWC), the user still gives
            # [B, C*H*W] in torch's order; a linear reading the input flat permutes its columns as for any map
            self.tensors[val.tensor] = dataclasses.replace(self.tensors[val.tensor], shape=self.ir_shape(node))
            self.layout = "nchw_flat"
            for n, v in self.values.items():
                if isinstance(v, (_Quantized, _Dequantized)) and v.tensor == val.tensor:
                    self.values[n] = dataclasses.replace(v, flat=True)
            return _Dequantized(val.tensor)
        raise self.fail(node, f"a reshape from {in_shape} to {out_shape} (only flattening [B, C, H, W] to "
                              f"[B, C*H*W], a view of the model input as [B, C, H, W], or shape-preserving views)")

    def visit_quantize(self, node, val):
        q = self.act_qparams(node)
        if isinstance(val, _Dequantized):
            if q == self.tensors[val.tensor].qparams:
                return _Quantized(val.tensor, val.flat)
            val = self.identity(val)   # a requantize
        if isinstance(val, _FloatInput):
            if self.input is not None:
                raise self.fail(node, "a second quantization of the model input")
            if len(val.shape) not in (2, 3, 4):
                raise self.fail(node, f"an input of shape {val.shape} (only [batch, features], [B, C, L] or "
                                      f"[B, C, H, W])")
            self.input = node.name
            # a [B, N, D] sequence is the IR's [N, D] in torch's own order, as a [B, K] vector is
            self.layout = {2: "nc", 3: "ncl" if len(self.ir_shape(node)) == 3 else "nc",
                           4: "nchw_flat" if val.flat else "nchw"}[len(val.shape)]
            self.tensors[node.name] = ir.TensorInfo(node.name, self.ir_shape(node), q)
            return _Quantized(node.name)
        if isinstance(val, _Pending):
            shape = val.map_shape or self.ir_shape(node)
            self.tensors[node.name] = ir.TensorInfo(node.name, shape, q)
            self.nodes.append(self.make_node(node, val, q))
            return _Quantized(node.name, flat=val.map_shape is not None)
        raise self.fail(node, "a quantize that follows neither the input, a layer nor a dequantize")

    def identity(self, val: "_Dequantized") -> _Pending:
        """A requantize of `val`; a flattened map stays a map in the IR (XNNPACK requantizes after a flatten)."""
        return _Pending("identity", [val], {}, [], map_shape=self.tensors[val.tensor].shape if val.flat else None)

    def visit_linear(self, node, val) -> _Pending:
        x = self.dequantized(node, node.args[0], "a linear input")
        weight = self.values.get(node.args[1])
        if not isinstance(weight, _Weight) or weight.values.ndim != 2:
            raise self.fail(node, "a linear whose weight is not a dequantized integer [N, K] constant")
        w = weight.values
        shape = self.tensors[x.tensor].shape
        features = shape[-1] if len(shape) == 2 and not x.flat else int(np.prod(shape))
        if w.shape[1] != features:
            raise self.fail(node, f"weight shape {w.shape} does not match the input's {features} features")
        if len(shape) == 2 and not x.flat:
            # a linear over the channels of every token: a 1x1 convolution over the [N, D] map
            return _Pending("conv", [x], {"weight": _Weight(w[:, None, None, :], weight.scale, weight.bits),
                                          "bias": self.bias_arg(node, 2), "stride": (1, 1),
                                          "padding": (0, 0, 0, 0), "dilation": (1, 1), "groups": 1}, [node])
        if len(shape) == 3:
            if not x.flat:
                raise self.fail(node, "a linear applied to a feature map without flatten")
            h, wd, c = shape   # torch flattens C, H, W; the IR's map is H, W, C
            w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        return _Pending("linear", [x], {"weight": _Weight(w, weight.scale, weight.bits),
                                        "bias": self.bias_arg(node, 2)}, [node])

    def bias_arg(self, node, i):
        bias = node.args[i] if len(node.args) > i else None
        return None if bias is None else self.const(node, bias).double().numpy()

    def visit_conv(self, node) -> _Pending:
        x = self.dequantized(node, node.args[0], "a conv input")
        weight = self.values.get(node.args[1])
        one_d = node.target == aten.conv1d.default
        if not isinstance(weight, _Weight) or weight.values.ndim != (3 if one_d else 4):
            raise self.fail(node, "a conv whose weight is not a dequantized integer [N, C, KH, KW] (conv1d: "
                                  "[N, C, K]) constant")
        a = list(node.args) + [None] * 7
        if isinstance(a[4], str):
            raise self.fail(node, f"a conv with padding={a[4]!r} (only explicit padding)")
        stride, padding, dilation = (_window_arg(node, v, fill) for v, fill in
                                     ((a[3] or 1, 1), (a[4] or 0, 0), (a[5] or 1, 1)))
        groups = int(a[6] or 1)
        w = weight.values[:, :, None] if one_d else weight.values      # [N, Cin/groups, KH, KW]
        n, cg = w.shape[:2]
        cin = cg * groups
        if self.tensors[x.tensor].shape[-1] != cin or len(self.tensors[x.tensor].shape) != 3:
            raise self.fail(node, f"weight shape {w.shape} does not match the input map {self.tensors[x.tensor].shape}")
        dense = np.zeros((n, cin) + w.shape[2:], np.int64)
        per_group = n // groups
        for gi in range(groups):
            dense[gi * per_group:(gi + 1) * per_group, gi * cg:(gi + 1) * cg] = w[gi * per_group:(gi + 1) * per_group]
        return _Pending("conv", [x], {"weight": _Weight(dense.transpose(0, 2, 3, 1), weight.scale, weight.bits),
                                      "bias": self.bias_arg(node, 2), "stride": stride,
                                      "padding": (padding[0], padding[1], padding[0], padding[1]),
                                      "dilation": dilation, "groups": groups}, [node])

    def visit_max_pool(self, node, val) -> _Pending:
        a = list(node.args) + [None] * 6
        kernel = _window_arg(node, a[1], 1)
        stride = _window_arg(node, a[2], 1) if a[2] else kernel
        padding, dilation, ceil = _window_arg(node, a[3] or 0, 0), _window_arg(node, a[4] or 1, 1), bool(a[5])
        if dilation != (1, 1):
            raise self.fail(node, "max pooling with dilation")
        if isinstance(val, _Pending) and val.op == "identity" and len(node.args[0].users) == 1:
            pending = val                              # a clamp before the pool: clamps commute with max
        else:
            pending = _Pending("identity", [self.dequantized(node, node.args[0], "a max pool input")], {}, [])
        pending.op = "max"
        size = self.tensors[pending.inputs[0].tensor].shape[:2]      # H, W of the IR map
        extra = _ceil_extra(size, kernel, stride, padding) if ceil else (0, 0)
        pending.args = {"kernel": kernel, "stride": stride,
                        "padding": (padding[0], padding[1], padding[0] + extra[0], padding[1] + extra[1])}
        pending.nodes.append(node)
        return pending

    def visit_avg_pool(self, node) -> _Pending:
        x = self.dequantized(node, node.args[0], "an average pool input")
        shape = self.tensors[x.tensor].shape
        h, w, _ = ir.hwc(shape)
        t, a = node.target, list(node.args) + [None] * 7
        if t == aten.mean.dim:
            dims = sorted(d % (len(shape) + 1) for d in a[1])
            if dims != ([1] if len(shape) == 2 else [2, 3]):
                raise self.fail(node, f"a mean over dims {a[1]} (only H and W of a map, or the tokens of a "
                                      f"sequence: a global average pool)")
            kernel, stride, padding = (h, w), (1, 1), (0, 0)
        elif t in (aten.adaptive_avg_pool2d.default, aten.adaptive_avg_pool1d.default):
            oh, ow = _window_arg(node, a[1], 1)
            if h % oh or w % ow:
                raise self.fail(node, f"adaptive pooling of {h}x{w} to {oh}x{ow} (sizes must divide)")
            kernel = stride = (h // oh, w // ow)
            padding = (0, 0)
        else:
            kernel = _window_arg(node, a[1], 1)
            stride = _window_arg(node, a[2], 1) if a[2] else kernel
            padding = _window_arg(node, a[3] or 0, 0)
            ceil, include_pad, divisor = bool(a[4]), True if a[5] is None else bool(a[5]), a[6]
            if ceil or divisor is not None or (not include_pad and any(padding)):
                raise self.fail(node, "average pooling with ceil_mode, divisor_override or count_include_pad=False")
        return _Pending("avg", [x], {"kernel": kernel, "stride": stride, "padding": (padding[0], padding[1]) * 2},
                        [node])

    def make_node(self, node, p: _Pending, q: ir.QParams):
        clamp = _clamp_range(p.lo, p.hi, node, q)
        source = " -> ".join(x.name for x in p.nodes + [node])
        name = p.nodes[0].name if p.nodes else node.name
        ins = [x.tensor for x in p.inputs]
        if p.op in ("linear", "conv"):
            weight = p.args["weight"]
            n = weight.values.shape[0]
            w_scale = np.broadcast_to(weight.scale, (n,)).astype(np.float64).copy()
            in_scale = self.tensors[ins[0]].qparams.scale
            bias = p.args["bias"]
            bias = np.zeros(n) if bias is None else bias / (in_scale * w_scale)
            if not np.all(np.isfinite(bias)):
                raise self.fail(node, "a bias that is not finite")
            if p.op == "linear":
                return ir.Dense(name=name, input=ins[0], output=node.name, weight=weight.values,
                                weight_scale=w_scale, weight_bits=weight.bits, bias=bias, clamp=clamp, source=source)
            return ir.Conv2d(name=name, input=ins[0], output=node.name, weight=weight.values, weight_scale=w_scale,
                             weight_bits=weight.bits, bias=bias, clamp=clamp, stride=p.args["stride"],
                             padding=p.args["padding"], dilation=p.args["dilation"], groups=p.args["groups"],
                             source=source)
        if p.op == "concat":
            return ir.Concat(name=name, parts=tuple(ins), output=node.name, source=source)
        if p.op == "add":
            sa, sb = (self.tensors[t].qparams.scale for t in ins)
            weights, unit, bits = ir.add_weights(sa, sb)
            return ir.Add(name=name, input=ins[0], other=ins[1], output=node.name, weights=weights, unit=unit,
                          weight_bits=bits, clamp=clamp, source=source)
        if self.tensors[ins[0]].shape != self.tensors[node.name].shape and p.op == "identity":
            raise self.fail(node, "a requantize that changes the shape")
        if len(self.tensors[ins[0]].shape) == 1:
            if p.op != "identity":
                raise self.fail(node, "pooling a tensor that is not a feature map")
            k = self.tensors[ins[0]].size   # requantize a vector: a 1 x 1 window over a 1 x 1 x K map
            self.tensors[node.name] = ir.TensorInfo(node.name, (1, 1, k), q)
            self.tensors[ins[0]] = ir.TensorInfo(ins[0], (1, 1, k), self.tensors[ins[0]].qparams)
        kind = "avg" if p.op == "avg" else "max"
        a = p.args or {"kernel": (1, 1), "stride": (1, 1), "padding": (0, 0, 0, 0)}
        return ir.Pool2d(name=name, input=ins[0], output=node.name, kind=kind, kernel=a["kernel"], clamp=clamp,
                         stride=a["stride"], padding=a["padding"], source=source)

    def visit_output(self, node) -> None:
        outs = node.args[0]
        if not isinstance(outs, (tuple, list)) or len(outs) != 1:
            raise self.fail(node, "a model with more than one output")
        val = self.values.get(outs[0])
        if not isinstance(val, (_Dequantized, _Quantized)):
            raise self.fail(node, "an output that is not a (de)quantized tensor of the last layer")
        self.output = val.tensor
        if self.output != self.nodes[-1].output:
            raise self.fail(node, f"the output {self.output!r} is not the last layer's output")


def _op_name(node: torch.fx.Node) -> str:
    """'aten.sigmoid.default' for an ATen/registered op, 'operator.mul' for Python's operators, the function
    name otherwise, the node kind else."""
    if node.op != "call_function":
        return node.op
    if isinstance(node.target, torch._ops.OpOverload):
        return str(node.target)
    name = getattr(node.target, "__name__", str(node.target))
    # Python arithmetic on shapes and the getitem of a multi-output op (chunk, split)
    return f"operator.{name}" if getattr(node.target, "__module__", None) == "_operator" else name


def _macs(node: torch.fx.Node) -> int:
    """Multiplies per sample of a linear, convolution or matrix product node (0 for other ops)."""
    out = node.meta.get("val")
    if not isinstance(out, torch.Tensor) or node.op != "call_function":
        return 0
    shape = lambda a: tuple(a.meta["val"].shape) if isinstance(a, torch.fx.Node) else ()   # noqa: E731
    per_out = 0
    if node.target in (aten.linear.default, aten.matmul.default, aten.mm.default, aten.bmm.default):
        per_out = int(shape(node.args[0])[-1])
    elif node.target in (aten.conv1d.default, aten.conv2d.default):
        per_out = int(np.prod(shape(node.args[1])[1:]))
    return per_out * int(np.prod([int(d) for d in out.shape[1:]]))


def _ceil_extra(size, kernel, stride, padding) -> tuple[int, int]:
    """The bottom/right padding beyond `padding` that a ceil_mode pool's last windows read, by torch's rule:
    out = ceil((n + 2p - k) / s) + 1, less one if the last window would start in the right padding. Max
    pooling's padding never wins, so the extra rows are exact (each window keeps at least one real element)."""
    extra = []
    for n, k, s, p in zip((int(d) for d in size), kernel, stride, padding):
        out = -(-(n + 2 * p - k) // s) + 1
        if (out - 1) * s >= n + p:
            out -= 1
        extra.append(max(0, (out - 1) * s + k - (n + 2 * p)))
    return extra[0], extra[1]


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


def lower(exported_program: torch.export.ExportedProgram, *, host: bool = True) -> ir.Graph:
    """The integer graph of a PT2E-converted exported program; raises `UnsupportedModelError` otherwise.

    host: float ops between a dequantize and a quantize that the accelerator cannot run become ir.Host
    nodes (torch runs them between segments); False refuses them."""
    quantized = QUANTIZE + DEQUANTIZE + DEQUANTIZE_PER_CHANNEL
    if not any(n.op == "call_function" and n.target in quantized for n in exported_program.graph.nodes):
        raise UnsupportedModelError("the model is not quantized (no quantize/dequantize nodes): quantize it with "
                                    "emu.frontend.SystolaQuantizer (PT2E prepare, calibrate, convert) and "
                                    "export it again; see docs/quantization.md")
    return _Lowering(exported_program, host=host).run()
