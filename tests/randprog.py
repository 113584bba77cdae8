"""Random, race-free test programs: LOAD / MATMUL / POST / STORE rounds built with emu.contract.isa.make.

Dependencies between units are separated by SYNC (the ISA leaves hazards to the program): loads
of a round (some with part of the activation table, which some POSTs look their results up in), SYNC,
MATMULs (one unit, in order; the second's weights sometimes loaded between the two behind SYNCs that do
not drain), SYNC, POST, SYNC, STORE. Addresses, strides, row lengths,
block counts, block strides and sizes are random, unaligned included; LOAD blocks may overlap (bytes read
twice), a STORE's blocks and rows never do. MATMULs accumulate by adding or by max (reduce_max). The whole
memory is random so stray writes show up.
"""
from __future__ import annotations

import numpy as np

from emu.contract import isa
from emu.contract.config import AccelConfig, PARAM_BYTES, PARAM_DTYPE
from emu.contract.isa import Buffer, Opcode
from emu.contract.numerics import SHIFT_MAX

__all__ = ["random_case", "random_loop_case", "PROG_REGION", "DATA_REGION", "OUT_REGION", "MEM_BYTES"]

MEM_BYTES = 1 << 16
PROG_REGION = (0, 4096)
DATA_REGION = (4096, 40960)
OUT_REGION = (40960, MEM_BYTES)


def _stride(rng, row_bytes: int) -> int:
    return row_bytes if rng.random() < 0.5 else row_bytes + int(rng.integers(1, 40))


def _block_stride(rng, block_bytes: int, *, overlap: bool) -> int:
    """Bytes between blocks of `block_bytes` (first byte of row 0 to one past the last row): with `overlap`
    (LOAD) also 0 and strides shorter than a block, which read bytes twice; otherwise blocks are disjoint.
    Some strides are long enough that blocks land in different 4 KiB pages."""
    kind = rng.integers(0, 4)
    if overlap and kind == 0:
        return int(rng.integers(0, block_bytes + 1))
    if kind == 1:
        return block_bytes
    if kind == 2:
        return block_bytes + int(rng.integers(1, 300))
    return block_bytes + int(rng.integers(1000, 4000))


def _split(rng, entries: int, max_blocks: int = 4) -> tuple[int, int]:
    """(rows, blocks) with rows * blocks == entries: a random divisor of `entries` as the block count."""
    divisors = [b for b in range(1, min(entries, max_blocks) + 1) if entries % b == 0]
    blocks = int(rng.choice(divisors))
    return entries // blocks, blocks


