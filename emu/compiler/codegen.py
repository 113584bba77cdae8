"""Integer graph -> Program: external-memory layout, one `schedule.Gemm` per layer, instruction stream.

Layout: every tensor of the graph gets a region of `batch` samples, NHWC, with a border as wide as its
widest consumer's padding. The border holds the value that consumer reads as padding: the zero point
(the real value 0) for a convolution or an average pool, the smallest integer for a max pool. Two
consumers that need different border values are refused. A channel concatenation (Concat) has no
instructions: each of its parts is a view into its region (`TensorRegion.pitch`), which the part's layer
stores into and its readers load from, a pixel the whole's channels apart.

Lowering of each node to a matrix product over K-tiles (see emu/compiler/schedule.py):

- Dense: K-tiles of R consecutive input features; one output pixel per sample.
- Conv2d: the window is KH rows of KW * Cin contiguous bytes (NHWC; with dilation or from a view, KH * KW
  runs of Cin);
  each run is cut into K-tiles of at most R bytes, so a K-tile is one strided DMA load per output map.
- Pool2d and Add: channel-wise, so output channels are tiled min(R, C) at a time and K-tile (window
  position or input, channel chunk c) meets N-tile c through an identity weight tile; the other tiles are
  zero and skipped. Max pooling accumulates with MATMUL's reduce_max; average pooling and Add sum.

The input zero points are folded into the bias: sum_k (x_k - z_k) w_k = sum_k x_k w_k - sum_k z_k w_k; a
max pool subtracts its input zero point from the maximum instead.
"""
from __future__ import annotations

import bisect
import contextlib
import dataclasses
import gc

import numpy as np

from emu.contract import isa, numerics
from emu.contract.config import AccelConfig
from emu.compiler.ir import Activation, Add, Concat, Conv2d, Dense, Graph, Host, Pool2d
from emu.contract.isa import Opcode
from emu.compiler.program import HostStep, Program, TensorRegion
from emu.contract.loops import LOOP_MIN_BODY, depths
from emu.compiler.loops import fold
from emu.compiler.schedule import CompileError, Gemm, KTile, Memory, emit, estimate, slabs

__all__ = ["CompileError", "compile_graph", "BATCH_CHOICES"]

#: Batch sizes `compile_graph(batch=None)` tries, largest first, until the program fits one segment of
#: instr_depth instructions; batch 1 when none does (it is then several segments, see `split_segments`).
BATCH_CHOICES = (64, 32, 16, 8, 4, 2, 1)


def _window(node) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int], tuple[int, int]]:
    """(kernel, stride, padding, dilation) of a windowed node; 1x1 for the rest."""
    if isinstance(node, Conv2d):
        return tuple(node.weight.shape[1:3]), node.stride, node.padding, node.dilation
    if isinstance(node, Pool2d):
        return node.kernel, node.stride, node.padding, (1, 1)
    return (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)


