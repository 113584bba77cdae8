"""emu.compiler.loops.fold: the folded stream expands to the input, instruction for instruction."""
import numpy as np

from emu.contract import isa
from emu.contract.isa import Buffer, Opcode
from emu.contract.loops import LOOP_LEVELS, depths, walk
from emu.compiler.loops import fold

from randprog import random_case
from rtlcheck import CFG_3X5

SYNC, END = isa.make(Opcode.SYNC), isa.make(Opcode.END)


def _expand(prog):
    steps = list(walk(prog + [END]))
    assert steps[-1].fault is None and steps[-1].instr.op == Opcode.END
    return [s.instr for s in steps[:-1] if s.instr.op != Opcode.LOOP]


def _layer_like(kt=6, nt=4):
    """A reduction's steps: K-tiles i, N-tiles j (i major), double-buffered weights, an ACT load per K-tile."""
    out = []
    for i in range(kt):
        out.append(isa.make(Opcode.LOAD, buf=Buffer.ACT, rows=9, row_len=3, buf_addr=(i % 2) * 16,
                            ext_addr=1000 + 3 * i, ext_stride=30))
        for j in range(nt):
            s = i * nt + j
            out += [isa.make(Opcode.MATMUL, rows=9, act_addr=(i % 2) * 16, wgt_addr=(s % 2) * 3, acc_addr=9 * j,
                             accumulate=int(i > 0), k_valid=3, n_valid=5),
                    isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=3, row_len=5, buf_addr=((s + 1) % 2) * 3,
                             ext_addr=5000 + 15 * (j * kt + i), ext_stride=5), SYNC]
    return out


def test_a_reduction_folds_into_two_levels_and_expands_back():
    flat = _layer_like()
    folded = fold(flat, max_words=64)
    assert [str(i) for i in _expand(folded)] == [str(i) for i in flat]
    assert len(folded) < len(flat) * 2 // 3 and 1 <= max(depths(folded)) <= LOOP_LEVELS


def test_max_words_bounds_every_loop():
    folded = fold(_layer_like(kt=8), max_words=12)
    assert all(i.body + 1 <= 12 for i in folded if i.op == Opcode.LOOP)
    assert [str(i) for i in _expand(folded)] == [str(i) for i in _layer_like(kt=8)]


def test_random_streams_expand_back():
    for seed in range(20):
        mem, pa, pl, _ = random_case(CFG_3X5, seed, rounds=6)
        flat = [isa.decode(w) for w in isa.decode_program(mem[pa:pa + 16 * (pl - 1)])]
        flat = flat * int(np.random.default_rng(seed).integers(1, 4))   # repeats with no stepping at all
        assert [str(i) for i in _expand(fold(flat, max_words=200))] == [str(i) for i in flat]
