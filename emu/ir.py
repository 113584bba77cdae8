"""The integer graph IR: what the front end produces from a quantized torch model and the compiler and
the integer reference consume.

Activations are per-tensor affine: real = scale * (q - zero_point), q a signed `bits`-wide integer.
Weights are symmetric per output channel: real = weight_scale[n] * w[n, ...], w a signed `bits`-wide integer.
Bias is an int32 in units of input_scale * weight_scale[n] (torch's convention for quantized linear/conv).
Feature maps are stored channels-last (NHWC) without the batch dimension; vectors as [features].
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import numerics

__all__ = ["QParams", "TensorInfo", "Dense", "Graph", "Node"]


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
        """float -> int64, round half to even (as torch.quantize_per_tensor), saturating."""
        q = np.round(np.asarray(x, np.float64) / self.scale) + self.zero_point
        return np.clip(q, self.qmin, self.qmax).astype(np.int64)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((np.asarray(q, np.int64) - self.zero_point) * self.scale).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]   # without batch; NHWC-ordered ([H, W, C]) for feature maps
    qparams: QParams

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclasses.dataclass
class Dense:
    """y = clamp(requant((x - zx) @ weight.T + bias)); a torch Linear (with an optional ReLU-style clamp)."""
    name: str
    input: str
    output: str
    weight: np.ndarray        # int64 [N, K], within weight_bits
    weight_scale: np.ndarray  # float64 [N]
    weight_bits: int
    bias: np.ndarray          # int64 [N], units of in_scale * weight_scale[n]
    clamp: tuple[int, int]    # output integer range after the activation function
    source: str = ""          # the torch graph node(s) it came from, for messages and tables

    def requant(self, graph: "Graph") -> tuple[np.ndarray, int]:
        """(multiplier[N], shift) of this layer; the compiler and the reference both take them from here."""
        sx = graph.tensors[self.input].qparams.scale
        sy = graph.tensors[self.output].qparams.scale
        return numerics.requant_params(sx * self.weight_scale / sy)


Node = Dense


@dataclasses.dataclass
class Graph:
    tensors: dict[str, TensorInfo]
    nodes: list[Node]
    input: str
    output: str
    input_layout: str = "nc"   # how the user's float input is laid out: "nc" or "nchw"

    def summary(self) -> str:
        lines = []
        for n in self.nodes:
            i, o = self.tensors[n.input], self.tensors[n.output]
            lines.append(f"{type(n).__name__:8s} {n.name:20s} {i.shape} -> {o.shape} "
                         f"W{n.weight_bits}A{o.qparams.bits}")
        return "\n".join(lines)