def random_case(cfg: AccelConfig, seed: int, *, rounds: int = 3, max_t: int = 12):
    """(memory, prog_addr, prog_len, STOREs) of one random program; the STOREs (emu.contract.isa.Instr) say which
    bytes the program may write (emu.contract.timing.dma_spans)."""
    rng = np.random.default_rng(seed)
    mem = rng.integers(0, 256, MEM_BYTES, dtype=np.uint8)
    R, C = cfg.rows, cfg.cols
    prog = []
    stores = []

    def dma(op, buf, rows, blocks, row_len, buf_addr, region, *, row_bytes=None, overlap=True):
        """A LOAD/STORE of `blocks` blocks of `rows` rows placed at a random address inside `region`."""
        row_bytes = row_len if row_bytes is None else row_bytes
        stride = _stride(rng, row_bytes)
        block_bytes = (rows - 1) * stride + row_bytes
        block_stride = _block_stride(rng, block_bytes, overlap=overlap) if blocks > 1 else 0
        extent = (blocks - 1) * block_stride + block_bytes
        lo, hi = region
        return isa.make(op, buf=buf, rows=rows, row_len=row_len, buf_addr=buf_addr,
                        ext_addr=int(rng.integers(lo, hi - extent)), ext_stride=stride, blocks=blocks,
                        block_stride=block_stride)

    for rnd in range(rounds):
        t_max = min(max_t, cfg.act_depth, cfg.acc_depth, cfg.out_depth)
        a_blocks = int(rng.integers(1, min(4, t_max) + 1))
        t = a_blocks * int(rng.integers(1, t_max // a_blocks + 1))
        wgt_addr = int(rng.integers(0, cfg.wgt_depth - R + 1))
        act_addr = int(rng.integers(0, cfg.act_depth - t + 1))
        acc_addr = int(rng.integers(0, cfg.acc_depth - t + 1))
        out_addr = int(rng.integers(0, cfg.out_depth - t + 1))
        p_blocks = int(rng.integers(1, min(2, cfg.param_depth) + 1))
        param_base = int(rng.integers(0, cfg.param_depth - p_blocks + 1))
        param_addr = param_base + int(rng.integers(0, p_blocks))
        w_len, a_len, p_len = int(rng.integers(1, C + 1)), int(rng.integers(1, R + 1)), int(rng.integers(1, C + 1))
        w_rows, w_blocks = _split(rng, R)
        prog.append(dma(Opcode.LOAD, Buffer.WGT, w_rows, w_blocks, w_len, wgt_addr, DATA_REGION))
        prog.append(dma(Opcode.LOAD, Buffer.ACT, t // a_blocks, a_blocks, a_len, act_addr, DATA_REGION))
        # parameters: one entry per block, plausible bias and multiplier values written where the LOAD
        # reads them (blocks disjoint, so no record overwrites another)
        load = dma(Opcode.LOAD, Buffer.PARAM, 1, p_blocks, p_len, param_base, DATA_REGION,
                   row_bytes=p_len * PARAM_BYTES, overlap=False)
        # the largest |ACC| two MATMULs can reach, scaled by a typical multiplier: the shift brings that to
        # about the output range and the bias moves it by up to half of it, so every output depends on its
        # products (a larger bias would saturate narrow outputs whatever the weights)
        scaled = 2 * R * -cfg.act_min * -cfg.weight_min * (1 << 29)
        shift = max(1, min(SHIFT_MAX, scaled.bit_length() - cfg.act_bits + int(rng.integers(-2, 3))))
        for b in range(p_blocks):
            rec = np.zeros(p_len, PARAM_DTYPE)
            rec["bias"] = rng.integers(-(1 << (shift + cfg.act_bits - 1)), 1 << (shift + cfg.act_bits - 1), p_len)
            rec["mult"] = rng.integers(1 << 20, 1 << 30, p_len)
            rec = np.frombuffer(rec.tobytes(), np.uint8)
            a = load.ext_addr + b * load.block_stride
            mem[a:a + rec.size] = rec
        prog.append(load)
        if rng.random() < 0.7:      # some entries of the activation table, the rest kept from before
            entries = int(rng.integers(1, cfg.table_depth + 1))
            t_rows, t_blocks = _split(rng, entries)
            prog.append(dma(Opcode.LOAD, Buffer.TABLE, t_rows, t_blocks, int(rng.integers(1, C + 1)),
                            int(rng.integers(0, cfg.table_depth - entries + 1)), DATA_REGION))
        prog.append(isa.make(Opcode.SYNC))
        prog.append(isa.make(Opcode.MATMUL, rows=t, act_addr=act_addr, wgt_addr=wgt_addr, acc_addr=acc_addr,
                             accumulate=int(rng.integers(0, 2)), k_valid=int(rng.integers(1, R + 1)),
                             n_valid=int(rng.integers(1, C + 1)), reduce_max=int(rng.integers(0, 2))))
        if rng.random() < 0.6:  # a second MATMUL accumulating into the same rows: add or max (pooling)
            if rng.random() < 0.5:
                # ... with weights loaded over the first one's once it has read them, while it still writes
                # ACC (a SYNC that does not drain)
                prog.append(isa.make(Opcode.SYNC, drain=0))
                prog.append(dma(Opcode.LOAD, Buffer.WGT, w_rows, w_blocks, w_len, wgt_addr, DATA_REGION))
                prog.append(isa.make(Opcode.SYNC, drain=0))
            prog.append(isa.make(Opcode.MATMUL, rows=t, act_addr=act_addr, wgt_addr=wgt_addr, acc_addr=acc_addr,
                                 accumulate=1, k_valid=R, n_valid=C, reduce_max=int(rng.integers(0, 2))))
        lo = int(rng.integers(cfg.act_min, 1))
        prog.append(isa.make(Opcode.SYNC))   # POST runs on its own unit: it must not overtake the MATMULs
        prog.append(isa.make(Opcode.POST, rows=t, acc_addr=acc_addr, out_addr=out_addr, param_addr=param_addr,
                             shift=shift, zero_point=int(rng.integers(-10, 10)),
                             clamp_lo=lo, clamp_hi=int(rng.integers(lo, cfg.act_max + 1)),
                             table=int(rng.integers(0, 2))))
        prog.append(isa.make(Opcode.SYNC))
        o_rows, o_blocks = _split(rng, t)
        store = dma(Opcode.STORE, Buffer.OUT, o_rows, o_blocks, int(rng.integers(1, C + 1)), out_addr, OUT_REGION,
                    overlap=False)
        prog.append(store)
        stores.append(store)
    prog.append(isa.make(Opcode.END))
    blob = np.frombuffer(isa.encode_program(prog), np.uint8)
    prog_addr = 16 * int(rng.integers(0, (PROG_REGION[1] - blob.size) // 16))
    mem[prog_addr:prog_addr + blob.size] = blob
    return mem, prog_addr, len(prog), stores


def split_case(mem: np.ndarray, prog_addr: int, prog_len: int, seed: int, *, cuts: int = 2
               ) -> list[tuple[int, int]]:
    """The program at `prog_addr` in `mem` rewritten as runs at the start of the program region: an END after
    `cuts` randomly chosen SYNCs (where emu.compiler.codegen.split_segments may cut). Returns the runs
    [(prog_addr, prog_len)]."""
    rng = np.random.default_rng(seed)
    instrs = [isa.decode(w) for w in isa.decode_program(mem[prog_addr:prog_addr + 16 * prog_len])]
    syncs = [pc for pc, i in enumerate(instrs) if i.op == Opcode.SYNC]
    chosen = set(int(pc) for pc in rng.choice(syncs, size=min(cuts, len(syncs)), replace=False))
    base = PROG_REGION[0]
    out, runs, first = [], [], 0
    for pc, instr in enumerate(instrs):
        out.append(instr)
        if pc in chosen:
            out.append(isa.make(Opcode.END))
            runs.append((base + 16 * first, len(out) - first))
            first = len(out)
    runs.append((base + 16 * first, len(out) - first))
    blob = np.frombuffer(isa.encode_program(out), np.uint8)
    if base + blob.size > PROG_REGION[1]:
        raise ValueError("the split program does not fit the program region")
    mem[base:base + blob.size] = blob
    return runs


def random_loop_case(cfg: AccelConfig, seed: int):
    """(memory, prog_addr, prog_len) of a random program of two-level hardware loops that steps every
    LOOP increment, by random amounts of either sign: per outer iteration a LOAD of weights, activations
    and parameters; per inner iteration a MATMUL, a POST and a STORE of one slice of the results."""
    rng = np.random.default_rng(seed)
    mem = rng.integers(0, 256, MEM_BYTES, dtype=np.uint8)
    R, C = cfg.rows, cfg.cols
    n1, n2 = int(rng.integers(2, 4)), int(rng.integers(2, 4))
    t = int(rng.integers(1, min(8, cfg.act_depth // 2, cfg.acc_depth // (2 * n2)) + 1))

    def ext(region, extent, steps):
        """A base address in `region` and an increment per step (either sign) that keep `steps` + 1
        transfers of `extent` bytes inside it."""
        lo, hi = region
        inc = int(rng.integers(1, (hi - lo - extent) // max(1, steps) // 2)) * int(rng.choice([-1, 1]))
        base = int(rng.integers(lo, hi - extent - abs(inc) * steps))
        return (base - inc * steps if inc < 0 else base), inc

    def load(buf, row_len, rows, row_bytes, inc_steps):
        base, inc = ext(DATA_REGION, rows * row_bytes, inc_steps)
        return isa.make(Opcode.LOAD, buf=buf, rows=rows, row_len=row_len, buf_addr=0, ext_addr=base,
                        ext_stride=row_bytes), inc

    l_wgt, w_inc = load(Buffer.WGT, C, R, C, n1 - 1)
    l_act, a_inc = load(Buffer.ACT, R, t, R, n1 - 1)
    p_inc = int(rng.choice([0, 1]))                       # param_addr step per inner iteration
    p_rows = 1 + p_inc * (n2 - 1)
    l_par, pe_inc = load(Buffer.PARAM, C, p_rows, C * PARAM_BYTES, n1 - 1)
    for k in range(n1):                                   # plausible (bias, multiplier) where each LOAD reads
        rec = np.zeros(C * p_rows, PARAM_DTYPE)
        rec["bias"] = rng.integers(-1 << 40, 1 << 40, rec.size)
        rec["mult"] = rng.integers(1 << 20, 1 << 30, rec.size)
        a = l_par.ext_addr + k * pe_inc
        mem[a:a + rec.nbytes] = np.frombuffer(rec.tobytes(), np.uint8)
    acc_step = int(rng.integers(0, 3))                    # acc_addr per outer iteration (on top of inner)
    matmul = isa.make(Opcode.MATMUL, rows=t, act_addr=0, wgt_addr=0, acc_addr=0, accumulate=int(rng.integers(0, 2)),
                      k_valid=int(rng.integers(1, R + 1)), n_valid=int(rng.integers(1, C + 1)), reduce_max=0)
    lo = int(rng.integers(cfg.act_min, 1))
    post = isa.make(Opcode.POST, rows=t, acc_addr=0, out_addr=0, param_addr=0, shift=int(rng.integers(24, 40)),
                    zero_point=int(rng.integers(-10, 10)), clamp_lo=lo, clamp_hi=int(rng.integers(lo, cfg.act_max + 1)))
    o_ext, o_inc = ext(OUT_REGION, t * C, n1 * n2)
    store = isa.make(Opcode.STORE, buf=Buffer.OUT, rows=t, row_len=int(rng.integers(1, C + 1)), buf_addr=0,
                     ext_addr=o_ext, ext_stride=C)
    sync = isa.make(Opcode.SYNC)
    inner = [matmul, sync, post, sync, store, sync]
    outer = [l_wgt, l_act, l_par, sync,
             isa.make(Opcode.LOOP, count=n2, body=len(inner), acc_inc=t, out_ext_inc=o_inc, param_inc=p_inc),
             *inner]
    prog = [isa.make(Opcode.LOOP, count=n1, body=len(outer), act_ext_inc=a_inc, wgt_ext_inc=w_inc,
                     param_ext_inc=pe_inc, out_ext_inc=o_inc * n2, acc_inc=acc_step), *outer, isa.make(Opcode.END)]
    blob = np.frombuffer(isa.encode_program(prog), np.uint8)
    prog_addr = 16 * int(rng.integers(0, (PROG_REGION[1] - blob.size) // 16))
    mem[prog_addr:prog_addr + blob.size] = blob
    return mem, prog_addr, len(prog)
