"""Faults on the RTL: the same (code, pc) as the golden emulator."""
import numpy as np
import pytest

from emu.contract import isa
from emu.contract.config import AccelConfig
from emu.contract.faults import FaultCode, HardwareFault
from emu.contract.isa import Buffer, Opcode

from rtlcheck import CFG_3X5, assert_same_as_golden, golden

pytestmark = pytest.mark.rtl

MEM = 1 << 14


def _image(instrs, words=None):
    mem = np.random.default_rng(7).integers(0, 256, MEM, dtype=np.uint8)
    blob = bytearray(isa.encode_program(instrs))
    for pc, word in (words or {}).items():
        blob[16 * pc:16 * pc + 16] = word.to_bytes(16, "little")
    mem[:len(blob)] = np.frombuffer(bytes(blob), np.uint8)
    return mem, len(blob) // 16


LOAD = isa.make(Opcode.LOAD, buf=Buffer.ACT, rows=4, row_len=3, buf_addr=0, ext_addr=5000, ext_stride=3)
MATMUL = isa.make(Opcode.MATMUL, rows=4, act_addr=0, wgt_addr=0, acc_addr=0, accumulate=0, k_valid=3, n_valid=5)
SYNC, END = isa.make(Opcode.SYNC), isa.make(Opcode.END)



def _loop(count, body, **incs):
    return isa.make(Opcode.LOOP, count=count, body=body, **incs)


CASES = {
    "illegal_opcode": ([LOAD, SYNC, END, END], {2: 0xF}, FaultCode.ILLEGAL_OPCODE),
    "illegal_field": ([LOAD, isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=0, row_len=1, buf_addr=0, ext_addr=0,
                                      ext_stride=1), END], {}, FaultCode.ILLEGAL_FIELD),
    "zero_blocks": ([LOAD, SYNC, isa.make(Opcode.STORE, buf=Buffer.OUT, rows=2, row_len=1, buf_addr=0, ext_addr=0,
                                          ext_stride=1, blocks=0, block_stride=4), END], {}, FaultCode.ILLEGAL_FIELD),
    # 13 blocks of 5 rows: 65 ACT entries, one more than act_depth although rows and blocks each fit
    "blocks_buffer_range": ([LOAD, isa.make(Opcode.LOAD, buf=Buffer.ACT, rows=5, row_len=3, buf_addr=0,
                                            ext_addr=5000, ext_stride=3, blocks=13, block_stride=20), END], {},
                            FaultCode.BUFFER_RANGE),
    "load_into_buffer_5": ([LOAD, isa.make(Opcode.LOAD, buf=5, rows=1, row_len=1, buf_addr=0, ext_addr=0,
                                           ext_stride=1), END], {}, FaultCode.ILLEGAL_FIELD),
    # CFG_3X5 has act_bits 8: a table of 256 entries of 5 lanes
    "table_row_len": ([LOAD, isa.make(Opcode.LOAD, buf=Buffer.TABLE, rows=1, row_len=6, buf_addr=0, ext_addr=0,
                                      ext_stride=6), END], {}, FaultCode.ILLEGAL_FIELD),
    "table_buffer_range": ([LOAD, isa.make(Opcode.LOAD, buf=Buffer.TABLE, rows=2, row_len=5, buf_addr=255,
                                           ext_addr=0, ext_stride=5), END], {}, FaultCode.BUFFER_RANGE),
    "store_from_act": ([isa.make(Opcode.STORE, buf=Buffer.ACT, rows=1, row_len=1, buf_addr=0, ext_addr=0,
                                 ext_stride=1), END], {}, FaultCode.ILLEGAL_FIELD),
    "buffer_range": ([LOAD, MATMUL, isa.make(Opcode.POST, rows=2, acc_addr=63, out_addr=0, param_addr=0, shift=0,
                                             zero_point=0, clamp_lo=-128, clamp_hi=127), END], {},
                     FaultCode.BUFFER_RANGE),
    "bus_error_load": ([LOAD, isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=3, row_len=5, buf_addr=0,
                                       ext_addr=MEM - 8, ext_stride=5), MATMUL, END], {}, FaultCode.BUS_ERROR),
    "bus_error_store": ([isa.make(Opcode.STORE, buf=Buffer.OUT, rows=2, row_len=5, buf_addr=0,
                                  ext_addr=MEM + 4096, ext_stride=5), SYNC, END], {}, FaultCode.BUS_ERROR),
    "missing_end": ([LOAD, MATMUL, SYNC], {}, FaultCode.PROGRAM_RANGE),
    # hardware loops (emu/contract/loops.py): each fault at the LOOP's pc, or at the stepped instruction's
    "loop_count_zero": ([LOAD, _loop(0, 5), MATMUL, *[SYNC] * 4, END], {}, FaultCode.ILLEGAL_FIELD),
    "loop_short_body": ([LOAD, _loop(2, 4), MATMUL, SYNC, SYNC, SYNC, END], {}, FaultCode.ILLEGAL_FIELD),
    "loop_three_deep": ([_loop(2, 11), _loop(2, 10), _loop(2, 5), *[SYNC] * 9, END], {}, FaultCode.ILLEGAL_FIELD),
    "loop_past_enclosing": ([_loop(2, 6), SYNC, _loop(2, 6), *[SYNC] * 6, END], {}, FaultCode.ILLEGAL_FIELD),
    "loop_past_program": ([LOAD, _loop(2, 8), SYNC, SYNC, SYNC, SYNC], {}, FaultCode.PROGRAM_RANGE),
    # the 16th iteration's MATMUL reaches ACC entry 64 of 64: BUFFER_RANGE at its pc
    "loop_steps_past_buffer": ([LOAD, _loop(20, 5, acc_inc=4), MATMUL, *[SYNC] * 4, END], {},
                               FaultCode.BUFFER_RANGE),
    "loop_steps_past_memory": ([_loop(20, 5, act_ext_inc=1000), LOAD, *[SYNC] * 4, END], {},
                               FaultCode.BUS_ERROR),
    "loop_steps_below_zero": ([_loop(20, 5, act_ext_inc=-300), LOAD, *[SYNC] * 4, END], {},
                              FaultCode.BUS_ERROR),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fault_matches_golden(name):
    instrs, words, code = CASES[name]
    mem, n = _image(instrs, words)
    _, _, fault = golden(CFG_3X5, mem, 0, n)
    assert fault is not None and fault.code == code
    assert_same_as_golden(CFG_3X5, mem, 0, n)


