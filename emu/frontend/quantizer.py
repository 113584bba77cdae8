"""A PT2E quantizer that produces exactly the numerics Systola's integer graph IR accepts.

Quantization scheme (the same for PTQ and QAT; see `emu.compiler.ir` for the integer meaning and
``docs/quantization.md`` for the conventions in full):

* Weights: symmetric, per output channel (axis 0), signed, zero point 0, *restricted* range
  ``[-(2**(b-1) - 1), 2**(b-1) - 1]`` (e.g. [-127, 127] at 8 bits, [-7, 7] at 4, ternary [-1, 1] at 2).
  The range is symmetric so that a channel's scale is ``max|w| / qmax`` and no code is spent on a lone
  most-negative value; it is also what XNNPACK-style int8 configs use, so those models lower unchanged.
* Activations: per tensor, affine (scale and zero point), signed full range
  ``[-2**(b-1), 2**(b-1) - 1]``. After a ReLU the observer sees min = 0 and puts the zero point at qmin.
* Bias: left as a float tensor (torch's default); the lowering quantizes it to int32 in units of
  ``in_scale * weight_scale[n]``, rounding half to even.

Widths below 8 are expressed with ``torch.int8`` and a narrowed ``quant_min``/``quant_max``.

Every tensor has one set of quantization parameters, chosen where it is produced: a layer's ``act_bits``
is the width of its *output*; its input is quantized as its producer said (only the graph input, which no
layer produces, takes the consuming layer's width). So a network never requantizes between layers, even
with mixed widths.

Annotated patterns (`ANNOTATORS`, applied in order):

* ``conv2d`` / ``linear`` [-> batch_norm] [-> relu | relu6 | hardtanh | clamp]: one quantized layer; the
  batch norm is folded (by `prepare_pt2e` before annotation for PTQ, by `convert_pt2e` for QAT) and the
  activation is a clamp inside the layer.
* ``add(a, b)`` [-> activation]: both inputs share one set of parameters (the accelerator adds them with
  unit weights); the output (after the activation) has its own.
* ``max_pool2d``: output shares its input's parameters (max commutes with a monotone quantizer).
* ``avg_pool2d`` / ``adaptive_avg_pool2d`` / ``mean.dim``: output has its own parameters.
* ``flatten`` / ``view`` / ``reshape`` of a quantized tensor: output shares its input's parameters.
* ``cat`` along the channels of quantized outputs: every input and the output share one set of parameters,
  so the concatenation is only a memory layout (each input's layer writes its channels of the output).

Calibration (``calibration=`` for activations, ``weight_calibration=`` for weights; see
`emu.frontend.observers`): ``"minmax"``, ``"percentile"`` (activations only) or ``"mse"``. QAT wraps the
same observers in `FakeQuantize` (``"minmax"`` becomes a moving-average min/max there) or, with
``learn_scales=True``, in torchao's `LearnableFakeQuantize` (LSQ: the observer initialises the scale and
zero point, then both are trained by backpropagation with LSQ's gradient scaling).
"""
from __future__ import annotations

import fnmatch
import operator
from typing import Callable, Mapping

import torch
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e import (
    FakeQuantize,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)
from torchao.quantization.pt2e.learnable_fake_quantize import LearnableFakeQuantize
from torchao.quantization.pt2e.quantizer import (
    QuantizationAnnotation,
    QuantizationSpec,
    Quantizer,
    SharedQuantizationSpec,
)

from emu.frontend.binary import BinaryFakeQuantize
from emu.frontend.observers import CALIBRATIONS, MSEObserver, PercentileObserver, PerChannelMSEObserver
from emu.frontend.ops import (ACTIVATION_OPS, ADD_OPS, BATCH_NORM_OPS, CAT_OPS, LAYER_OPS, MAX_POOL_OPS,
                              POOL_OPS, VIEW_OPS)

__all__ = ["SystolaQuantizer", "ANNOTATORS", "weight_range", "act_range"]

