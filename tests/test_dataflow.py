"""The golden emulator's fast path (emu/emulator/dataflow.py) against instruction-by-instruction execution:
every byte of memory, the cycle count, the useful-MAC count and every fault (code, pc, detail) equal, on
random programs, on programs cut short by faults, on the runs the plan refuses, and on the zoo networks."""
import numpy as np
import pytest

from emu.compiler.codegen import compile_graph
from emu.contract import isa
from emu.contract.config import AccelConfig, PARAM_BYTES
from emu.contract.faults import FaultCode, HardwareFault
from emu.contract.isa import Buffer, Opcode
from emu.emulator.dataflow import Unsupported, plan, program_blobs, run_dataflow
from emu.emulator.golden import Golden
from emu.frontend import load_pt2, lower
from emu.runtime.run import get_backend, quantize_input, run_program, user_shape
from randprog import MEM_BYTES, random_case, random_loop_case, split_case

CONFIGS = (AccelConfig(), AccelConfig(rows=3, cols=5, act_bits=4, weight_bits=3, acc_bits=20),
           AccelConfig(rows=4, cols=4, act_bits=2, weight_bits=2, acc_bits=16),
           AccelConfig(rows=4, cols=3, act_bits=1, weight_bits=1, acc_bits=16))   # binary weights


def outcome(run):
    """(result, None) or (None, (code, pc, detail)) of a run that may fault."""
    try:
        return run(), None
    except HardwareFault as f:
        return None, (f.code, f.pc, f.detail)


def check_same_as_steps(cfg, mem, segments, watchdog=0, *, planned=True):
    """The fast path and step-by-step execution leave the same memory and end the same way; `planned`: the
    fast path really ran the plan (it did not fall back to stepping)."""
    fast, steps = mem.copy(), mem.copy()
    want = outcome(lambda: Golden(cfg, steps).run_segments(segments, watchdog=watchdog))
    got = outcome(lambda: run_dataflow(cfg, fast, segments, watchdog=watchdog))
    assert got == want
    np.testing.assert_array_equal(fast, steps)
    if planned:      # plan raises Unsupported where the fast path fell back
        plan(program_blobs(mem, segments, cfg), tuple(segments), cfg, mem.size, watchdog)
    return want


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
@pytest.mark.parametrize("seed", range(25))
def test_random_programs(cfg, seed):
    mem, pa, pl, _ = random_case(cfg, seed)
    assert check_same_as_steps(cfg, mem, [(pa, pl)])[1] is None


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
@pytest.mark.parametrize("seed", range(10))
def test_random_loop_programs(cfg, seed):
    mem, pa, pl = random_loop_case(cfg, seed)
    check_same_as_steps(cfg, mem, [(pa, pl)])


@pytest.mark.parametrize("seed", range(10))
def test_programs_of_several_segments(seed):
    cfg = CONFIGS[0]
    mem, pa, pl, _ = random_case(cfg, seed, rounds=5)
    check_same_as_steps(cfg, mem, split_case(mem, pa, pl, seed, cuts=3))


def _with_word(mem, pa, pl, pc, word):
    mem = mem.copy()
    mem[pa + isa.INSTR_BYTES * pc:pa + isa.INSTR_BYTES * (pc + 1)] = np.frombuffer(
        word.to_bytes(isa.INSTR_BYTES, "little"), np.uint8)
    return mem


