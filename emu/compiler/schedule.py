"""One accelerator layer as a tiled matrix product, and its instruction stream.

Every layer the compiler accepts becomes a `Gemm`: for each output pixel p (of `pixels` per sample) and
output channel n,

    ACC[p, n] = reduce over K-tiles i of  sum_k ACT_i[p, k] * W[n, col_i + k]      (reduce: + or max)
    OUT[p, n] = requantize(ACC[p, n], bias[n], multiplier[n], shift)

where K-tile i reads `length` <= R consecutive bytes of a source tensor per pixel, at a byte offset from the
pixel's window origin. Convolution windows, pooling windows and the two inputs of an Add are all lists of
K-tiles; the DMA gathers them with 3-D strided loads (sample, output row, output column), so no host code
touches activations between layers. Output channels are tiled `lanes` (<= C) at a time.

Schedule, for a chunk of m samples (m * pixels entries) and a group G of N-tiles whose accumulators fit
the ACC buffer at once::

    LOAD PARAM of G; LOAD ACT of the first K-tile; LOAD WGT of the first step; SYNC
    for each step (K-tile i, N-tile j in G), K-tile major, skipping all-zero weight tiles:
        MATMUL ACT slot of i x WGT slot -> ACC region of j (the first step of j overwrites)
        LOAD the next step's WGT tile (other slot), and a part of the next K-tile's ACT (other slot)
        SYNC drain=0 (the last step's: drain=1)
    for each j in G: POST ACC region of j -> OUT slot; STORE the previous OUT slot; SYNC

ACT, WGT and OUT are double-buffered, so the DMA works behind the array, and the steps' SYNCs do not wait
for the MATMULs' ACC writes, so consecutive MATMULs overlap (emu/contract/timing.py): each accumulates into a
region of its own, or into the one before's at the same position. The next K-tile's activations
are split over the last steps of the current one, as few parts as keep each step's DMA work within its
MATMUL: a SYNC waits for every unit, so a K-tile loaded whole beside one MATMUL would stall the array for
the rest of the load.

A stride-1 convolution's lower window rows can share loads (`KTile.lead`): K-tile (window row y, piece p)
reads, for output row r, what (row 0, piece p) reads for output row r + y. In a pass over one sample's
band, the lead's load takes the band and the y rows below it into an ACT slot that much larger, and each
follower's MATMUL starts y output rows into it: one activation load serves the window's KH rows, where a
layer would otherwise wait for the DMA (codegen takes the shared K-tiles where `estimate` gains a
twentieth: CIFAR ResNet-20's 16-channel stage, whose 8-byte rows at a 16-byte pitch cost 3 DMA cycles
each).

A layer whose output map is larger than the buffers hold (act_depth/2, out_depth/2, acc_depth entries), or
whose activation loads a smaller pass hides better, runs the schedule above once per band of output rows
of one sample (`slabs`); a band's windows read their input rows, halo included, straight from external
memory. The program may then be longer than the instruction memory: emu.compiler.codegen.split_segments
cuts it into segments.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from emu.contract import isa
from emu.contract.config import AccelConfig, PARAM_BYTES, PARAM_DTYPE
from emu.contract.isa import Buffer, Opcode
from emu.contract.timing import (BUSY_LATENCY, DMA_LOAD_DRAIN, DMA_LOAD_SETUP, POST_LATENCY, dma_cycles,
                                 matmul_accept_cycles, matmul_cycles)
from emu.compiler.program import TensorRegion

__all__ = ["CompileError", "KTile", "Gemm", "Memory", "dma", "slabs", "estimate", "emit"]

ALIGN = 64  # every region starts on a 64-byte boundary (any bus width divides it)
_BLOCKS_MAX = (1 << 10) - 1
_STRIDE_LIMIT = 1 << 20
_ROWS_MAX = (1 << 16) - 1
_ACT_PARTS_MAX = 4


# instructions are immutable: one of each SYNC serves every place a layer needs one
_SYNC = isa.make(Opcode.SYNC)
_SYNC_OPERANDS = isa.make(Opcode.SYNC, drain=0)     # between a group's steps: the MATMULs may still write ACC


class CompileError(ValueError):
    """A graph this configuration cannot run; the message names the layer and the limit."""


class Memory:
    """Bump allocator over the external-memory image."""

    def __init__(self):
        self.chunks: list[tuple[int, bytes]] = []
        self.top = 0

    def alloc(self, nbytes: int, data: bytes | None = None) -> int:
        addr = self.top
        self.top = -(-(addr + nbytes) // ALIGN) * ALIGN
        if data is not None:
            self.chunks.append((addr, data))
        return addr

    def image(self) -> np.ndarray:
        img = np.zeros(max(self.top, ALIGN), np.uint8)
        for addr, data in self.chunks:
            img[addr:addr + len(data)] = np.frombuffer(data, np.uint8)
        return img


@dataclasses.dataclass
class KTile:
    src: TensorRegion
    offset: int                      # bytes from sample 0's pixel-(0, 0) window origin to the first element
    length: int                      # reduction lanes, 1..R
    strides: tuple[int, int, int]    # bytes per sample, per output row, per output column
    # A K-tile `rows_down` > 0 output rows' stride below K-tile `lead` (a stride-1 convolution's lower window
    # rows) can read the lead's activations, loaded `rows_down` rows further, in a pass over one sample's
    # band (`emit`); it follows its lead in `Gemm.ktiles`.
    lead: int = -1
    rows_down: int = 0


@dataclasses.dataclass
class Gemm:
    name: str
    ktiles: list[KTile]
    weight: np.ndarray               # int64 [N, sum of lengths], columns in K-tile order
    bias: np.ndarray                 # int64 [N], POST units, input zero points already folded in
    mult: np.ndarray                 # int64 [N]
    shift: int
    zero_point: int
    clamp: tuple[int, int]
    out: TensorRegion
    out_hw: tuple[int, int]          # OH, OW
    lanes: int                       # output channels per N-tile, 1..C
    reduce_max: bool = False
    table: np.ndarray | None = None  # int64 [2**act_bits]: the activation table's entries, None for no lookup


def dma(op: Opcode, buf: Buffer, buf_addr: int, addr: int, dims: list[tuple[int, int]], row_len: int,
        where: str) -> list[isa.Instr]:
    """LOAD/STORE instructions moving `row_len`-element rows at addr + sum(i_d * stride_d) over the index
    space `dims` [(count, stride)], outermost first, to consecutive buffer entries in row-major order.

    Dimensions of count 1 are dropped and a dimension is merged into the next one in when its stride is
    the next's count times stride; the innermost two go in one instruction (rows, blocks), the rest loop."""
    merged: list[list[int]] = []
    for count, stride in dims:
        if count == 1:
            continue
        if merged and merged[-1][1] == count * stride:
            merged[-1] = [merged[-1][0] * count, stride]
        else:
            merged.append([count, stride])
    row_bytes = row_len * (PARAM_BYTES if buf == Buffer.PARAM else 1)
    rows, stride = merged.pop() if merged else (1, row_bytes)
    blocks, block_stride = merged.pop() if merged else (1, 0)
    if blocks > 1 and block_stride >= _STRIDE_LIMIT:
        merged.append([blocks, block_stride])
        blocks, block_stride = 1, 0
    if rows > _ROWS_MAX or stride >= _STRIDE_LIMIT:
        raise CompileError(f"{where}: a transfer of {rows} rows {stride} bytes apart does not fit a DMA "
                           f"instruction (rows <= {_ROWS_MAX}, stride < {_STRIDE_LIMIT})")
    out = []
    for idx in itertools.product(*(range(c) for c, _ in merged)):
        base = addr + sum(i * s for i, (_, s) in zip(idx, merged))
        for b0 in range(0, blocks, _BLOCKS_MAX):
            nb = min(_BLOCKS_MAX, blocks - b0)
            out.append(isa.make(op, buf=buf, rows=rows, row_len=row_len, buf_addr=buf_addr,
                                ext_addr=base + b0 * block_stride, ext_stride=stride, blocks=nb,
                                block_stride=block_stride if nb > 1 else 0))
            buf_addr += rows * nb
    return out


