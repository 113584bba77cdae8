"""Integer graph -> Program: tiling onto the R x C array, external-memory layout, instruction stream.

Schedule of one Dense layer (x [B, K] @ W.T [K, N]) for a chunk of m samples:

    LOAD ACT  all ceil(K/R) K-slices of the m samples          (once per chunk)
    LOAD WGT tile 0, PARAM of N-tile 0; SYNC
    for each tile t = (N-tile j, K-tile i), N-major:
        MATMUL tile t (accumulate when i > 0)            compute unit
        STORE the previous N-tile's OUT slot              DMA unit, overlaps the MATMUL
        LOAD WGT tile t+1 (and its PARAM) into the other slot
        POST when i is the last K-tile (into OUT slot j % 2)
        SYNC
    STORE the last N-tile

Weights and parameters are double-buffered (two slots each), OUT too, so DMA work hides behind the
array. Activations of the whole chunk stay in ACT for all N-tiles. Every weight tile is laid out in
external memory as a dense R x C block (zero padded) so it loads as one contiguous burst.

The zero point of a layer's input is folded into its bias: sum_k (x - zx) w = sum_k x w - zx sum_k w.
"""
from __future__ import annotations

import numpy as np

from . import isa, numerics
from .config import AccelConfig, PARAM_BYTES
from .ir import Dense, Graph
from .isa import Buffer, Opcode
from .program import Program, TensorRegion

__all__ = ["CompileError", "compile_graph"]

ALIGN = 64  # every region starts on a 64-byte boundary (any bus width divides it)


class CompileError(ValueError):
    """A graph this configuration cannot run; the message names the layer and the limit."""


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class _Memory:
    """Bump allocator over the external-memory image."""

    def __init__(self):
        self.chunks: list[tuple[int, bytes]] = []
        self.top = 0

    def alloc(self, nbytes: int, data: bytes | None = None) -> int:
        addr = self.top
        self.top = _align(addr + nbytes)
        if data is not None:
            self.chunks.append((addr, data))
        return addr

    def image(self) -> np.ndarray:
        img = np.zeros(max(self.top, ALIGN), np.uint8)
        for addr, data in self.chunks:
            img[addr:addr + len(data)] = np.frombuffer(data, np.uint8)
        return img


def _check_layer(node: Dense, graph: Graph, cfg: AccelConfig) -> None:
    x = graph.tensors[node.input].qparams
    y = graph.tensors[node.output].qparams
    if node.weight_bits > cfg.weight_bits:
        raise CompileError(f"layer {node.name}: {node.weight_bits}-bit weights, but the accelerator is built "
                           f"for weight_bits={cfg.weight_bits} (compile with --weight-bits {node.weight_bits})")
    for role, q in (("input", x), ("output", y)):
        if q.bits > cfg.act_bits:
            raise CompileError(f"layer {node.name}: {q.bits}-bit {role} activations, but the accelerator is "
                               f"built for act_bits={cfg.act_bits} (compile with --act-bits {q.bits})")
    if not (y.qmin <= node.clamp[0] <= node.clamp[1] <= y.qmax):
        raise CompileError(f"layer {node.name}: clamp {node.clamp} outside the {y.bits}-bit output range")


