"""Binary (1-bit) weights for quantization-aware training: each weight -s_c or +s_c, never 0.

torch's Q/DQ graph has no binary weight type, so a binary layer is expressed with the ternary range: the
converted graph dequantizes int8 weights of range [-1, 1] with per-channel scales s_c and zero point 0, and
every weight is -1 or +1. The front end lowers a [-1, 1] weight holding no 0 as 1-bit
(`emu.frontend.lower`), which the accelerator at weight_bits=1 stores as one sign bit
(`emu.contract.config.BINARY_WEIGHT_BIT`).

`BinaryFakeQuantize` is the QAT module: forward w -> s_c * sign(w) per output channel (sign(0) = +1),
s_c = mean |w| over the channel (XNOR-Net's optimal scale), and a straight-through gradient (identity).
convert_pt2e quantizes a weight as clamp(round(w / s_c), -1, 1), which is 0 for |w| < s_c / 2, so
`binarize_weights` must run on the prepared model first: it sets each binarily fake-quantized weight to
its fake-quantized value, ±s_c, which converts to exactly ±1. Only weights the model holds as parameters
can be set so (a linear or a convolution without a batch norm folded into it in QAT).
"""
from __future__ import annotations

import torch
from torch.fx import GraphModule
from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

__all__ = ["BinaryFakeQuantize", "binarize_weights"]


class BinaryFakeQuantize(FakeQuantizeBase):
    """Per-channel binary fake quantization (see the module docstring). Quant range [-1, 1], int8,
    per-channel symmetric on `ch_axis`."""

    def __init__(self, *, ch_axis: int = 0, eps: float = 2 ** -30, dtype=torch.int8,
                 qscheme=torch.per_channel_symmetric, quant_min: int = -1, quant_max: int = 1, **_ignored):
        super().__init__()
        if (quant_min, quant_max) != (-1, 1):
            raise ValueError(f"BinaryFakeQuantize range [{quant_min}, {quant_max}] is not accepted: expected [-1, 1]")
        self.dtype, self.qscheme, self.ch_axis, self.eps = dtype, qscheme, ch_axis, eps
        self.quant_min, self.quant_max = quant_min, quant_max
        self.is_dynamic = False
        self.register_buffer("scale", torch.tensor([1.0]))
        self.register_buffer("zero_point", torch.tensor([0], dtype=torch.int32))

    def _channel_shape(self, x: torch.Tensor) -> list[int]:
        return [-1 if d == self.ch_axis else 1 for d in range(x.dim())]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observer_enabled[0] == 1:
            dims = [d for d in range(x.dim()) if d != self.ch_axis]
            s = x.detach().abs().mean(dim=dims).clamp_min(self.eps)
            if self.scale.shape != s.shape:
                self.scale.resize_(s.shape)
                self.zero_point.resize_(s.shape)
            self.scale.copy_(s)
            self.zero_point.zero_()
        if self.fake_quant_enabled[0] == 1:
            binary = torch.where(x >= 0, 1.0, -1.0).to(x.dtype) * self.scale.reshape(self._channel_shape(x))
            x = binary.detach() + (x - x.detach())     # exactly the binary value; the gradient: the identity
        return x

    @torch.jit.export
    def calculate_qparams(self, **kwargs):
        return self.scale, self.zero_point

    def extra_repr(self) -> str:
        return f"ch_axis={self.ch_axis}, quant_min={self.quant_min}, quant_max={self.quant_max}"


def binarize_weights(prepared: GraphModule) -> int:
    """Set every weight a `BinaryFakeQuantize` of `prepared` reads to its binary value (±s_c), so that
    convert_pt2e turns it into exactly ±1; returns how many were set. ValueError for a binary weight that is
    computed in the graph rather than held (a convolution with a batch norm folded in by QAT)."""
    done = 0
    for node in prepared.graph.nodes:
        if node.op != "call_module" or not isinstance(prepared.get_submodule(node.target), BinaryFakeQuantize):
            continue
        fq = prepared.get_submodule(node.target)
        source = node.args[0]
        if source.op != "get_attr":
            raise ValueError(f"binary weights of {source.name!r} are computed in the graph (a batch norm folded "
                             f"into a convolution); 1-bit weights need a linear or convolution without one")
        owner, _, attr = source.target.rpartition(".")
        param = getattr(prepared.get_submodule(owner) if owner else prepared, attr)
        with torch.no_grad():
            enabled = int(fq.observer_enabled[0])
            fq.disable_observer()
            param.copy_(fq(param))
            fq.enable_observer(bool(enabled))
        done += 1
    return done
