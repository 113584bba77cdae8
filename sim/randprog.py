"""Random, race-free test programs: LOAD / MATMUL / POST / STORE rounds built with emu.isa.make.

Dependencies between the two units are separated by SYNC (the ISA leaves hazards to the program): loads
of a round, SYNC, MATMUL and POST (same unit, in order), SYNC, STORE. Addresses, strides, row lengths and
sizes are random, unaligned included; the whole memory is random so stray writes show up.
"""
from __future__ import annotations

import numpy as np

from emu import isa
from emu.config import AccelConfig, PARAM_BYTES
from emu.isa import Buffer, Opcode

__all__ = ["random_case", "PROG_REGION", "DATA_REGION", "OUT_REGION", "MEM_BYTES"]

MEM_BYTES = 1 << 16
PROG_REGION = (0, 4096)
DATA_REGION = (4096, 40960)
OUT_REGION = (40960, MEM_BYTES)


def _stride(rng, row_bytes: int) -> int:
    return row_bytes if rng.random() < 0.5 else row_bytes + int(rng.integers(1, 40))


def random_case(cfg: AccelConfig, seed: int, *, rounds: int = 3, max_t: int = 12):
    """(memory, prog_addr, prog_len, store regions [(addr, stride, rows, row_len)]) of one random program."""
    rng = np.random.default_rng(seed)
    mem = rng.integers(0, 256, MEM_BYTES, dtype=np.uint8)
    R, C = cfg.rows, cfg.cols
    prog = []
    stores = []

    def ext(rows, row_bytes, region):
        stride = _stride(rng, row_bytes)
        span = (rows - 1) * stride + row_bytes
        lo, hi = region
        return int(rng.integers(lo, hi - span)), stride

    for rnd in range(rounds):
        t = int(rng.integers(1, max_t + 1))
        t = min(t, cfg.act_depth, cfg.acc_depth, cfg.out_depth)
        wgt_addr = int(rng.integers(0, cfg.wgt_depth - R + 1))
        act_addr = int(rng.integers(0, cfg.act_depth - t + 1))
        acc_addr = int(rng.integers(0, cfg.acc_depth - t + 1))
        out_addr = int(rng.integers(0, cfg.out_depth - t + 1))
        param_addr = int(rng.integers(0, cfg.param_depth))
        w_len, a_len, p_len = int(rng.integers(1, C + 1)), int(rng.integers(1, R + 1)), int(rng.integers(1, C + 1))
        a, s = ext(R, w_len, DATA_REGION)
        prog.append(isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=R, row_len=w_len, buf_addr=wgt_addr, ext_addr=a, ext_stride=s))
        a, s = ext(t, a_len, DATA_REGION)
        prog.append(isa.make(Opcode.LOAD, buf=Buffer.ACT, rows=t, row_len=a_len, buf_addr=act_addr, ext_addr=a, ext_stride=s))
        # parameters: plausible bias and multiplier values written where the LOAD reads them
        a, s = ext(1, p_len * PARAM_BYTES, DATA_REGION)
        bias = rng.integers(-2000, 2000, p_len)
        mult = rng.integers(1 << 20, 1 << 30, p_len)
        rec = np.stack([bias, mult], axis=1).astype("<i4").view(np.uint8).reshape(-1)
        mem[a:a + rec.size] = rec
        prog.append(isa.make(Opcode.LOAD, buf=Buffer.PARAM, rows=1, row_len=p_len, buf_addr=param_addr, ext_addr=a, ext_stride=s))
        prog.append(isa.make(Opcode.SYNC))
        prog.append(isa.make(Opcode.MATMUL, rows=t, act_addr=act_addr, wgt_addr=wgt_addr, acc_addr=acc_addr,
                             accumulate=int(rng.integers(0, 2)), k_valid=int(rng.integers(1, R + 1)),
                             n_valid=int(rng.integers(1, C + 1))))
        if rng.random() < 0.5:  # a second MATMUL accumulating into the same rows
            prog.append(isa.make(Opcode.MATMUL, rows=t, act_addr=act_addr, wgt_addr=wgt_addr, acc_addr=acc_addr,
                                 accumulate=1, k_valid=R, n_valid=C))
        lo = int(rng.integers(cfg.act_min, 1))
        prog.append(isa.make(Opcode.POST, rows=t, acc_addr=acc_addr, out_addr=out_addr, param_addr=param_addr,
                             shift=int(rng.integers(24, 40)), zero_point=int(rng.integers(-10, 10)),
                             clamp_lo=lo, clamp_hi=int(rng.integers(lo, cfg.act_max + 1))))
        prog.append(isa.make(Opcode.SYNC))
        o_len = int(rng.integers(1, C + 1))
        a, s = ext(t, o_len, OUT_REGION)
        prog.append(isa.make(Opcode.STORE, buf=Buffer.OUT, rows=t, row_len=o_len, buf_addr=out_addr, ext_addr=a, ext_stride=s))
        stores.append((a, s, t, o_len))
    prog.append(isa.make(Opcode.END))
    blob = np.frombuffer(isa.encode_program(prog), np.uint8)
    prog_addr = 16 * int(rng.integers(0, (PROG_REGION[1] - blob.size) // 16))
    mem[prog_addr:prog_addr + blob.size] = blob
    return mem, prog_addr, len(prog), stores