def _dense(node: Dense, graph: Graph, cfg: AccelConfig, mem: _Memory, regions: dict[str, TensorRegion],
           batch: int, prog: list) -> int:
    """Emit one Dense layer; returns its ideal (useful) MAC count per run."""
    R, C = cfg.rows, cfg.cols
    _check_layer(node, graph, cfg)
    xin, yout = regions[node.input], regions[node.output]
    w = np.asarray(node.weight, np.int64)
    N, K = w.shape
    if xin.size != K:
        raise CompileError(f"layer {node.name}: input has {xin.size} features, weights expect {K}")
    zx = xin.qparams.zero_point
    bias = np.asarray(node.bias, np.int64) - zx * w.sum(axis=1)
    bound = numerics.accumulator_bound(w, xin.qparams.qmin, xin.qparams.qmax, bias)
    if bound > cfg.acc_max:
        raise CompileError(f"layer {node.name}: accumulators can reach {bound} (K={K}), which does not fit "
                           f"acc_bits={cfg.acc_bits} (max {cfg.acc_max}); use fewer bits or a wider accumulator")
    mult, shift = node.requant(graph)
    kt, nt = -(-K // R), -(-N // C)
    m_tile = min(batch, cfg.act_depth // kt, cfg.acc_depth, cfg.out_depth // 2, (1 << 16) - 1)
    if m_tile < 1:
        raise CompileError(f"layer {node.name}: K={K} needs {kt} activation entries per sample, "
                           f"act_depth={cfg.act_depth} holds fewer")
    if cfg.wgt_depth < 2 * R or cfg.param_depth < 2:
        raise CompileError(f"wgt_depth={cfg.wgt_depth} and param_depth={cfg.param_depth} must hold two "
                           f"tiles ({2 * R} and 2 entries) for double buffering")

    # constants: weight tiles N-major, each a dense R x C block (entry k = W[n0:n0+C, k0+k]); params per N-tile
    wpad = np.zeros((nt * C, kt * R), np.int64)
    wpad[:N, :K] = w
    tiles = wpad.reshape(nt, C, kt, R).transpose(0, 2, 3, 1)  # [j, i, k, c]
    w_addr = mem.alloc(tiles.size, tiles.astype(np.int8).tobytes())
    params = np.zeros((nt * C, 2), np.int64)
    params[:N, 0], params[:N, 1] = bias, mult
    p_addr = mem.alloc(params.size * 4, params.astype("<i4").tobytes())

    def load_tile(t: int, slot: int):
        j, i = divmod(t, kt)
        prog.append(isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=R, row_len=C, buf_addr=slot * R,
                             ext_addr=w_addr + t * R * C, ext_stride=C))
        if i == 0:
            prog.append(isa.make(Opcode.LOAD, buf=Buffer.PARAM, rows=1, row_len=C, buf_addr=j % 2,
                                 ext_addr=p_addr + j * C * PARAM_BYTES, ext_stride=C * PARAM_BYTES))

    def store(j: int, m0: int, m: int):
        n0 = j * C
        prog.append(isa.make(Opcode.STORE, buf=Buffer.OUT, rows=m, row_len=min(C, N - n0),
                             buf_addr=(j % 2) * m_tile, ext_addr=yout.addr + m0 * N + n0, ext_stride=N))

    for m0 in range(0, batch, m_tile):
        m = min(m_tile, batch - m0)
        for i in range(kt):
            k0 = i * R
            prog.append(isa.make(Opcode.LOAD, buf=Buffer.ACT, rows=m, row_len=min(R, K - k0), buf_addr=i * m,
                                 ext_addr=xin.addr + m0 * K + k0, ext_stride=K))
        load_tile(0, 0)
        prog.append(isa.make(Opcode.SYNC))
        pending_store = None
        for t in range(nt * kt):
            j, i = divmod(t, kt)
            prog.append(isa.make(Opcode.MATMUL, rows=m, act_addr=i * m, wgt_addr=(t % 2) * R, acc_addr=0,
                                 accumulate=int(i > 0), k_valid=min(R, K - i * R), n_valid=min(C, N - j * C)))
            if pending_store is not None:
                store(*pending_store)
                pending_store = None
            if t + 1 < nt * kt:
                load_tile(t + 1, (t + 1) % 2)
            if i == kt - 1:
                prog.append(isa.make(Opcode.POST, rows=m, acc_addr=0, out_addr=(j % 2) * m_tile,
                                     param_addr=j % 2, shift=shift, zero_point=yout.qparams.zero_point,
                                     clamp_lo=node.clamp[0], clamp_hi=node.clamp[1]))
                pending_store = (j, m0, m)
            prog.append(isa.make(Opcode.SYNC))
        store(*pending_store)
    return batch * N * K


def compile_graph(graph: Graph, cfg: AccelConfig, *, batch: int = 64) -> Program:
    """Lower an integer graph to a program that processes `batch` samples per run."""
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 65535:
        raise CompileError(f"batch={batch!r} is not accepted: expected an integer from 1 to 65535")
    mem = _Memory()
    prog: list = []
    regions: dict[str, TensorRegion] = {}

    def region(name: str) -> TensorRegion:
        t = graph.tensors[name]
        if t.qparams.bits > cfg.act_bits:
            raise CompileError(f"tensor {name}: {t.qparams.bits}-bit activations, but the accelerator is "
                               f"built for act_bits={cfg.act_bits} (compile with --act-bits {t.qparams.bits})")
        regions[name] = TensorRegion(name, mem.alloc(batch * t.size), t.shape, t.qparams)
        return regions[name]

    region(graph.input)
    layers = []
    for node in graph.nodes:
        if not isinstance(node, Dense):
            raise CompileError(f"layer {node.name}: {type(node).__name__} is not supported yet; supported: Dense")
        out = region(node.output)
        macs = _dense(node, graph, cfg, mem, regions, batch, prog)
        layers.append({"name": node.name, "kind": type(node).__name__, "source": node.source,
                       "output": out.to_json(), "macs": macs})
    prog.append(isa.make(Opcode.END))
    if len(prog) > cfg.instr_depth:
        raise CompileError(f"the program needs {len(prog)} instructions, instr_depth={cfg.instr_depth}; "
                           f"use a smaller --batch or a larger instr_depth")
    blob = isa.encode_program(prog)
    prog_addr = mem.alloc(len(blob), blob)
    return Program(cfg, mem.image(), prog_addr, len(prog), batch, regions[graph.input], regions[graph.output],
                   layers, graph.input_layout)
