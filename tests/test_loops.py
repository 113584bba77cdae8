"""emu.contract.loops: the order instructions run in, their offsets, and loops against their expansion."""
import numpy as np

from emu.contract import isa
from emu.contract.isa import Buffer, Opcode
from emu.contract.loops import offset, walk
from emu.contract.timing import preload_cycles
from emu.emulator.golden import Golden

from randprog import random_loop_case
from rtlcheck import CFG_3X5, CFG_W4A4

SYNC, END = isa.make(Opcode.SYNC), isa.make(Opcode.END)


def _mm(acc_addr):
    return isa.make(Opcode.MATMUL, rows=1, act_addr=0, wgt_addr=0, acc_addr=acc_addr, accumulate=0, k_valid=1,
                    n_valid=1)


def test_two_levels_add_their_offsets_and_the_inner_loop_restarts():
    inner = isa.make(Opcode.LOOP, count=3, body=5, acc_inc=1)
    prog = [isa.make(Opcode.LOOP, count=2, body=7, acc_inc=10), SYNC, inner, _mm(5), *[SYNC] * 4, END]
    steps = list(walk(prog))
    assert [s.pc for s in steps] == [0, 1, 2, *[3, 4, 5, 6, 7] * 3, 1, 2, *[3, 4, 5, 6, 7] * 3, 8]
    assert [s.instr.acc_addr for s in steps if s.instr.op == Opcode.MATMUL] == [5, 6, 7, 15, 16, 17]
    assert all(s.fault is None for s in steps)


def test_offsets_wrap_at_the_field_width_and_pick_the_increment_by_buffer():
    load = isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=1, row_len=1, buf_addr=0, ext_addr=5, ext_stride=1)
    assert offset(load, {"wgt_ext_inc": -6, "act_ext_inc": 100}).ext_addr == (1 << 32) - 1
    assert offset(_mm(65535), {"acc_inc": 2, "wgt_ext_inc": 7}).acc_addr == 1


def _expanded(mem, pa, pl):
    """The program at `pa` written out: every instruction as it runs, loops gone."""
    instrs = [isa.decode(w) for w in isa.decode_program(mem[pa:pa + 16 * pl])]
    flat = [s.instr for s in walk(instrs) if s.instr.op != Opcode.LOOP]
    return flat, sum(s.instr.op == Opcode.LOOP for s in walk(instrs))


def test_a_loop_program_does_what_its_expansion_does_with_at_most_a_cycle_more_per_loop():
    for cfg, seed in ((CFG_3X5, 1), (CFG_W4A4, 2)):
        mem, pa, pl = random_loop_case(cfg, seed)
        flat, loops = _expanded(mem, pa, pl)
        other = mem.copy()
        blob = np.frombuffer(isa.encode_program(flat), np.uint8)
        other[:blob.size] = blob          # the program region holds the flat program too (it is larger)
        looped, written = Golden(cfg, mem.copy()), Golden(cfg, other)
        r1 = looped.run(pa, pl)
        r2 = written.run(0, len(flat))
        region = slice(4096, None)        # data and results; the program regions differ
        assert np.array_equal(looped.mem[region], written.mem[region])
        # the preload copies fewer words; after it, each LOOP reached takes at most one issue cycle
        c1, c2 = r1.cycles - preload_cycles(pa, pl, cfg), r2.cycles - preload_cycles(0, len(flat), cfg)
        assert r1.macs == r2.macs and c2 <= c1 <= c2 + loops
