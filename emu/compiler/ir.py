"""The integer graph IR: what the front end produces from a quantized torch model and the compiler and
the integer reference consume.

Activations are per-tensor affine: real = scale * (q - zero_point), q a signed `bits`-wide integer.
Weights are symmetric per output channel: real = weight_scale[n] * w[n, ...], w a signed `bits`-wide integer.
Bias is a float in units of input_scale * weight_scale[n] (the real bias divided by that step, unrounded);
`post_params` turns it into the POST's int64 bias, in units of 2**-shift output steps.
Feature maps are stored channels-last (NHWC) without the batch dimension; vectors as [features].
"""
from __future__ import annotations

import abc
import dataclasses

import numpy as np

from emu.contract import numerics

__all__ = ["QParams", "hwc", "TensorInfo", "Activation", "Dense", "Conv2d", "Pool2d", "Add", "Concat", "Host",
           "add_weights", "Graph",
           "Node"]


@dataclasses.dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int
    bits: int

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """float -> int64 as torch's quantize_per_tensor computes it: the float32 value times the float32
        1 / scale, rounded half to even, plus the zero point, saturating. (Dividing in float64 instead
        differs where the float32 product lands on the other side of a half.)"""
        q = np.round(np.asarray(x, np.float32) * np.float32(1.0 / self.scale)) + self.zero_point
        return np.clip(q, self.qmin, self.qmax).astype(np.int64)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((np.asarray(q, np.int64) - self.zero_point) * self.scale).astype(np.float32)


def hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """An IR shape as the map it is stored as: a map [H, W, C] itself, a sequence of tokens [N, D] (torch's
    [B, N, D]) a 1 x N map of D channels, a vector [K] a 1 x 1 map of K channels."""
    if len(shape) == 3:
        return tuple(shape)
    if len(shape) == 2:
        return (1,) + tuple(shape)
    return (1, 1, int(np.prod(shape)))


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]   # without batch; NHWC-ordered ([H, W, C]) for feature maps
    qparams: QParams

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclasses.dataclass(frozen=True)
class Activation:
    """An elementwise function applied to a layer's requantized result: y = values[q - qparams.qmin] for each
    integer q of `qparams` (the layer requantizes to `qparams`, not to its output's), the table of torch's
    quantize(f(dequantize(q))) over every q (emu.compiler.host.HostGraph.elementwise_values). The hardware
    looks it up in the activation table (emu.contract.isa.Buffer.TABLE)."""
    values: np.ndarray        # int64 [2**qparams.bits], in the layer output's integer range
    qparams: QParams          # of the integers it reads
    ops: tuple[str, ...]      # torch's ops, for tables
    #: torch's tensor the layer's requantize stands for, when the table was fused into the layer (the value is
    #: never stored: verify compares the layer with torch there, the table itself being exact)
    tensor: str | None = None

    def apply(self, q: np.ndarray) -> np.ndarray:
        return self.values[np.asarray(q, np.int64) - self.qparams.qmin]

    def describe(self) -> str:
        return "+".join(dict.fromkeys(op.split(".")[1].rstrip("_") for op in self.ops if op.startswith("aten.")))


class _Layer(abc.ABC):
    """Shared by every node: inputs, the integer rescale, the clamp and an optional activation table.

    A layer with an `activation` requantizes and clamps to the activation's parameters, then looks each
    result up; without one it requantizes to its output's."""

    activation: Activation | None = None

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    def requant_qparams(self, graph: "Graph") -> QParams:
        """The parameters the POST requantizes to (and the clamp is in)."""
        return self.activation.qparams if self.activation is not None else graph.tensors[self.output].qparams

    def in_scale(self, graph: "Graph") -> float:
        return graph.tensors[self.inputs[0]].qparams.scale

    @abc.abstractmethod
    def real_scale(self, graph: "Graph") -> np.ndarray:
        """in_scale * (weight scale or 1/window) / out_scale per output channel."""

    def requant(self, graph: "Graph") -> tuple[np.ndarray, int]:
        """(multiplier[N], shift) of this layer; the compiler and the reference both take them from here."""
        return numerics.requant_params(self.real_scale(graph))

    def post_params(self, graph: "Graph") -> tuple[np.ndarray, np.ndarray, int]:
        """(multiplier[N], POST bias[N] int64, shift): y = requantize(sum (x - zx) w, bias, multiplier, shift)."""
        mult, shift = self.requant(graph)
        bias = getattr(self, "bias", None)
        return mult, (np.zeros(len(mult), np.int64) if bias is None else numerics.post_bias(bias, mult)), shift

    @abc.abstractmethod
    def macs(self, graph: "Graph") -> int:
        """Multiply-accumulates per sample as the network defines the layer (torch's count: a grouped
        convolution's zero blocks are not work); a pool or add counts one per input element it reads. The
        array may issue more (k_valid x n_valid lanes of every tile, the hardware's MAC counter)."""

    def describe(self) -> str:
        return type(self).__name__ + self._act_suffix()

    def _act_suffix(self) -> str:
        return "" if self.activation is None else " +" + self.activation.describe()


