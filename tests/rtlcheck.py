"""Golden-vs-RTL comparison and the configurations the RTL tests sweep."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from emu.contract.config import AccelConfig
from emu.contract.faults import HardwareFault
from emu.emulator.golden import Golden

SMALL = dict(act_depth=64, wgt_depth=32, acc_depth=64, out_depth=64, param_depth=8, instr_depth=128)
#: non-square, W8A8, 64-bit bus
CFG_3X5 = AccelConfig(rows=3, cols=5, **SMALL)
#: narrow widths: W4A4, 16-bit accumulators, 32-bit bus
CFG_W4A4 = AccelConfig(rows=4, cols=4, act_bits=4, weight_bits=4, acc_bits=16, bus_bits=32, **SMALL)
#: 128-bit bus with binary weights (-1 or +1, one sign bit) and 3-bit activations, outputs wide enough to show
#: every weight's sign: the default suite's one build for both (each build is a minute or two of the suite)
CFG_2X7 = AccelConfig(rows=2, cols=7, act_bits=3, weight_bits=1, acc_bits=24, bus_bits=128, **SMALL)
#: a width that is neither a power of two nor binary, W6A3 (`make test-all`)
CFG_W6A3 = AccelConfig(rows=3, cols=4, act_bits=3, weight_bits=6, acc_bits=16, **SMALL)
#: the narrowest: binary weights and 1-bit activations
CFG_W1A1 = AccelConfig(rows=3, cols=4, act_bits=1, weight_bits=1, acc_bits=16, **SMALL)

needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None,
                                    reason="Icarus Verilog (iverilog) is not installed: apt-get install iverilog")


def golden(cfg, mem, prog_addr, prog_len, watchdog=0, then=()):
    g = mem.copy()
    try:
        return g, Golden(cfg, g).run_segments([(prog_addr, prog_len), *then], watchdog=watchdog), None
    except HardwareFault as e:
        return g, None, e


def assert_same_as_golden(cfg, mem, prog_addr, prog_len, **kw):
    from sim.hil import run_rtl
    g_mem, g_res, g_fault = golden(cfg, mem, prog_addr, prog_len, kw.get("watchdog", 0), kw.get("then", ()))
    if g_fault is not None:
        with pytest.raises(HardwareFault) as info:
            run_rtl(cfg, mem.copy(), prog_addr, prog_len, **kw)
        assert (info.value.code, info.value.pc) == (g_fault.code, g_fault.pc)
        return None
    r_mem, r_res = run_rtl(cfg, mem.copy(), prog_addr, prog_len, **kw)
    bad = np.nonzero(r_mem != g_mem)[0]
    assert bad.size == 0, f"{bad.size} bytes differ, first at {bad[:8]}: rtl {r_mem[bad[:8]]} golden {g_mem[bad[:8]]}"
    assert (r_res.cycles, r_res.macs, r_res.instructions) == (g_res.cycles, g_res.macs, g_res.instructions)
    return r_mem, r_res
