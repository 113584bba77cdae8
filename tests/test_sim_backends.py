"""The other simulation paths: Icarus Verilog, and cocotbext-axi's AxiRam with random back-pressure."""
import numpy as np
import pytest

from emu.contract import isa
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


@pytest.mark.parametrize("cfg", [CFG_3X5, CFG_W4A4], ids=["3x5", "w4a4"])
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