def _pixels(graph: "Graph", tensor: str) -> int:
    """Positions of a map (H x W) or of a sequence (N), or 1 for a vector."""
    h, w, _ = hwc(graph.tensors[tensor].shape)
    return h * w


def _stride(stride: tuple[int, int]) -> str:
    """A window's stride for tables: one number when H and W agree (a 1-D op's is 1 x L)."""
    return str(stride[0]) if stride[0] == stride[1] else f"{stride[0]}x{stride[1]}"


@dataclasses.dataclass
class Dense(_Layer):
    """y = clamp(requant((x - zx) @ weight.T + bias)); a torch Linear (with an optional ReLU-style clamp)."""
    name: str
    input: str
    output: str
    weight: np.ndarray        # int64 [N, K], within weight_bits
    weight_scale: np.ndarray  # float64 [N]
    weight_bits: int
    bias: np.ndarray          # float64 [N], units of in_scale * weight_scale[n]
    clamp: tuple[int, int]    # output integer range after the activation function
    source: str = ""          # the torch graph node(s) it came from, for messages and tables
    activation: Activation | None = None

    def real_scale(self, graph):
        out_scale = self.requant_qparams(graph).scale
        return self.in_scale(graph) * np.asarray(self.weight_scale, np.float64) / out_scale

    def macs(self, graph):
        return int(self.weight.size)


@dataclasses.dataclass
class Conv2d(_Layer):
    """y = clamp(requant(conv(x - zx, weight) + bias)) on NHWC maps; padding reads as the real value 0.

    weight is int64 [N, KH, KW, Cin]; stride (sh, sw); padding (top, left, bottom, right); dilation (dh, dw).
    Output size OH = (H + top + bottom - dh * (KH - 1) - 1) // sh + 1, likewise OW. A grouped (depthwise)
    convolution's weight is dense with zero blocks; `groups` says how many, for its MAC count."""
    name: str
    input: str
    output: str
    weight: np.ndarray
    weight_scale: np.ndarray
    weight_bits: int
    bias: np.ndarray
    clamp: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    source: str = ""
    groups: int = 1
    activation: Activation | None = None

    real_scale = Dense.real_scale

    def macs(self, graph):
        return _pixels(graph, self.output) * int(self.weight.size) // self.groups

    def describe(self) -> str:
        kh, kw = self.weight.shape[1:3]
        kind = "" if self.groups == 1 else " dw" if self.groups == self.weight.shape[-1] else f" g{self.groups}"
        return f"Conv2d {kh}x{kw}/{_stride(self.stride)}{kind}" + self._act_suffix()


@dataclasses.dataclass
class Pool2d(_Layer):
    """Max or average pooling on NHWC maps, requantized to the output's parameters.

    max: y = clamp(requant(max over the window of x - zx)); padding never wins (reads as the minimum).
    avg: y = clamp(requant(sum over the window of (x - zx)) / (KH * KW)); padding counts as the real value 0
    (torch's count_include_pad=True). A global average pool is an avg pool whose window is the whole map."""
    name: str
    input: str
    output: str
    kind: str                           # "max" or "avg"
    kernel: tuple[int, int]
    clamp: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    source: str = ""
    weight_bits: int = 2                # the unit weights the accelerator multiplies by
    activation: Activation | None = None

    def real_scale(self, graph):
        channels = graph.tensors[self.output].shape[-1]
        div = self.kernel[0] * self.kernel[1] if self.kind == "avg" else 1
        return np.full(channels, self.in_scale(graph) / (div * self.requant_qparams(graph).scale))

    def macs(self, graph):
        return _pixels(graph, self.output) * graph.tensors[self.output].shape[-1] * self.kernel[0] * self.kernel[1]

    def describe(self) -> str:
        if self.activation is not None and self.kind == "max" and self.kernel == (1, 1):
            return "Table " + self.activation.describe()        # the activation alone (emu.compiler.activations)
        return f"{self.kind.capitalize()}Pool {self.kernel[0]}x{self.kernel[1]}/{_stride(self.stride)}" + \
            self._act_suffix()