BITS_MIN, BITS_MAX = 1, 8
#: Smallest scale an observer may produce (as XNNPACK's config); keeps all-zero channels finite.
_EPS = 2.0 ** -12


def weight_range(bits: int) -> tuple[int, int]:
    """Signed, restricted symmetric integer range of a `bits`-wide weight; [-1, 1] for binary weights (1 bit:
    the values are -1 and +1 only, `emu.frontend.binary`)."""
    q = (1 << (bits - 1)) - 1
    return (-1, 1) if bits == 1 else (-q, q)


def act_range(bits: int) -> tuple[int, int]:
    """Signed full integer range of a `bits`-wide activation."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _check_bits(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not BITS_MIN <= value <= BITS_MAX:
        raise ValueError(f"{name}={value!r} is not accepted: expected an integer from {BITS_MIN} to {BITS_MAX}")
    return value


def _check_layer_bits(layer_bits) -> dict[str, tuple[int, int]]:
    if layer_bits is None:
        return {}
    if not isinstance(layer_bits, Mapping):
        raise ValueError(f"layer_bits={layer_bits!r} is not accepted: expected a dict from a module or node "
                         "name pattern to (act_bits, weight_bits)")
    out = {}
    for key, value in layer_bits.items():
        if not isinstance(key, str):
            raise ValueError(f"layer_bits key {key!r} is not accepted: expected a module or node name pattern")
        if not (isinstance(value, tuple) and len(value) == 2 and all(
                not isinstance(b, bool) and isinstance(b, int) and BITS_MIN <= b <= BITS_MAX for b in value)):
            raise ValueError(f"layer_bits[{key!r}]={value!r} is not accepted: expected a pair (act_bits, "
                             f"weight_bits) of integers from {BITS_MIN} to {BITS_MAX}")
        out[key] = value
    return out


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not accepted: expected one of {', '.join(map(repr, choices))}")
    return value


# ---- annotation helpers ----
def _annotate(node: Node, input_qspec_map: dict | None = None, output_qspec=None) -> None:
    node.meta["quantization_annotation"] = QuantizationAnnotation(
        input_qspec_map=input_qspec_map or {}, output_qspec=output_qspec, _annotated=True)


def _annotation(node) -> QuantizationAnnotation | None:
    a = node.meta.get("quantization_annotation") if isinstance(node, Node) else None
    return a if a is not None and a._annotated else None


def _is_call(node, targets) -> bool:
    return isinstance(node, Node) and node.op == "call_function" and node.target in targets


def _only_user(node: Node) -> Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _follow_activation(node: Node) -> Node:
    user = _only_user(node)
    return user if _is_call(user, ACTIVATION_OPS) and not _annotation(user) else node


def _annotate_layer(q: "SystolaQuantizer", gm: GraphModule) -> None:
    """conv2d / linear [-> batch_norm [-> getitem 0]] [-> activation]: one quantized layer."""
    for node in gm.graph.nodes:
        if not _is_call(node, LAYER_OPS) or _annotation(node):
            continue
        chain, last = [node], node
        bn = _only_user(last)
        if _is_call(bn, BATCH_NORM_OPS):
            chain.append(bn)
            last = bn
            item = _only_user(bn)
            if _is_call(item, (operator.getitem,)) and item.args[1] == 0:
                chain.append(item)
                last = item
        output = _follow_activation(last)
        if output is not last:
            chain.append(output)
        if any(_annotation(n) for n in chain[1:]):
            continue
        act_bits, weight_bits = q.bits_for(node)
        qmap = {node.args[0]: q.act_spec(act_bits), node.args[1]: q.weight_spec(weight_bits)}
        if len(node.args) > 2 and isinstance(node.args[2], Node):
            qmap[node.args[2]] = None  # float bias
        _annotate(node, qmap, q.act_spec(act_bits) if output is node else None)
        for n in chain[1:]:
            _annotate(n, output_qspec=q.act_spec(act_bits) if n is output else None)


def _annotate_add(q: "SystolaQuantizer", gm: GraphModule) -> None:
    """add(a, b) [-> activation]: a and b share one set of parameters; the output has its own."""
    for node in gm.graph.nodes:
        if not _is_call(node, ADD_OPS) or _annotation(node) or node.kwargs.get("alpha", 1) != 1:
            continue
        a, b = node.args[:2]
        # (an add of a constant, ViT's position embedding say, is a host op: its integer weights would be
        # another tensor's values)
        if not (isinstance(a, Node) and isinstance(b, Node)) or "get_attr" in (a.op, b.op):
            continue
        output = _follow_activation(node)
        act_bits, _ = q.bits_for(node)
        qmap = {a: q.act_spec(act_bits)}
        if b is not a:
            qmap[b] = SharedQuantizationSpec((a, node))
        _annotate(node, qmap, q.act_spec(act_bits) if output is node else None)
        if output is not node:
            _annotate(output, output_qspec=q.act_spec(act_bits))


def _annotate_pool(q: "SystolaQuantizer", gm: GraphModule) -> None:
    """max pool: output shares the input's parameters; average pools: own output parameters."""
    for node in gm.graph.nodes:
        if not _is_call(node, POOL_OPS) or _annotation(node):
            continue
        act_bits, _ = q.bits_for(node)
        x = node.args[0]
        if node.target in MAX_POOL_OPS:
            _annotate(node, {x: q.act_spec(act_bits)}, SharedQuantizationSpec((x, node)))
        else:
            _annotate(node, {x: q.act_spec(act_bits)}, q.act_spec(act_bits))