@pytest.mark.parametrize("seed", range(8))
def test_faults_midway_leave_the_same_memory(seed):
    """An illegal word, an out-of-range LOAD, a bus error and the watchdog, each after some STOREs ran."""
    cfg = CONFIGS[0]
    mem, pa, pl, _ = random_case(cfg, seed, rounds=4)
    cycles = Golden(cfg, mem.copy()).run(pa, pl).cycles
    pc = pl - 3 - seed % 5
    bad_load = isa.make(Opcode.LOAD, buf=Buffer.ACT, rows=4, row_len=1, buf_addr=cfg.act_depth - 2, ext_addr=0,
                        ext_stride=1)
    past_end = isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=1, row_len=1, buf_addr=0, ext_addr=MEM_BYTES, ext_stride=1)
    for case, watchdog, code in [(_with_word(mem, pa, pl, pc, 0xF), 0, FaultCode.ILLEGAL_OPCODE),
                                 (_with_word(mem, pa, pl, pc, isa.encode(bad_load)), 0, FaultCode.BUFFER_RANGE),
                                 (_with_word(mem, pa, pl, pc, isa.encode(past_end)), 0, FaultCode.BUS_ERROR),
                                 (mem, cycles // 2, FaultCode.WATCHDOG)]:
        assert check_same_as_steps(cfg, case, [(pa, pl)], watchdog)[1][0] == code


def test_program_checks_fault_before_a_later_segment():
    cfg = CONFIGS[0]
    mem, pa, pl, _ = random_case(cfg, 3)
    assert check_same_as_steps(cfg, mem, [(pa, pl), (pa, cfg.instr_depth + 1)])[1][0] == FaultCode.PROGRAM_RANGE


def _store_over(target: int, rows: int):
    """LOAD/MATMUL/POST/STORE writing `rows` x 8 bytes at `target`."""
    return [isa.make(Opcode.LOAD, buf=Buffer.ACT, rows=rows, row_len=8, buf_addr=0, ext_addr=0x100, ext_stride=8),
            isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=8, row_len=8, buf_addr=0, ext_addr=0x300, ext_stride=8),
            isa.make(Opcode.LOAD, buf=Buffer.PARAM, rows=1, row_len=8, buf_addr=0, ext_addr=0x400,
                     ext_stride=8 * PARAM_BYTES),
            isa.make(Opcode.SYNC),
            isa.make(Opcode.MATMUL, rows=rows, act_addr=0, wgt_addr=0, acc_addr=0, accumulate=0, k_valid=8, n_valid=8),
            isa.make(Opcode.SYNC),
            isa.make(Opcode.POST, rows=rows, acc_addr=0, out_addr=0, param_addr=0, shift=20, zero_point=0,
                     clamp_lo=-128, clamp_hi=127),
            isa.make(Opcode.SYNC),
            isa.make(Opcode.STORE, buf=Buffer.OUT, rows=rows, row_len=8, buf_addr=0, ext_addr=target, ext_stride=8),
            isa.make(Opcode.SYNC)]


def _memory(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mem = rng.integers(0, 256, 0x4000, dtype=np.uint8)
    mem[0x400:0x400 + 8 * PARAM_BYTES:PARAM_BYTES] = 0       # small biases: outputs spread over the range
    return mem


def _place(mem, at: int, instrs) -> tuple[int, int]:
    blob = np.frombuffer(isa.encode_program(instrs), np.uint8)
    mem[at:at + blob.size] = blob
    return at, len(instrs)


def test_a_store_into_a_later_segments_program_runs_step_by_step():
    """The second segment's program is what the first one stored over it: only stepping reads it so."""
    cfg = CONFIGS[0]
    mem = _memory(1)
    second = _place(mem, 0x3000, [isa.make(Opcode.END)] * 8)
    first = _place(mem, 0x2000, _store_over(0x3000, 8) + [isa.make(Opcode.END)])
    with pytest.raises(Unsupported):
        plan(program_blobs(mem, (first, second), cfg), (first, second), cfg, mem.size)
    check_same_as_steps(cfg, mem, [first, second], planned=False)


def test_a_chain_read_after_its_bytes_changed_runs_step_by_step():
    """A MATMUL reads ACT bytes that a STORE then overwrites; a later LOAD of the stored bytes opens a new
    stage, and the POST of that MATMUL's chain comes after it."""
    cfg = CONFIGS[0]
    mem = _memory(2)
    instrs = _store_over(0x500, 8)      # rows 0..7 of ACC posted and stored to 0x500
    instrs[4:4] = [isa.make(Opcode.MATMUL, rows=4, act_addr=0, wgt_addr=0, acc_addr=100, accumulate=0, k_valid=8,
                            n_valid=8)]
    instrs += [isa.make(Opcode.STORE, buf=Buffer.OUT, rows=8, row_len=8, buf_addr=0, ext_addr=0x100, ext_stride=8),
               isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=1, row_len=8, buf_addr=9, ext_addr=0x100, ext_stride=8),
               isa.make(Opcode.SYNC),
               isa.make(Opcode.POST, rows=4, acc_addr=100, out_addr=50, param_addr=0, shift=20, zero_point=0,
                        clamp_lo=-128, clamp_hi=127),
               isa.make(Opcode.SYNC),
               isa.make(Opcode.STORE, buf=Buffer.OUT, rows=4, row_len=8, buf_addr=50, ext_addr=0x600, ext_stride=8),
               isa.make(Opcode.END)]
    seg = _place(mem, 0x2000, instrs)
    with pytest.raises(Unsupported):
        plan(program_blobs(mem, (seg,), cfg), (seg,), cfg, mem.size)
    check_same_as_steps(cfg, mem, [seg], planned=False)


def check_network(ep, cfg=AccelConfig(), batch=2, samples=3):
    """A network's program on golden's fast path and step by step: every layer, cycles and MACs equal; and
    the same memory, fault and pc when the watchdog stops it halfway."""
    graph = lower(ep)
    program = compile_graph(graph, cfg, batch=batch)
    rng = np.random.default_rng(0)
    shape = user_shape(program.input.shape, program.input_layout)
    x = quantize_input(program, rng.random((samples, *shape)).astype(np.float32))
    fast = run_program(program, x)
    steps = run_program(program, x, backend=get_backend("golden", exact_steps=True))
    for name, want in steps.layers.items():
        np.testing.assert_array_equal(fast.layers[name], want, err_msg=name)
    assert (fast.cycles, fast.macs) == (steps.cycles, steps.macs)
    segments = program.starts()[:program.host[0].after if program.host else None]
    watchdog = Golden(cfg, program.image.copy()).run_segments(segments).cycles // len(segments) // 2
    check_same_as_steps(cfg, program.image, segments, watchdog)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_digits_networks(model):
    from emu.zoo import digits
    check_network(load_pt2(digits.checkpoint("w8a8", model)), AccelConfig(rows=8, cols=8))
    check_network(load_pt2(digits.checkpoint("w2a2", model)), AccelConfig(rows=4, cols=4, weight_bits=2))


@pytest.mark.parametrize("net, resolution", [("resnet20", None), ("lenet5", None), ("squeezenet1_1", 32)])
def test_vision_networks(net, resolution):
    from emu.zoo.vision import quantized
    check_network(quantized(net, resolution=resolution)[0], batch=1, samples=2)


@pytest.mark.slow
@pytest.mark.parametrize("net, resolution", [("mobilenet_v3_small", 32), ("vgg11", None), ("resnet18", 64),
                                             ("mobilenet_v3_small", None), ("squeezenet1_1", None)])
def test_large_vision_networks(net, resolution):
    from emu.zoo.vision import quantized
    check_network(quantized(net, resolution=resolution)[0], batch=1, samples=1)
