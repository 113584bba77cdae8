"""A PT2E quantizer that produces exactly the numerics Systola's integer graph IR accepts.

Quantization scheme (the same for PTQ and QAT; see `emu.ir` for the integer meaning):

* Weights: symmetric, per output channel (axis 0), signed, zero point 0, *restricted* range
  ``[-(2**(b-1) - 1), 2**(b-1) - 1]`` (e.g. [-127, 127] at 8 bits, [-7, 7] at 4, ternary [-1, 1] at 2).
  The range is symmetric so that a channel's scale is ``max|w| / qmax`` and no code is spent on a lone
  most-negative value; it is also what XNNPACK-style int8 configs use, so those models lower unchanged.
* Activations: per tensor, affine (scale and zero point), signed full range
  ``[-2**(b-1), 2**(b-1) - 1]``. After a ReLU the observer sees min = 0 and puts the zero point at qmin.
* Bias: left as a float tensor (torch's default); the lowering quantizes it to int32 in units of
  ``in_scale * weight_scale[n]``, rounding half to even.

Widths below 8 are expressed with ``torch.int8`` and a narrowed ``quant_min``/``quant_max``.

Observers: PTQ uses min/max observers (per channel for weights). QAT uses `FakeQuantize` around
moving-average min/max observers, which `prepare_qat_pt2e` accepts and `convert_pt2e` folds.

Annotated patterns live in `ANNOTATORS`, a table from pattern name to function, applied in order: fused
patterns (``linear`` followed by ``relu``/``relu6``/``hardtanh``/``clamp``, so the activation sits inside
the quantized layer) before the bare ones. Further layer kinds (conv2d, pooling, add) are new entries.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e import (
    FakeQuantize,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)
from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, QuantizationSpec, Quantizer

__all__ = ["SystolaQuantizer", "ANNOTATORS", "ACTIVATION_OPS", "weight_range", "act_range"]

BITS_MIN, BITS_MAX = 2, 8
#: Smallest scale an observer may produce (as XNNPACK's config); keeps all-zero channels finite.
_EPS = 2.0 ** -12

aten = torch.ops.aten
#: Element-wise clamps that may follow a linear inside one quantized layer.
ACTIVATION_OPS = (aten.relu.default, aten.relu_.default, aten.relu6.default, aten.hardtanh.default,
                  aten.hardtanh_.default, aten.clamp.default)


def weight_range(bits: int) -> tuple[int, int]:
    """Signed, restricted symmetric integer range of a `bits`-wide weight."""
    q = (1 << (bits - 1)) - 1
    return -q, q


def act_range(bits: int) -> tuple[int, int]:
    """Signed full integer range of a `bits`-wide activation."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _check_bits(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not BITS_MIN <= value <= BITS_MAX:
        raise ValueError(f"{name}={value!r} is not accepted: expected an integer from {BITS_MIN} to {BITS_MAX}")
    return value


def _annotate(node: Node, input_qspec_map: dict | None = None, output_qspec=None) -> None:
    node.meta["quantization_annotation"] = QuantizationAnnotation(
        input_qspec_map=input_qspec_map or {}, output_qspec=output_qspec, _annotated=True)


def _is_annotated(node: Node) -> bool:
    a = node.meta.get("quantization_annotation")
    return a is not None and a._annotated


def _annotate_linear_core(q: "SystolaQuantizer", linear: Node, output: Node) -> bool:
    """Annotate one linear whose quantized output is taken at `output` (the linear or its activation)."""
    nodes = [linear, output]
    if any(_is_annotated(n) for n in nodes):
        return False
    act, weight = linear.args[0], linear.args[1]
    qmap = {act: q.act_spec, weight: q.weight_spec}
    if len(linear.args) > 2 and isinstance(linear.args[2], Node):
        qmap[linear.args[2]] = None  # float bias
    if output is linear:
        _annotate(linear, qmap, q.act_spec)
    else:
        _annotate(linear, qmap)
        _annotate(output, output_qspec=q.act_spec)
    return True


def _annotate_linear_act(q: "SystolaQuantizer", gm: GraphModule) -> None:
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in ACTIVATION_OPS:
            continue
        linear = node.args[0]
        if (isinstance(linear, Node) and linear.op == "call_function"
                and linear.target == aten.linear.default and len(linear.users) == 1):
            _annotate_linear_core(q, linear, node)


def _annotate_linear(q: "SystolaQuantizer", gm: GraphModule) -> None:
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target == aten.linear.default:
            _annotate_linear_core(q, node, node)


#: Pattern name -> annotator(quantizer, graph module); applied in this order.
ANNOTATORS: dict[str, Callable[["SystolaQuantizer", GraphModule], None]] = {
    "linear_act": _annotate_linear_act,
    "linear": _annotate_linear,
}


def _spec(qrange: tuple[int, int], qscheme, is_qat: bool, *, ptq, qat, **kw) -> QuantizationSpec:
    """An int8-container spec narrowed to `qrange`: a min/max observer for PTQ, fake-quant for QAT."""
    ctr = FakeQuantize.with_args(observer=qat, eps=_EPS) if is_qat else ptq.with_args(eps=_EPS)
    return QuantizationSpec(dtype=torch.int8, quant_min=qrange[0], quant_max=qrange[1], qscheme=qscheme,
                            observer_or_fake_quant_ctr=ctr, **kw)


class SystolaQuantizer(Quantizer):
    """Annotates a `torch.export`-ed model for Systola: W`weight_bits` A`act_bits`, both 2..8.

    ``is_qat=True`` selects fake-quantize modules for `prepare_qat_pt2e`; ``False`` observers for
    `prepare_pt2e` calibration.
    """

    def __init__(self, *, act_bits: int = 8, weight_bits: int = 8, is_qat: bool = False):
        super().__init__()
        self.act_bits = _check_bits("act_bits", act_bits)
        self.weight_bits = _check_bits("weight_bits", weight_bits)
        if not isinstance(is_qat, bool):
            raise ValueError(f"is_qat={is_qat!r} is not accepted: expected True or False")
        self.is_qat = is_qat

        self.act_spec = _spec(act_range(act_bits), torch.per_tensor_affine, is_qat,
                              ptq=MinMaxObserver, qat=MovingAverageMinMaxObserver)
        self.weight_spec = _spec(weight_range(weight_bits), torch.per_channel_symmetric, is_qat,
                                 ptq=PerChannelMinMaxObserver, qat=MovingAveragePerChannelMinMaxObserver,
                                 ch_axis=0)

    def annotate(self, model: GraphModule) -> GraphModule:
        for annotator in ANNOTATORS.values():
            annotator(self, model)
        return model

    def validate(self, model: GraphModule) -> None:
        """Nothing to check after annotation: `annotate` only marks patterns it fully supports, and `lower`
        names any node left unquantized."""

    def __repr__(self) -> str:
        return f"SystolaQuantizer(act_bits={self.act_bits}, weight_bits={self.weight_bits}, is_qat={self.is_qat})"