def _annotate_views(q: "SystolaQuantizer", gm: GraphModule) -> None:
    """flatten / view / reshape of an annotated op's output: pass its parameters through unchanged."""
    for node in gm.graph.nodes:  # topological order: chains of views pass along
        if not _is_call(node, VIEW_OPS) or _annotation(node):
            continue
        x = node.args[0]
        producer = _annotation(x)
        if producer is None or producer.output_qspec is None:
            continue
        _annotate(node, {x: SharedQuantizationSpec(x)}, SharedQuantizationSpec((x, node)))


def _annotate_cat(q: "SystolaQuantizer", gm: GraphModule) -> None:
    """cat(tensors, dim=1) of annotated ops' outputs: every input and the output share the first input's
    parameters. (A cat of anything else, a chunk's half say, is left to the host, unquantized.)"""
    for node in gm.graph.nodes:
        if not _is_call(node, CAT_OPS) or _annotation(node):
            continue
        parts = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        ndim = node.meta["val"].dim() if "val" in node.meta else 0
        if dim % max(1, ndim) != 1 or not all(
                _annotation(p) is not None and _annotation(p).output_qspec is not None for p in parts):
            continue
        act_bits, _ = q.bits_for(node)
        first = parts[0]
        qmap = {first: q.act_spec(act_bits)}
        for p in parts[1:]:
            if p is not first:
                qmap[p] = SharedQuantizationSpec((first, node))
        _annotate(node, qmap, SharedQuantizationSpec((first, node)))


#: Pattern name -> annotator(quantizer, graph module); applied in this order.
ANNOTATORS: dict[str, Callable[["SystolaQuantizer", GraphModule], None]] = {
    "layer": _annotate_layer,
    "add": _annotate_add,
    "pool": _annotate_pool,
    "view": _annotate_views,
    "cat": _annotate_cat,
}


def _root_spec(spec):
    """The QuantizationSpec a (possibly shared) spec resolves to."""
    while isinstance(spec, SharedQuantizationSpec):
        target = spec.edge_or_node
        if isinstance(target, Node):
            spec = _annotation(target).output_qspec
        else:
            arg, user = target
            spec = _annotation(user).input_qspec_map[arg]
    return spec