def test_watchdog():
    mem, n = _image([LOAD, MATMUL, SYNC, MATMUL, END])
    assert_same_as_golden(CFG_3X5, mem, 0, n, watchdog=40)


def test_program_length_zero_and_too_long():
    mem, n = _image([END])
    assert_same_as_golden(CFG_3X5, mem, 0, 0)
    assert_same_as_golden(CFG_3X5, mem, 0, CFG_3X5.instr_depth + 1)


def test_program_past_memory_end():
    mem, n = _image([END])
    assert_same_as_golden(CFG_3X5, mem, MEM - 32, 4)


def test_config_mismatch():
    from sim.hil import run_rtl
    mem, n = _image([LOAD, END])
    other = AccelConfig(**{**CFG_3X5.to_dict(), "act_depth": 128})
    with pytest.raises(HardwareFault) as info:
        run_rtl(other, mem, 0, n, hardware=CFG_3X5)
    assert (info.value.code, info.value.pc) == (FaultCode.CONFIG_MISMATCH, 0)


POST = isa.make(Opcode.POST, rows=4, acc_addr=0, out_addr=0, param_addr=0, shift=0, zero_point=3, clamp_lo=-128,
                clamp_hi=127)
STORE = isa.make(Opcode.STORE, buf=Buffer.OUT, rows=4, row_len=5, buf_addr=0, ext_addr=9000, ext_stride=5)
LOAD_WGT = isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=3, row_len=5, buf_addr=0, ext_addr=6000, ext_stride=5)
RESTARTS = {
    # an illegal word after END: fetched and decoded before END issues, still in the pipeline when it does
    "after_end": ([LOAD, LOAD_WGT, SYNC, MATMUL, SYNC, POST, SYNC, STORE, END, END], {9: 0xF}),
    # the words behind a faulty one are fetched while the fault waits at the head
    "after_fault": CASES["illegal_opcode"][:2],
    # the DMA's error flag stays set until its next start
    "after_bus_error": CASES["bus_error_load"][:2],
}


@pytest.mark.parametrize("name", sorted(RESTARTS))
def test_second_start_without_reset_runs_the_same(name):
    """CTRL written again after done: nothing fetched by the first run reaches the second."""
    mem, n = _image(*RESTARTS[name])
    assert_same_as_golden(CFG_3X5, mem, 0, n, runs=2)


def test_fault_in_a_later_run_has_the_programs_pc():
    """A program of three runs whose second run holds an illegal word: golden and RTL stop there and report
    the pc counted from the program's first instruction (run 1's 3 instructions + 1)."""
    mem, n = _image([LOAD, SYNC, END, LOAD, SYNC, END, LOAD, END], {4: 0xF})
    runs = [(0, 3), (48, 3), (96, 2)]
    _, _, fault = golden(CFG_3X5, mem, *runs[0], then=runs[1:])
    assert (fault.code, fault.pc) == (FaultCode.ILLEGAL_OPCODE, 4)
    assert_same_as_golden(CFG_3X5, mem, *runs[0], then=runs[1:])


def test_runs_of_one_program_sum_their_cycles():
    mem, n = _image([LOAD, SYNC, MATMUL, END, LOAD, SYNC, END])
    _, res, _ = golden(CFG_3X5, mem, 0, 4, then=[(64, 3)])
    _, first, _ = golden(CFG_3X5, mem, 0, 4)
    _, second, _ = golden(CFG_3X5, mem, 64, 3)
    assert (res.cycles, res.instructions) == (first.cycles + second.cycles, 7)
    assert_same_as_golden(CFG_3X5, mem, 0, 4, then=[(64, 3)])
