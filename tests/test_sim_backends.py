"""The other simulation paths: Icarus Verilog, and cocotbext-axi's AxiRam with random back-pressure."""
import contextlib

import numpy as np
import pytest

from emu.contract import isa
from emu.contract.config import AccelConfig
from emu.contract.faults import HardwareFault
from emu.emulator.golden import Golden
from emu.contract.isa import Opcode
from emu.contract.timing import dma_spans

from rtlcheck import CFG_3X5, CFG_W4A4, assert_same_as_golden, needs_iverilog
from randprog import random_case

pytestmark = pytest.mark.rtl


@needs_iverilog
def test_icarus_small_program():
    mem, pa, pl, _ = random_case(CFG_3X5, 11, rounds=1, max_t=4)
    assert_same_as_golden(CFG_3X5, mem, pa, pl, simulator="icarus")


@pytest.mark.parametrize("cfg", [CFG_3X5, pytest.param(CFG_W4A4, marks=pytest.mark.slow)],  # its own build
                         ids=["3x5", "w4a4"])
def test_axi_ram_backpressure_with_guards(cfg):
    """AXI protocol run: random pauses on all five channels, 3-D LOADs and STOREs among the transfers;
    bytes outside every STORE row untouched."""
    from sim.hil import run_rtl
    mem, pa, pl, stores = random_case(cfg, 31, rounds=2, max_t=6)
    dma = [i for i in map(isa.decode, isa.decode_program(mem[pa:pa + 16 * pl])) if i.op in (Opcode.LOAD, Opcode.STORE)]
    assert {i.op for i in dma if i.blocks > 1} == {Opcode.LOAD, Opcode.STORE}
    g = mem.copy()
    g_res = Golden(cfg, g).run(pa, pl)
    r_mem, r_res = run_rtl(cfg, mem.copy(), pa, pl, memory_model="axi", backpressure=True, seed=5)
    written = np.zeros(mem.size, bool)
    for store in stores:
        for addr, nbytes in dma_spans(store):
            written[addr:addr + nbytes] = True
    assert np.array_equal(r_mem[~written], mem[~written]), "a DMA write touched a guard byte"
    assert np.array_equal(r_mem, g)
    assert r_res.macs == g_res.macs
    assert r_res.cycles >= g_res.cycles  # pauses only ever slow the run down


def _reads_no_leftovers(cfg, mem, segments) -> bool:
    """Golden leaves the same memory whether the buffers start zeroed or full of random values: the program
    writes every entry before it reads it (as compiled programs do), so a run after another is comparable."""
    out = []
    for fill in (False, True):
        g = Golden(cfg, mem.copy())
        if fill:
            rng = np.random.default_rng(0)
            for buf in (g.act, g.wgt, g.bias, g.mult, g.acc, g.out):
                buf[:] = rng.integers(-100, 100, buf.shape)
        with contextlib.suppress(HardwareFault):     # the memory at the fault is compared too
            g.run_segments(segments)
        out.append(g.mem)
    return np.array_equal(*out)


def test_one_simulator_session_serves_runs_faults_included():
    """An RtlSession: random programs, one that faults midway (the session goes on) and a program split into
    segments, one after the other in one simulator start, each equal to golden on memory, cycles and fault.
    A run sees the buffers as the run before left them, as on the hardware, so the programs are ones that
    write every entry before reading it."""
    from sim.hil import RtlSession
    from randprog import split_case
    from rtlcheck import golden
    cases = [random_case(CFG_3X5, seed, rounds=2, max_t=6)[:3] for seed in range(40, 80)]
    cases = [(m, [(a, n)]) for m, a, n in cases if _reads_no_leftovers(CFG_3X5, m, [(a, n)])][:3]
    mem, [(pa, pl)] = cases[0]
    bad = mem.copy()
    bad[pa + 16 * (pl - 3):pa + 16 * (pl - 2)] = np.frombuffer((0xF).to_bytes(16, "little"), np.uint8)
    cases.insert(1, (bad, [(pa, pl)]))
    mem, [(pa, pl)] = cases[-1]
    split = mem.copy()
    cases.append((split, split_case(split, pa, pl, 43, cuts=2)))
    with RtlSession(CFG_3X5, mem.size) as session:
        for m, segments in cases:
            g_mem, g_res, g_fault = golden(CFG_3X5, m, *segments[0], then=segments[1:])
            try:
                r_mem, r_res = session(CFG_3X5, m.copy(), segments)
            except HardwareFault as fault:
                assert g_fault is not None and (fault.code, fault.pc) == (g_fault.code, g_fault.pc)
                continue
            assert g_fault is None and np.array_equal(r_mem, g_mem)
            assert (r_res.cycles, r_res.macs) == (g_res.cycles, g_res.macs)
        assert session.runs == len(cases)


def test_run_program_starts_the_simulator_once(monkeypatch):
    """Three chunks of a batch through the rtl backend: one RtlSession, three runs, outputs equal golden's."""
    from emu.compiler.codegen import compile_graph
    from emu.frontend import load_pt2, lower
    from emu.runtime.run import get_backend, quantize_input, run_program
    from emu.zoo import digits
    import sim.hil
    entered = []
    enter = sim.hil.RtlSession.__enter__
    monkeypatch.setattr(sim.hil.RtlSession, "__enter__", lambda self: entered.append(self) or enter(self))
    graph = lower(load_pt2(digits.checkpoint("w8a8")))
    program = compile_graph(graph, AccelConfig(), batch=2)
    x = quantize_input(program, digits.load_split()[2][:6])
    rtl = run_program(program, x, backend=get_backend("rtl"))
    gold = run_program(program, x)
    assert len(entered) == 1 and entered[0].runs == 3
    assert np.array_equal(rtl.output, gold.output) and rtl.cycles == gold.cycles