def _share_producer_params(gm: GraphModule) -> None:
    """Make every input edge whose producer is annotated use the producer's output parameters.

    Run after all annotators: each tensor is then quantized once, with the width its producer chose.
    An add whose two producers chose different widths cannot share one set of parameters: refused.
    """
    for node in gm.graph.nodes:
        ann = _annotation(node)
        if ann is None:
            continue
        for arg, spec in list(ann.input_qspec_map.items()):
            if isinstance(spec, QuantizationSpec) and spec.qscheme == torch.per_tensor_affine:
                producer = _annotation(arg)
                if producer is not None and producer.output_qspec is not None:
                    ann.input_qspec_map[arg] = SharedQuantizationSpec(arg)
        if _is_call(node, ADD_OPS) and len(ann.input_qspec_map) == 2:
            a, b = node.args[:2]
            spec_a = _root_spec(ann.input_qspec_map[a])
            producer_b = _annotation(b)
            if producer_b is not None and producer_b.output_qspec is not None:
                spec_b = _root_spec(producer_b.output_qspec)
                if (spec_a.quant_min, spec_a.quant_max) != (spec_b.quant_min, spec_b.quant_max):
                    raise ValueError(
                        f"add {node.name!r} is not accepted: its inputs {a.name!r} and {b.name!r} are quantized "
                        f"to [{spec_a.quant_min}, {spec_a.quant_max}] and [{spec_b.quant_min}, "
                        f"{spec_b.quant_max}]; an add needs both at one width: give their producers the same "
                        "act_bits")


def _module_path(node: Node) -> str:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return path.split("L['self'].")[-1] if isinstance(path, str) else ""


