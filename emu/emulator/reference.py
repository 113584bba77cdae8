"""The integer reference: the graph evaluated straight from the IR, no tiling, no hardware.

Every integer backend (golden, RTL) must equal it on every element of every layer. Feature maps are
int64 [B, H, W, C]; vectors [B, K]. Sums go through float32 matrix products over chunks of the reduction
short enough that no partial sum can pass 2**24, where float32 stops holding every integer (max|x| x
max|w| x chunk <= 2**24, whatever order BLAS adds in), and the chunks add in int64.
"""
from __future__ import annotations

import numpy as np

from emu.contract import numerics
from emu.compiler.ir import Add, Concat, Conv2d, Dense, Graph, Host, Pool2d, hwc

__all__ = ["run_reference", "windows"]


def windows(x: np.ndarray, kernel, stride, padding, dilation=(1, 1), pad_value: int = 0) -> np.ndarray:
    """[B, OH, OW, KH, KW, C] view of the padded NHWC map x ([B, H, W, C]) under a sliding window."""
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = kernel, stride, padding, dilation
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=pad_value)
    B, H, W, C = xp.shape
    oh, ow = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
    s = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (B, oh, ow, kh, kw, C), (s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]), writeable=False)


def _requant(node, graph: Graph, acc: np.ndarray) -> np.ndarray:
    mult, bias, shift = node.post_params(graph)
    return numerics.requantize(acc, bias, mult, shift, node.requant_qparams(graph).zero_point, *node.clamp)


def _matmul(x: np.ndarray, w: np.ndarray, x_max: int) -> np.ndarray:
    """x [M, K] @ w[N, K].T, exact in int64; x float32 holding integers of magnitude at most `x_max`."""
    w = np.asarray(w)
    chunk = max(1, (1 << 24) // max(1, x_max * int(np.abs(w).max(initial=0))))
    wf = w.T.astype(np.float32)
    acc = np.zeros((x.shape[0], w.shape[0]), np.int64)
    for k in range(0, x.shape[1], chunk):
        acc += (x[:, k:k + chunk] @ wf[k:k + chunk]).astype(np.int64)
    return acc


def _centred(x: np.ndarray, zero_point: int) -> tuple[np.ndarray, int]:
    """x - zero_point as float32 (exact: activations are at most 8 bits), and its largest magnitude."""
    c = (x - zero_point).astype(np.float32)
    return c, int(np.abs(c).max(initial=0))


def _dense(node: Dense, graph: Graph, x: np.ndarray) -> np.ndarray:
    xc, x_max = _centred(x.reshape(len(x), -1), graph.tensors[node.input].qparams.zero_point)
    return _requant(node, graph, _matmul(xc, node.weight, x_max))


def _conv(node: Conv2d, graph: Graph, x: np.ndarray) -> np.ndarray:
    x = x.reshape((len(x),) + hwc(graph.tensors[node.input].shape))     # a sequence [N, D] is a 1 x N map
    xc, x_max = _centred(x, graph.tensors[node.input].qparams.zero_point)
    n, kh, kw, cin = node.weight.shape
    win = windows(xc, (kh, kw), node.stride, node.padding, node.dilation)
    B, oh, ow = win.shape[:3]
    acc = _matmul(win.reshape(B * oh * ow, -1), node.weight.reshape(n, -1), x_max)
    return _requant(node, graph, acc).reshape(B, oh, ow, n)


def _pool(node: Pool2d, graph: Graph, x: np.ndarray) -> np.ndarray:
    x = x.reshape((len(x),) + hwc(graph.tensors[node.input].shape))
    q = graph.tensors[node.input].qparams
    if node.kind == "max":
        win = windows(x, node.kernel, node.stride, node.padding, pad_value=q.qmin)
        acc = win.max(axis=(3, 4)) - q.zero_point
    else:
        acc = windows(x - q.zero_point, node.kernel, node.stride, node.padding).sum(axis=(3, 4))
    return _requant(node, graph, acc)


def _add(node: Add, graph: Graph, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    za, zb = (graph.tensors[t].qparams.zero_point for t in node.inputs)
    wa, wb = node.weights
    return _requant(node, graph, wa * (a - za) + wb * (b - zb))


def run_reference(graph: Graph, x_int: np.ndarray) -> dict[str, np.ndarray]:
    """Integer tensors by name (int64, batch first) for an integer input of shape [B, *input shape]; a layer
    with a fused activation table adds its value before the table, under the table's `tensor`."""
    B = len(x_int)
    values = {graph.input: np.asarray(x_int, np.int64).reshape((B,) + graph.tensors[graph.input].shape)}
    for node in graph.nodes:
        args = [values[t] for t in node.inputs]
        if isinstance(node, Dense):
            y = _dense(node, graph, *args)
        elif isinstance(node, Conv2d):
            y = _conv(node, graph, *args)
        elif isinstance(node, Pool2d):
            y = _pool(node, graph, *args)
        elif isinstance(node, Concat):   # the parts share the output's quantization: only the layout changes
            y = np.concatenate(args, axis=-1)
        elif isinstance(node, Host):     # torch's own ops and Q/DQ, as the runtime runs them
            y = node.graph.run(args, graph.tensors[node.output].shape)
        else:
            y = _add(node, graph, *args)
        act = getattr(node, "activation", None)
        if act is not None:         # the requantized value before the table, kept where torch has it
            if act.tensor is not None:
                values[act.tensor] = y.reshape((B,) + graph.tensors[node.output].shape)
            y = act.apply(y)
        values[node.output] = y.reshape((B,) + graph.tensors[node.output].shape)
    return values