def _rows_shared(tiles: list[KTile], weight: np.ndarray, kh: int) -> tuple[list[KTile], np.ndarray]:
    """The K-tiles of a stride-1 convolution's `kh` window rows (`tiles` row major, each row cut alike)
    reordered piece major, each piece's lower rows following the top one as its `lead`: K-tile (row y,
    piece p) reads what (row 0, piece p) reads for the output row y below, so one load of a band and y rows
    more serves them all (schedule.emit). `weight`'s columns follow the K-tiles."""
    pieces = len(tiles) // kh
    starts = np.cumsum([0] + [t.length for t in tiles])
    order = [y * pieces + p for p in range(pieces) for y in range(kh)]
    cols = np.concatenate([np.arange(starts[k], starts[k + 1]) for k in order])
    shared = [dataclasses.replace(tiles[k], lead=(k % pieces) * kh, rows_down=k // pieces) for k in order]
    return shared, weight[:, cols]


def _pad_value(node, graph: Graph, tensor: str) -> int:
    q = graph.tensors[tensor].qparams
    return q.qmin if isinstance(node, Pool2d) and node.kind == "max" else q.zero_point


def _check_bits(node, graph: Graph, cfg: AccelConfig) -> None:
    if node.weight_bits > cfg.weight_bits:
        raise CompileError(f"layer {node.name}: {node.weight_bits}-bit weights, but the accelerator is built "
                           f"for weight_bits={cfg.weight_bits} (compile with --weight-bits {node.weight_bits})")
    y = node.requant_qparams(graph)
    if not (y.qmin <= node.clamp[0] <= node.clamp[1] <= y.qmax):
        raise CompileError(f"layer {node.name}: clamp {node.clamp} outside the {y.bits}-bit output range")


class _Compiler:
    def __init__(self, graph: Graph, cfg: AccelConfig, batch: int):
        self.graph, self.cfg, self.batch = graph, cfg, batch
        self.mem = Memory()
        self.regions: dict[str, TensorRegion] = {}
        self.cuts: dict[str, tuple] = {}      # layer -> its cut (schedule.slabs), where `gemm` found it already
        self._layout()

    def _layout(self) -> None:
        g, cfg = self.graph, self.cfg
        pads: dict[str, tuple[int, int, int, int]] = {}
        values: dict[str, tuple[int, str]] = {}
        for node in g.nodes:
            _, _, padding, _ = _window(node)
            for t in node.inputs:
                pads[t] = tuple(max(a, b) for a, b in zip(pads.get(t, (0, 0, 0, 0)), padding))
                if any(padding):
                    v = _pad_value(node, g, t)
                    if values.setdefault(t, (v, node.name))[0] != v:
                        raise CompileError(f"tensor {t}: layers {values[t][1]} and {node.name} need different "
                                           f"padding values ({values[t][0]} and {v}); not supported")
        # a concatenation's parts are views into its region, so they share its border: the widest padding
        # any reader of the whole or of a part needs, with the one value they all read
        views: dict[str, tuple[str, int]] = {}          # part -> (concatenation, first channel)
        wholes = {n.output for n in g.nodes if isinstance(n, Concat)}
        for node in g.nodes:
            if isinstance(node, Concat):
                c0 = 0
                for part in node.parts:
                    if part in views or part in (g.input, g.output) or part in wholes:
                        raise CompileError(f"layer {node.name}: tensor {part} cannot be a view into it (it is "
                                           f"the model's input or output, or part of another concatenation)")
                    views[part] = (node.output, c0)
                    c0 += g.tensors[part].shape[-1]
                    pads[node.output] = tuple(max(a, b) for a, b in zip(pads.get(node.output, (0,) * 4),
                                                                        pads.get(part, (0,) * 4)))
                    if part in values:
                        v, who = values[part]
                        if values.setdefault(node.output, (v, who))[0] != v:
                            raise CompileError(f"tensor {node.output}: layers {values[node.output][1]} and {who} "
                                               f"need different padding values; not supported")
        for name, t in g.tensors.items():
            if t.qparams.bits > cfg.act_bits:
                raise CompileError(f"tensor {name}: {t.qparams.bits}-bit activations, but the accelerator is "
                                   f"built for act_bits={cfg.act_bits} (compile with --act-bits {t.qparams.bits})")
            if name in views:
                continue
            pad = pads.get(name, (0, 0, 0, 0))
            if any(pad) and len(t.shape) != 3:
                raise CompileError(f"tensor {name}: padding a tensor of shape {t.shape} (only H x W x C maps)")
            value = values.get(name, (0, ""))[0]
            region = TensorRegion(name, 0, t.shape, t.qparams, pad, value)
            nbytes = self.batch * region.sample_bytes
            init = np.full(nbytes, value, np.int64).astype(np.int8).tobytes() if any(pad) else None
            self.regions[name] = TensorRegion(name, self.mem.alloc(nbytes, init), t.shape, t.qparams, pad, value)
        for part, (whole, c0) in views.items():
            w = self.regions[whole]
            self.regions[part] = TensorRegion(part, w.addr + c0, g.tensors[part].shape, g.tensors[part].qparams,
                                              w.pad, w.pad_value, pitch=w.hwc[2])

    # ---- K-tiles ----
    def _ktiles(self, node, tensor: str, runs: list[tuple[int, int, int]]) -> list[KTile]:
        """K-tiles of at most `chunk` lanes over runs [(dy, dx, channel offset, length, chunk)] of one input."""
        src = self.regions[tensor]
        _, wp, c = src.padded_hwc
        _, (sh, sw), padding, _ = _window(node)
        y0, x0 = src.pad[0] - padding[0], src.pad[1] - padding[1]
        strides = (src.sample_bytes, sh * wp * c, sw * c)
        out = []
        for dy, dx, c0, length, chunk in runs:
            base = ((y0 + dy) * wp + x0 + dx) * c + c0
            out += [KTile(src, base + k, min(chunk, length - k), strides) for k in range(0, length, chunk)]
        return out

    def gemm(self, node) -> Gemm:
        g, cfg = self.graph, self.cfg
        R, C = cfg.rows, cfg.cols
        shared = None      # a stride-1 convolution's K-tiles that share loads, and their weight columns
        out = self.regions[node.output]
        yq = node.requant_qparams(g)
        xq = [g.tensors[t].qparams for t in node.inputs]
        n_out = out.hwc[2]
        if isinstance(node, Dense):
            src = self.regions[node.input]
            if any(src.pad):
                raise CompileError(f"layer {node.name}: a dense layer reading a padded map")
            n, k = node.weight.shape
            if src.size != k:
                raise CompileError(f"layer {node.name}: input has {src.size} features, weights expect {k}")
            h, w, c = src.hwc
            # K-tiles of consecutive features; a view into a concatenation, pixel by pixel (H, W, C order)
            runs = [(0, 0, 0, k, R)] if not src.pitch else [(y, x, 0, c, R) for y in range(h) for x in range(w)]
            tiles = self._ktiles(node, node.input, runs)
            weight, lanes, hw = np.asarray(node.weight, np.int64), C, (1, 1)
        elif isinstance(node, Conv2d):
            n, kh, kw, cin = node.weight.shape
            dh, dw = node.dilation
            w = np.asarray(node.weight, np.int64)
            weight, lanes, hw = w.reshape(n, -1), C, out.hwc[:2]
            if dw == 1 and not self.regions[node.input].pitch:   # a window row is KW * Cin contiguous bytes
                tiles = self._ktiles(node, node.input, [(y * dh, 0, 0, kw * cin, R) for y in range(kh)])
                if kh > 1 and dh == 1 and node.stride[0] == 1:
                    shared = _rows_shared(tiles, weight, kh)
            else:
                runs = [(y * dh, x * dw, 0, cin, R) for y in range(kh) for x in range(kw)]
                tiles = self._ktiles(node, node.input, runs)
        else:             # channel-wise: Pool2d, Add
            q = min(R, C)
            ch = n_out
            if isinstance(node, Pool2d):
                kh, kw = node.kernel
                per_input = [(node.input, [(y, x) for y in range(kh) for x in range(kw)], 1)]
            else:
                per_input = [(t, [(0, 0)], wt) for t, wt in zip(node.inputs, node.weights)]
            tiles, cols = [], []
            for tensor, offsets, wt in per_input:
                for c0 in range(0, ch, q):
                    for dy, dx in offsets:
                        tiles += self._ktiles(node, tensor, [(dy, dx, c0, min(q, ch - c0), q)])
                        cols.append((c0, min(q, ch - c0), wt))
            weight = np.zeros((ch, sum(c[1] for c in cols)), np.int64)
            col = 0
            for c0, length, wt in cols:
                weight[c0 + np.arange(length), col + np.arange(length)] = wt
                col += length
            lanes, hw = q, out.hwc[:2]
        zcols = np.concatenate([np.full(t.length, g.tensors[t.src.name].qparams.zero_point) for t in tiles])
        reduce_max = isinstance(node, Pool2d) and node.kind == "max"
        mult, bias, shift = node.post_params(g)
        # the array sums x * w on the stored x; the zero points come off in the bias, after the multiply
        zero_sum = np.full(n_out, xq[0].zero_point) if reduce_max else weight @ zcols
        bias = bias - zero_sum * mult
        lo, hi = min(q.qmin for q in xq), max(q.qmax for q in xq)
        acc = np.full(n_out, max(abs(lo), abs(hi))) if reduce_max else numerics.accumulator_bound(weight, lo, hi)
        if acc.max() > cfg.acc_max:
            raise CompileError(f"layer {node.name}: accumulators can reach {acc.max()} (K={weight.shape[1]}), "
                               f"which does not fit acc_bits={cfg.acc_bits} (max {cfg.acc_max}); use fewer "
                               f"bits or a wider accumulator")
        if (acc.astype(object) * mult + np.abs(bias)).max() >= 1 << 63:
            raise CompileError(f"layer {node.name}: the requantization sum acc * multiplier + bias can reach "
                               f"2**63 (a bias of {np.abs(bias).max()} POST units)")
        table = None if node.activation is None else table_entries(node.activation, cfg.act_bits)
        plain = Gemm(node.name, tiles, weight, bias, mult, shift, yq.zero_point, node.clamp, out, hw,
                     lanes, reduce_max, table)
        if shared is None:
            return plain
        # the shared loads save DMA time where the layer waits for its activations, at the price of longer
        # loop bodies (instructions): taken where the estimate gains a twentieth
        alt = dataclasses.replace(plain, ktiles=shared[0], weight=shared[1])
        (alt_cycles, alt_cut), (plain_cycles, plain_cut) = (estimate(x, cfg, self.batch) for x in (alt, plain))
        chosen, self.cuts[node.name] = (alt, alt_cut) if alt_cycles < 0.95 * plain_cycles else (plain, plain_cut)
        return chosen

    def run(self) -> Program:
        g, cfg = self.graph, self.cfg
        parts: list[list] = [[]]     # the instructions between host ops
        layers, hosts = [], []
        # every layer is checked before any is emitted, so a model that will be refused is refused at once
        for node in g.nodes:
            if not isinstance(node, (Dense, Conv2d, Pool2d, Add, Concat, Host)):
                raise CompileError(f"layer {node.name}: {type(node).__name__} is not supported; supported: "
                                   f"Dense, Conv2d, Pool2d, Add, Concat, Host")
            if not isinstance(node, (Concat, Host)):
                _check_bits(node, g, cfg)
        gemms = {node.name: self.gemm(node) for node in g.nodes if not isinstance(node, (Concat, Host))}
        cuts = {name: self.cuts.get(name) or slabs(gemm, cfg, self.batch) for name, gemm in gemms.items()}
        for node in g.nodes:
            layer = {"name": node.name, "kind": node.describe(), "source": node.source,
                     "output": self.regions[node.output].to_json()}
            if isinstance(node, Host):
                # the accelerator stops before it (END), the host runs it, the next segment goes on
                hosts.append(node)
                parts.append([])
                layers.append({**layer, "macs": 0, "host_macs": node.macs * self.batch, "instructions": 0,
                               "placement": "host"})
                continue
            if isinstance(node, Concat):      # its parts' layers wrote it
                layers.append({**layer, "macs": 0, "network_macs": 0, "instructions": 0,
                               "placement": "accelerator"})
                continue
            prog = parts[-1]
            first = len(prog)
            macs = emit(gemms[node.name], cfg, self.mem, prog, cuts[node.name])
            prog[first:] = fold(prog[first:], max_words=max(LOOP_MIN_BODY + 1, cfg.instr_depth // 4))
            layers.append({**layer, "macs": macs, "network_macs": node.macs(g) * self.batch,
                           "instructions": len(prog) - first, "placement": "accelerator"})
        instrs, steps = [], []
        for k, part in enumerate(parts):
            if part:
                instrs += split_segments(part, cfg.instr_depth)
            if k < len(hosts):
                node = hosts[k]
                steps.append(HostStep(len(segment_table(instrs)), node.name, node.graph,
                                      [self.regions[t] for t in node.inputs], self.regions[node.output]))
        if not instrs:
            raise CompileError("the model has no layer the accelerator runs: every op is a host op")
        blob = isa.encode_program(instrs)
        prog_addr = self.mem.alloc(len(blob), blob)
        return Program(cfg, self.mem.image(), prog_addr, len(instrs), self.batch, self.regions[g.input],
                       self.regions[g.output], layers, g.input_layout, segments=segment_table(instrs), host=steps)


def table_entries(act: Activation, act_bits: int) -> np.ndarray:
    """The activation table's entries (int64 [2**act_bits]) for `act`: entry i serves the act_bits value whose
    two's-complement bits are i (emu.contract.numerics.look_up); values outside the activation's input range
    are never looked up (the clamp keeps them out) and hold 0."""
    v = numerics.wrap(np.arange(1 << act_bits), act_bits)
    q = act.qparams
    inside = (v >= q.qmin) & (v <= q.qmax)
    return np.where(inside, act.values[np.clip(v - q.qmin, 0, len(act.values) - 1)], 0)


def split_segments(prog: list, instr_depth: int) -> list:
    """The instructions with an END after each segment: the fewest segments of at most `instr_depth`
    instructions, each cut after a SYNC outside any loop (or after a loop whose body ends with one), each
    one start of the hardware. One segment when the whole program fits, as before.

    After that SYNC every unit is idle, and the on-chip buffers keep their contents from one run to the
    next (nothing clears them, in the gateware or in golden), so the next segment goes on where this one
    stopped, even inside a layer's reduction."""
    # a cut may follow a SYNC that no loop body holds, or that ends the bodies holding it
    level = depths(prog) + [0]
    cuts = [pc + 1 for pc, i in enumerate(prog) if i.op == Opcode.SYNC and level[pc + 1] == 0]
    out, start = [], 0
    while len(prog) - start > instr_depth - 1:
        # the last cut that leaves room for the segment's END
        k = bisect.bisect_right(cuts, start + instr_depth - 1) - 1
        stop = cuts[k] if k >= 0 else start
        if stop <= start:
            raise CompileError(f"instructions {start}.. hold no SYNC outside a loop within instr_depth={instr_depth}")
        out += prog[start:stop] + [isa.make(Opcode.END)]
        start = stop
    return out + prog[start:] + [isa.make(Opcode.END)]


def segment_table(instrs: list) -> list[tuple[int, int]]:
    """(first pc, instructions) of each segment of a program: segments end at END."""
    out, start = [], 0
    for pc, i in enumerate(instrs):
        if i.op == Opcode.END:
            out.append((start, pc + 1 - start))
            start = pc + 1
    return out


def _parts(program: Program) -> int:
    """The fewest segments the program can have: one per stretch of layers between host ops."""
    cuts = [0] + [step.after for step in program.host] + [len(program.segments)]
    return sum(b > a for a, b in zip(cuts, cuts[1:]))


@contextlib.contextmanager
def _no_cycle_collection():
    """The cyclic garbage collector off, then as it was: a schedule allocates up to a million instructions
    that all live until the loop fold, and the collector's passes over them (a fifth of ResNet-18's compile)
    free nothing, as instructions hold no cycles; reference counting still frees the rest."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def compile_graph(graph: Graph, cfg: AccelConfig, *, batch: int | None = None) -> Program:
    """Lower an integer graph to a program that processes `batch` samples per run; batch=None takes the
    largest of BATCH_CHOICES whose program fits the instruction memory in one segment (else batch 1)."""
    with _no_cycle_collection():
        return _compile(graph, cfg, batch)


def _compile(graph: Graph, cfg: AccelConfig, batch: int | None) -> Program:
    if batch is None:
        program = _Compiler(graph, cfg, 1).run()
        if len(program.segments) > _parts(program):      # larger batches only add segments
            return program
        for b in BATCH_CHOICES:
            program = _Compiler(graph, cfg, b).run()
            if len(program.segments) == _parts(program) or b == BATCH_CHOICES[-1]:
                return program
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 65535:
        raise CompileError(f"batch={batch!r} is not accepted: expected an integer from 1 to 65535")
    return _Compiler(graph, cfg, batch).run()