def _tiles(g: Gemm, cfg: AccelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Weight tiles [nt, kt, R, C] (tile[j, i][k, c] = W[j*lanes + c, col_i + k]), int8 as the memory image
    stores them (a depthwise layer's dense weight is mostly zero blocks: int64 tiles were 100 MB), and which
    are used."""
    R, C, L = cfg.rows, cfg.cols, g.lanes
    N = g.weight.shape[0]
    nt, kt = -(-N // L), len(g.ktiles)
    w = np.zeros((nt * L, g.weight.shape[1]), np.int8)
    w[:N] = g.weight
    tiles = np.zeros((nt, kt, R, C), np.int8)
    col = 0
    for i, t in enumerate(g.ktiles):
        tiles[:, i, :t.length, :L] = w[:, col:col + t.length].reshape(nt, L, t.length).transpose(0, 2, 1)
        col += t.length
    used = tiles.any(axis=(2, 3))
    for j in np.flatnonzero(~used.any(axis=1)):
        if g.reduce_max:
            raise CompileError(f"layer {g.name}: output tile {j} reads no input")
        used[j, 0] = True  # an all-zero row of weights still needs its ACC written (bias only)
    return tiles, used


def slabs(g: Gemm, cfg: AccelConfig, batch: int) -> tuple[int, list[tuple[int, int, int, int]]]:
    """How a layer's output is cut to fit the buffers: (entries per buffer slot, slabs), each slab
    (first sample, samples, first output row, output rows) computed in one pass through the array.

    A pass is chunks of whole samples or bands of output rows of one sample, at most as many entries as the
    buffers hold, cut the way `_pass_cycles` finds quickest: the most entries is not always best,
    because the N-tiles a pass runs at once (acc_depth / entries) are what hide each K-tile's activation
    load. Each band's windows read their own input rows (the halo) from external memory, where padding is
    stored, so bands need nothing from each other."""
    out_h, out_w = g.out_hw
    pixels = out_h * out_w
    cap = min(cfg.act_depth // 2, cfg.out_depth // 2, cfg.acc_depth, _ROWS_MAX)
    if out_w > cap:
        raise CompileError(f"layer {g.name}: one output row of {out_w} pixels is more than this configuration's "
                           f"buffers hold ({cap}: act_depth/2, out_depth/2, acc_depth)")
    # every way to cut: chunks of m whole samples, or bands of r output rows; larger passes first, so that
    # a tie keeps fewer passes
    cuts = [(m * pixels, [(m0, min(m, batch - m0), 0, out_h) for m0 in range(0, batch, m)])
            for m in range(min(batch, cap // pixels), 0, -1)]
    cuts += [(r * out_w, [(n, 1, r0, min(r, out_h - r0)) for n in range(batch) for r0 in range(0, out_h, r)])
             for r in range(min(out_h - 1, cap // out_w), 0, -1)]
    if len({t.length for t in g.ktiles}) > 1:
        # K-tiles of several lengths (a stem over 3 channels) repeat only every few K-tiles, too long a period
        # for loops to fold once a pass splits its loads (emu/compiler/loops.py): the fewest passes
        return cuts[0]
    used = _used(g)
    # each pass is the layer's loop nest again, so instructions grow with the passes: at most twice as
    # many as the fewest (on a small array the estimate would otherwise cut a layer into dozens)
    cuts = [cut for cut in cuts if len(cut[1]) <= 2 * len(cuts[0][1])]
    cycles = [sum(_pass_cycles(g, cfg, used, mm * rh * out_w, _shared(g, _act_slot(g, cfg, cut[0]), mm, rh))
                  for _, mm, _, rh in cut[1]) for cut in cuts]
    best = min(range(len(cuts)), key=cycles.__getitem__)
    # more passes are more instructions, and the estimate is rough: a smaller cut has to gain a tenth
    return cuts[best] if cycles[best] < 0.9 * cycles[0] else cuts[0]


def estimate(g: Gemm, cfg: AccelConfig, batch: int) -> tuple[int, tuple[int, list]]:
    """The layer's cycles as `slabs` cuts it, estimated (`_pass_cycles`), and the cut: to choose between two
    `Gemm`s of one layer."""
    cut = slot, passes = slabs(g, cfg, batch)
    used, act_slot = _used(g), _act_slot(g, cfg, slot)
    return sum(_pass_cycles(g, cfg, used, mm * rh * g.out_hw[1], _shared(g, act_slot, mm, rh))
               for _, mm, _, rh in passes), cut


def _used(g: Gemm) -> np.ndarray:
    """Which weight tiles [N-tile, K-tile] hold a non-zero weight (`_tiles`' `used`, without the tiles)."""
    starts = np.cumsum([0] + [t.length for t in g.ktiles])[:-1]
    nz = np.logical_or.reduceat(g.weight != 0, starts, axis=1)          # [N, K-tiles]
    nt = -(-nz.shape[0] // g.lanes)
    used = np.zeros((nt * g.lanes, nz.shape[1]), bool)
    used[:nz.shape[0]] = nz
    used = used.reshape(nt, g.lanes, -1).any(axis=1)
    used[~used.any(axis=1), 0] = True
    return used


def _below(g: Gemm) -> int:
    """Entries past a band that its shared loads read (`KTile.lead`): the deepest follower's rows."""
    return max(t.rows_down for t in g.ktiles) * g.out_hw[1]


def _act_slot(g: Gemm, cfg: AccelConfig, slot: int) -> int:
    """Entries of an ACT slot for passes of at most `slot` output entries (an OUT slot, an ACC region):
    room for the rows below a band that shared loads read, where ACT has it."""
    return slot + _below(g) if slot + _below(g) <= cfg.act_depth // 2 else slot


def _shared(g: Gemm, act_slot: int, mm: int, rh: int) -> bool:
    """Whether a pass of `mm` samples and `rh` output rows (in ACT slots of `act_slot` entries) loads each
    group of K-tiles with a lead once, `rows_down` rows further, for all of them (`KTile.lead`): over one
    sample, where the slot has room for the rows below the band."""
    return mm == 1 and rh * g.out_hw[1] + _below(g) <= act_slot


def _units(g: Gemm, shared: bool) -> list[int]:
    """The K-tile whose activation load each K-tile reads: its lead in a shared pass, else itself."""
    return [t.lead if shared and t.rows_down else i for i, t in enumerate(g.ktiles)]


def _pass_cycles(g: Gemm, cfg: AccelConfig, used: np.ndarray, entries: int, shared: bool = False) -> int:
    """`emit`'s schedule for a pass of `entries` output entries, in cycles, estimated from the cycle model:
    for each group of N-tiles and each activation load with steps in it, the larger of the array's MATMULs
    (one per step) and the DMA's activation load beside the steps' weight tiles; then the last MATMUL's
    drain and the group's POSTs. The program's own cycles are exact; this only ranks ways to cut a layer."""
    nt = used.shape[0]
    group = max(1, min(nt, cfg.acc_depth // entries, cfg.param_depth))
    t = g.ktiles[0]
    below = _below(g) if shared else 0
    act = dma_cycles(isa.make(Opcode.LOAD, buf=Buffer.ACT, rows=entries + below, row_len=t.length, buf_addr=0,
                              ext_addr=t.src.addr + t.offset, ext_stride=t.strides[2]), cfg)
    units = np.asarray(_units(g, shared))
    lead = np.unique(units, return_inverse=True)[1]
    wgt = dma_cycles(isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=cfg.rows, row_len=cfg.cols, buf_addr=0, ext_addr=0,
                              ext_stride=cfg.cols), cfg)
    step = matmul_accept_cycles(cfg, entries) + 2 * BUSY_LATENCY + 1
    total = 0
    for g0 in range(0, nt, group):
        steps = np.bincount(lead, weights=used[g0:g0 + group].sum(axis=0)).astype(np.int64)
        steps = steps[steps > 0]
        # the next load's parts ride on a unit's last steps (emit's act_parts), each with a set-up and beside
        # a weight load: where they do not fit a step, those steps wait for the DMA
        set_up = DMA_LOAD_SETUP + DMA_LOAD_DRAIN + BUSY_LATENCY
        parts = np.minimum(np.minimum(steps, _ACT_PARTS_MAX), -(-act // max(1, step - wgt - set_up)))
        carrying = parts * np.maximum(step, wgt + act // parts + set_up) + (steps - parts) * step
        total += int(np.maximum(np.maximum(steps * step, act + steps * wgt), carrying).sum()) + act
        total += matmul_cycles(cfg, entries) - matmul_accept_cycles(cfg, entries)   # the last MATMUL's drain
        total += min(group, nt - g0) * (entries + POST_LATENCY + 2 * BUSY_LATENCY + 1)
    return total


def emit(g: Gemm, cfg: AccelConfig, mem: Memory, prog: list, cut: tuple[int, list]) -> int:
    """Append the instructions of one layer, cut into passes as `slabs` cuts it (`cut`); returns the MACs the
    array counts."""
    R, C, L = cfg.rows, cfg.cols, g.lanes
    N = g.weight.shape[0]
    if cfg.wgt_depth < 2 * R or cfg.param_depth < 1:
        raise CompileError(f"wgt_depth={cfg.wgt_depth} must hold two {R}-entry weight tiles")
    slot, passes = cut
    act_slot_size = _act_slot(g, cfg, slot)
    tiles, used = _tiles(g, cfg)
    nt, kt = used.shape
    w_addr = {}
    for j, i in zip(*np.nonzero(used)):
        w_addr[j, i] = mem.alloc(R * C, tiles[j, i].tobytes())
    lanes = np.zeros(nt * L, PARAM_DTYPE)            # channel j * L + c
    lanes["bias"][:N], lanes["mult"][:N] = g.bias, g.mult
    params = np.zeros((nt, C), PARAM_DTYPE)
    params[:, :L] = lanes.reshape(nt, L)
    p_addr = mem.alloc(params.nbytes, params.tobytes())
    # the table, each entry repeated in every lane; loaded once, with the layer's first parameters (nothing
    # else loads the table within a layer, and every earlier POST is done by the SYNC before them)
    t_addr = None if g.table is None else mem.alloc(
        g.table.size * C, np.repeat(g.table.astype(np.int8)[:, None], C, axis=1).tobytes())
    table_loaded = [False]

    out_w = g.out_hw[1]
    oc = g.out.padded_hwc
    out_origin = g.out.addr + (g.out.pad[0] * oc[1] + g.out.pad[1]) * oc[2]
    macs = 0
    # act_parts' DMA cycles by (K-tile, samples, rows): every group of a pass and bands of one height repeat them
    need_memo: dict[tuple, tuple[int, int]] = {}
    # the weight loads and MATMULs of a band are those of every other band of its height (instructions are
    # immutable, so one serves all)
    wgt_loads: dict[tuple, isa.Instr] = {}
    matmuls: dict[tuple, isa.Instr] = {}
    for m0, mm, r0, rh in passes:
        entries = mm * rh * out_w
        shared = _shared(g, act_slot_size, mm, rh)
        unit_of = _units(g, shared)
        # the output rows each K-tile's load holds: the band, and in a shared pass the rows its followers need
        load_rows = [rh] * len(g.ktiles)
        for i, t in enumerate(g.ktiles):
            load_rows[unit_of[i]] = max(load_rows[unit_of[i]], rh + (t.rows_down if shared else 0))

        def load_act(i: int, slot_no: int, out: list, part: int = 0, parts: int = 1) -> None:
            """K-tile i's activations into ACT slot `slot_no`, or part `part` of `parts` of them: a range of
            the chunk's samples, or of the output rows for one sample (fewer parts than asked when there are
            fewer of those; a part past them loads nothing)."""
            if part >= parts:
                return
            t = g.ktiles[i]
            units, unit_stride, unit_entries = ((mm, t.strides[0], rh * out_w) if mm > 1
                                                else (load_rows[i], t.strides[1], out_w))
            u0, u1 = part * units // parts, (part + 1) * units // parts
            if u0 == u1:
                return
            inner = [(rh, t.strides[1]), (out_w, t.strides[2])] if mm > 1 else [(out_w, t.strides[2])]
            out.extend(dma(Opcode.LOAD, Buffer.ACT, slot_no * act_slot_size + u0 * unit_entries,
                           t.src.addr + m0 * t.strides[0] + r0 * t.strides[1] + t.offset + u0 * unit_stride,
                           [(u1 - u0, unit_stride), *inner], t.length, f"layer {g.name}"))

        def act_parts(i: int, steps: int) -> int:
            """Parts to load K-tile i's activations in, beside the last of the `steps` steps before it: as
            few as keep each step's DMA work (its weight tile, the part and the part's set-up) within the
            step's MATMUL, so that the steps before them stay alike and fold into a loop, and at most
            _ACT_PARTS_MAX: where the steps' MATMULs are short beside their weight tiles' loads (overlapped
            MATMULs take T cycles) more parts than that only add set-ups, and K-tiles of one or of many parts
            fold worse (docs/networks.md)."""
            key = (i, mm, rh, load_rows[i])
            if key not in need_memo:
                whole: list = []
                load_act(i, 0, whole)
                wgt: list = []
                load_wgt(next(iter(w_addr))[::-1], 0, wgt)
                room = (matmul_accept_cycles(cfg, entries) - dma_cycles(wgt[0], cfg)
                        - DMA_LOAD_SETUP - DMA_LOAD_DRAIN - BUSY_LATENCY)
                need_memo[key] = (sum(dma_cycles(x, cfg) for x in whole), room)
            need, room = need_memo[key]
            return max(1, min(steps, _ACT_PARTS_MAX, -(-need // max(1, room))))

        def load_wgt(step: tuple[int, int], slot_no: int, out: list) -> None:
            key = (*step, slot_no)
            if key not in wgt_loads:
                i, j = step
                wgt_loads[key] = isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=R, row_len=C, buf_addr=slot_no * R,
                                          ext_addr=w_addr[j, i], ext_stride=C)
            out.append(wgt_loads[key])

        def store(j: int, slot_no: int, out: list) -> None:
            dims = [(mm, g.out.sample_bytes), (rh, oc[1] * oc[2]), (out_w, oc[2])]
            out.extend(dma(Opcode.STORE, Buffer.OUT, slot_no * slot,
                           out_origin + m0 * g.out.sample_bytes + r0 * oc[1] * oc[2] + j * L, dims,
                           min(L, N - j * L), f"layer {g.name}"))

        def emit_group(js: range, out: list) -> int:
            group_macs = 0
            steps = [(i, j) for i in range(kt) for j in js if used[j, i]]
            out.extend(dma(Opcode.LOAD, Buffer.PARAM, 0, p_addr + js[0] * C * PARAM_BYTES,
                           [(len(js), C * PARAM_BYTES)], C, f"layer {g.name}"))
            if t_addr is not None and not table_loaded[0]:
                out.extend(dma(Opcode.LOAD, Buffer.TABLE, 0, t_addr, [(g.table.size, C)], C, f"layer {g.name}"))
                table_loaded[0] = True
            # activation loads go by unit: a K-tile, or in a shared pass a lead and its followers (which come
            # right after it, so steps are unit major too)
            units = [unit_of[i] for i, _ in steps]
            act_slot = {units[0]: 0}
            load_act(units[0], 0, out)
            load_wgt(steps[0], 0, out)
            out.append(_SYNC)
            started = set()
            # the next unit's activations are loaded in parts beside this unit's last steps, so the DMA
            # works behind as many MATMULs as it needs rather than only the last (each SYNC waits for the DMA)
            k_first: dict[int, int] = {}          # unit -> its first step
            for s, u in enumerate(units):
                k_first.setdefault(u, s)
            order = list(k_first)
            k_next = dict(zip(order, order[1:]))   # unit -> the one after it in this group
            k_steps = {u: (k_first[k_next[u]] if u in k_next else len(steps)) - k_first[u] for u in order}
            # one number of parts for the whole group (each unit's steps permitting): units alike but for
            # their addresses fold into loops
            most = max((act_parts(k_next[u], k_steps[u]) for u in k_next), default=1)
            parts = {u: min(most, k_steps[u]) for u in k_next}
            for s, ((i, j), u) in enumerate(zip(steps, units)):
                act_addr = act_slot[u] * act_slot_size + (g.ktiles[i].rows_down * out_w if u != i else 0)
                key = (entries, act_addr, s % 2, j - js[0], j in started, g.ktiles[i].length, min(L, N - j * L))
                if key not in matmuls:
                    matmuls[key] = isa.make(Opcode.MATMUL, rows=entries, act_addr=act_addr,
                                            wgt_addr=(s % 2) * R, acc_addr=(j - js[0]) * entries,
                                            accumulate=int(j in started), reduce_max=int(g.reduce_max),
                                            k_valid=g.ktiles[i].length, n_valid=min(L, N - j * L))
                out.append(matmuls[key])
                group_macs += entries * g.ktiles[i].length * min(L, N - j * L)
                started.add(j)
                if s + 1 < len(steps):
                    following = k_next.get(u)
                    if following is not None:
                        act_slot[following] = 1 - act_slot[u]
                        first_part = k_first[u] + k_steps[u] - parts[u]
                        if s >= first_part:
                            load_act(following, act_slot[following], out, s - first_part, parts[u])
                    load_wgt(steps[s + 1], (s + 1) % 2, out)
                out.append(_SYNC_OPERANDS if s + 1 < len(steps) else _SYNC)
            for n, j in enumerate(js):
                out.append(isa.make(Opcode.POST, rows=entries, acc_addr=(j - js[0]) * entries,
                                    out_addr=(n % 2) * slot, param_addr=j - js[0], shift=g.shift,
                                    zero_point=g.zero_point, clamp_lo=g.clamp[0], clamp_hi=g.clamp[1],
                                    table=int(g.table is not None)))
                if n:
                    store(j - 1, (n - 1) % 2, out)
                out.append(_SYNC)
            store(js[-1], (len(js) - 1) % 2, out)
            out.append(_SYNC)
            return group_macs

        group = max(1, min(nt, cfg.acc_depth // entries, cfg.param_depth))
        for g0 in range(0, nt, group):
            macs += emit_group(range(g0, min(nt, g0 + group)), prog)
    return macs
