"""Whole-accelerator random programs on the RTL: memory, cycles and MACs equal to the golden emulator."""
import numpy as np
import pytest

from emu.contract import isa
from emu.contract.config import PARAM_BYTES, PARAM_DTYPE
from emu.contract.isa import Buffer, Opcode

from randprog import random_case, random_loop_case, split_case

from rtlcheck import CFG_2X7, CFG_3X5, CFG_W1A1, CFG_W4A4, CFG_W6A3, assert_same_as_golden

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("seed", range(4))
def test_random_3x5(seed):
    mem, pa, pl, _ = random_case(CFG_3X5, seed)
    assert_same_as_golden(CFG_3X5, mem, pa, pl)


@pytest.mark.parametrize("seed", range(4))
def test_random_w4a4(seed):
    mem, pa, pl, _ = random_case(CFG_W4A4, 100 + seed)
    assert_same_as_golden(CFG_W4A4, mem, pa, pl)


@pytest.mark.parametrize("cfg,seed", [(CFG_2X7, 0), (CFG_2X7, 2),
                                      pytest.param(CFG_W1A1, 1, marks=pytest.mark.slow)])   # its own build
def test_random_binary(cfg, seed):
    """Random bytes into 1-bit buffers: a weight keeps its byte's sign bit (-1 or +1), a 1-bit activation
    its low bit, on the RTL as in golden."""
    mem, pa, pl, _ = random_case(cfg, 400 + seed)
    assert_same_as_golden(cfg, mem, pa, pl)


@pytest.mark.parametrize("cfg,seed", [(CFG_2X7, 0), (CFG_2X7, 1),
                                      pytest.param(CFG_W6A3, 0, marks=pytest.mark.slow)])   # its own build
def test_random_odd_widths(cfg, seed):
    """A 128-bit bus; 6-bit weights (`make test-all`)."""
    mem, pa, pl, _ = random_case(cfg, 200 + seed)
    assert_same_as_golden(cfg, mem, pa, pl)


@pytest.mark.parametrize("seed", range(2))
def test_random_program_in_runs_3x5(seed):
    """The program cut into three runs after random SYNCs: the RTL carries the buffers over as golden does."""
    mem, pa, pl, _ = random_case(CFG_3X5, 300 + seed)
    (first, *then) = split_case(mem, pa, pl, seed)
    assert_same_as_golden(CFG_3X5, mem, *first, then=then)


@pytest.mark.parametrize("cfg,seed", [(CFG_3X5, 0), (CFG_3X5, 1), (CFG_W4A4, 2), (CFG_2X7, 3)])
def test_random_loops(cfg, seed):
    """Two-level hardware loops stepping every increment, of either sign: the RTL's fetch walks them as
    golden does, cycle for cycle."""
    mem, pa, pl = random_loop_case(cfg, 500 + seed)
    assert_same_as_golden(cfg, mem, pa, pl)


def test_a_stepped_field_wraps_at_its_width():
    """A POST's param_addr stepped from 1 to 0 by a LOOP increment of -1: the 16-bit field wraps, and the
    shift above it stays as written (a carry out of the field would change every output of the second
    iteration)."""
    def load(buf, rows, row_len, ext_addr):
        return isa.make(Opcode.LOAD, buf=buf, rows=rows, row_len=row_len, buf_addr=0, ext_addr=ext_addr,
                        ext_stride=row_len * (1 if buf != Buffer.PARAM else PARAM_BYTES))
    rows, cols = CFG_3X5.rows, CFG_3X5.cols
    body = [isa.make(Opcode.POST, rows=2, acc_addr=0, out_addr=0, param_addr=1, shift=12, zero_point=0,
                     clamp_lo=-128, clamp_hi=127),
            isa.make(Opcode.SYNC),
            isa.make(Opcode.STORE, buf=Buffer.OUT, rows=2, row_len=cols, buf_addr=0, ext_addr=9000,
                     ext_stride=cols),
            isa.make(Opcode.SYNC), isa.make(Opcode.SYNC)]
    prog = [load(Buffer.ACT, 2, rows, 5000), load(Buffer.WGT, rows, cols, 6000), load(Buffer.PARAM, 2, cols, 7000),
            isa.make(Opcode.SYNC),
            isa.make(Opcode.MATMUL, rows=2, act_addr=0, wgt_addr=0, acc_addr=0, accumulate=0, k_valid=rows,
                     n_valid=cols),
            isa.make(Opcode.SYNC),
            isa.make(Opcode.LOOP, count=2, body=len(body), param_inc=-1, out_ext_inc=64), *body,
            isa.make(Opcode.END)]
    mem = np.random.default_rng(3).integers(0, 256, 1 << 14, dtype=np.uint8)
    blob = np.frombuffer(isa.encode_program(prog), np.uint8)
    mem[:blob.size] = blob
    params = np.zeros(2 * cols, PARAM_DTYPE)     # outputs in range, so a shift of 13 would show
    params["bias"], params["mult"] = np.arange(2 * cols) * 100, np.arange(2 * cols) % 4 + 1
    mem[7000:7000 + params.nbytes] = params.view(np.uint8)
    assert_same_as_golden(CFG_3X5, mem, 0, len(prog))