@dataclasses.dataclass
class Add(_Layer):
    """y = clamp(requant(wa * (a - za) + wb * (b - zb))), the integer weights (wa, wb) ~ (sa, sb) / unit.

    Inputs with equal scales add with unit weights (exact); otherwise the front end picks the weights
    (`add_weights`) so that wa * unit and wb * unit approximate the two scales."""
    name: str
    input: str
    other: str
    output: str
    weights: tuple[int, int]
    unit: float                          # real value of one accumulator step
    weight_bits: int
    clamp: tuple[int, int]
    source: str = ""
    activation: Activation | None = None

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input, self.other)

    def real_scale(self, graph):
        return np.full(graph.tensors[self.output].shape[-1], self.unit / self.requant_qparams(graph).scale)

    def macs(self, graph):
        return 2 * graph.tensors[self.output].size


def add_weights(sa: float, sb: float, bits: int = 8) -> tuple[tuple[int, int], float, int]:
    """((wa, wb), unit, weight_bits) for an Add of inputs with scales sa, sb: unit weights when the scales
    are equal, else the pair of `bits`-bit weights whose ratio wb / wa is nearest sb / sa (the best rational
    approximation with both below 2**(bits-1)), unit = sa / wa. Against the float sum the b term is then off
    by |wb / wa - sb / sa| / (sb / sa) relative, about 1e-4 for 8 bits where the plain choice wa = 127 (the
    larger scale) leaves up to 1/254: 2 LSB on XNNPACK-quantized GRU gates."""
    if sa == sb:
        return (1, 1), sa, 2
    top = (1 << (bits - 1)) - 1
    ratio = sb / sa
    best = None
    for wa in range(1, top + 1):
        wb = round(wa * ratio)
        if 1 <= wb <= top:
            err = abs(wb / wa - ratio)
            if best is None or err < best[0]:
                best = (err, wa, wb)
    if best is None:        # a ratio beyond 2**(bits-1) - 1 either way: the smaller input gets weight 1
        wa, wb = (1, top) if ratio > 1 else (top, 1)
    else:
        _, wa, wb = best
    return (wa, wb), sa / wa, bits


@dataclasses.dataclass
class Concat:
    """y = the input maps side by side along the channels, all with y's quantization parameters (torch's cat
    of tensors that share them). No instructions: each input is written where it lies in y's region."""
    name: str
    parts: tuple[str, ...]
    output: str
    source: str = ""
    weight_bits: int = 0

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.parts

    def macs(self, graph) -> int:
        return 0

    def describe(self) -> str:
        return "Concat"


@dataclasses.dataclass
class Host:
    """y = quantize(f(dequantize(x_1), ...)): float ops torch runs on the host between accelerator segments
    (emu.compiler.host.HostGraph holds f). No weights on the accelerator; `macs` counts the multiplies of
    its linear/conv/matmul ops per sample, for the placement table."""
    name: str
    host_inputs: tuple[str, ...]
    output: str
    graph: object             # emu.compiler.host.HostGraph
    ops: tuple[str, ...]      # the torch ops it runs, for messages and tables
    macs: int = 0
    source: str = ""
    weight_bits: int = 0

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.host_inputs

    def describe(self) -> str:
        return "Host " + ",".join(dict.fromkeys(op.split(".")[1] if op.startswith("aten.") else op
                                                for op in self.ops if "sym_size" not in op))[:40]


Node = Dense | Conv2d | Pool2d | Add | Concat | Host


@dataclasses.dataclass
class Graph:
    tensors: dict[str, TensorInfo]
    nodes: list[Node]
    input: str
    output: str
    # the user's float input: "nc", "ncl" ([B, C, L], a map of height 1), "nchw", or "nchw_flat" ([B, C*H*W]
    # the model views as a map)
    input_layout: str = "nc"

    def summary(self) -> str:
        lines = []
        for n in self.nodes:
            i, o = self.tensors[n.inputs[0]], self.tensors[n.output]
            bits = f"host A{o.qparams.bits}" if isinstance(n, Host) else \
                f"A{o.qparams.bits}" if isinstance(n, Concat) else f"W{n.weight_bits}A{o.qparams.bits}"
            lines.append(f"{n.describe():14s} {n.name:20s} {i.shape} -> {o.shape} {bits}")
        return "\n".join(lines)