class SystolaQuantizer(Quantizer):
    """Annotates a `torch.export`-ed model for Systola: W`weight_bits` A`act_bits`, both 1..8.

    1-bit weights are binary (±scale per channel) and need QAT: `emu.frontend.binary.BinaryFakeQuantize`, and
    `binarize_weights` on the prepared model before `convert_pt2e`. 1-bit activations are {0, scale} after
    a ReLU (the range [-1, 0] with zero point -1).

    ``layer_bits`` overrides the widths per layer: a dict from a pattern (`fnmatch`, e.g. ``"fc3"``,
    ``"block.*"``, ``"add*"``) to ``(act_bits, weight_bits)``, matched against the module path of the
    layer's conv/linear/add/pool node (``"stem"``, ``"block.conv1"``) and, failing that, the node's name
    (``"add"``, ``"max_pool2d"``); the first matching entry wins. ``act_bits`` is the width of the layer's
    output; ``weight_bits`` is ignored by layers without weights.

    ``is_qat=True`` selects fake-quantize modules for `prepare_qat_pt2e`; ``False`` observers for
    `prepare_pt2e` calibration. ``calibration`` (activations: ``"minmax"``, ``"percentile"``, ``"mse"``) and
    ``weight_calibration`` (``"minmax"``, ``"mse"``) pick the observers (`emu.frontend.observers`).
    ``learn_scales=True`` (QAT only) makes the scales and zero points trainable (LSQ), initialised by
    those observers on the first forward passes.
    """

    def __init__(self, *, act_bits: int = 8, weight_bits: int = 8, is_qat: bool = False,
                 calibration: str = "minmax", weight_calibration: str = "minmax", learn_scales: bool = False,
                 layer_bits: Mapping[str, tuple[int, int]] | None = None):
        super().__init__()
        self.act_bits = _check_bits("act_bits", act_bits)
        self.weight_bits = _check_bits("weight_bits", weight_bits)
        if not isinstance(is_qat, bool):
            raise ValueError(f"is_qat={is_qat!r} is not accepted: expected True or False")
        self.is_qat = is_qat
        self.calibration = _check_choice("calibration", calibration, CALIBRATIONS)
        self.weight_calibration = _check_choice("weight_calibration", weight_calibration, ("minmax", "mse"))
        if not isinstance(learn_scales, bool):
            raise ValueError(f"learn_scales={learn_scales!r} is not accepted: expected True or False")
        if learn_scales and not is_qat:
            raise ValueError("learn_scales=True is not accepted with is_qat=False: scales are learned by QAT")
        self.learn_scales = learn_scales
        self.layer_bits = _check_layer_bits(layer_bits)
        if not is_qat and 1 in (weight_bits, *(w for _, w in self.layer_bits.values())):
            raise ValueError("1-bit (binary) weights are accepted only with is_qat=True: post-training "
                             "quantization would round small weights to 0")
        self._specs: dict[tuple[str, int], QuantizationSpec] = {}

    # -- specs: one object per (kind, width), so equal widths share observers implicitly --
    def act_spec(self, bits: int) -> QuantizationSpec:
        """Per-tensor affine spec over the full signed `bits`-wide range."""
        key = ("act", bits)
        if key not in self._specs:
            observer = {"minmax": MinMaxObserver, "percentile": PercentileObserver,
                        "mse": MSEObserver}[self.calibration]
            if self.is_qat and not self.learn_scales and self.calibration == "minmax":
                observer = MovingAverageMinMaxObserver
            # LSQ's gradient scale is 1/sqrt(n * quant_max), and a 1-bit activation's quant_max is 0
            self._specs[key] = self._spec(act_range(bits), torch.per_tensor_affine, observer,
                                          grad_scaling=bits > 1)
        return self._specs[key]

    def weight_spec(self, bits: int) -> QuantizationSpec:
        """Per-output-channel symmetric spec over the restricted signed `bits`-wide range (binary at 1 bit)."""
        key = ("weight", bits)
        if bits == 1 and key not in self._specs:
            self._specs[key] = QuantizationSpec(dtype=torch.int8, quant_min=-1, quant_max=1,
                                                qscheme=torch.per_channel_symmetric, ch_axis=0,
                                                observer_or_fake_quant_ctr=BinaryFakeQuantize.with_args(eps=_EPS))
        if key not in self._specs:
            observer = {"minmax": PerChannelMinMaxObserver, "mse": PerChannelMSEObserver}[self.weight_calibration]
            if self.is_qat and not self.learn_scales and self.weight_calibration == "minmax":
                observer = MovingAveragePerChannelMinMaxObserver
            self._specs[key] = self._spec(weight_range(bits), torch.per_channel_symmetric, observer, ch_axis=0)
        return self._specs[key]

    def _spec(self, qrange: tuple[int, int], qscheme, observer, *, grad_scaling: bool = True,
              **kw) -> QuantizationSpec:
        if not self.is_qat:
            ctr = observer.with_args(eps=_EPS)
        elif self.learn_scales:
            ctr = LearnableFakeQuantize.with_args(observer=observer, use_grad_scaling=grad_scaling, eps=_EPS)
        else:
            ctr = FakeQuantize.with_args(observer=observer, eps=_EPS)
        return QuantizationSpec(dtype=torch.int8, quant_min=qrange[0], quant_max=qrange[1], qscheme=qscheme,
                                observer_or_fake_quant_ctr=ctr, **kw)

    def bits_for(self, node: Node) -> tuple[int, int]:
        """(act_bits, weight_bits) of the layer whose main node is `node`."""
        path = _module_path(node)
        for pattern, bits in self.layer_bits.items():
            if (path and fnmatch.fnmatchcase(path, pattern)) or fnmatch.fnmatchcase(node.name, pattern):
                return bits
        return self.act_bits, self.weight_bits

    def annotate(self, model: GraphModule) -> GraphModule:
        for annotator in ANNOTATORS.values():
            annotator(self, model)
        _share_producer_params(model)
        return model

    def validate(self, model: GraphModule) -> None:
        """Nothing to check after annotation: `annotate` only marks patterns it fully supports, and `lower`
        names any node left unquantized."""

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k, default in (
            ("calibration", "minmax"), ("weight_calibration", "minmax"), ("learn_scales", False),
            ("layer_bits", {})) if getattr(self, k) != default)
        return f"SystolaQuantizer(act_bits={self.act_bits}, weight_bits={self.weight_bits}, is_qat={self.is_qat}{extra})"
