"""hdl.array.SystolicArray, the MAC array, in Amaranth's simulator against numpy."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from emu.contract import numerics

from hdl.array import SystolicArray


@pytest.mark.parametrize("rows,cols,bits,acc_bits", [(3, 5, 8, 20), (4, 2, 4, 20), (8, 3, 8, 32), (4, 2, 8, 16)])
def test_array_matches_numpy(rows, cols, bits, acc_bits):
    """Random vectors, then the extremes: the partial sums are only as wide as the largest sum needs
    (acc_bits 16 < 8 + 8 + 2 wraps instead)."""
    rng = np.random.default_rng(rows * cols)
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)
    w = rng.integers(lo, hi, (rows, cols))
    w[:, 0], w[:, -1] = lo, hi - 1
    a = np.concatenate([rng.integers(lo, hi, (7, rows)), np.full((1, rows), lo), np.full((1, rows), hi - 1)])
    dut = SystolicArray(rows=rows, cols=cols, act_bits=bits, weight_bits=bits, acc_bits=acc_bits)
    outs = []

    async def tb(ctx):
        for k in range(rows):
            ctx.set(dut.w_load, 1)
            ctx.set(dut.w_row, k)
            for n in range(cols):
                ctx.set(dut.w_data[n], int(w[k, n]))
            await ctx.tick()
        ctx.set(dut.w_load, 0)
        for cycle in range(len(a) + dut.latency + 2):
            if cycle < len(a):
                ctx.set(dut.a_valid, 1)
                for k in range(rows):
                    ctx.set(dut.a_in[k], int(a[cycle, k]))
            else:
                ctx.set(dut.a_valid, 0)
            if ctx.get(dut.y_valid):
                outs.append([ctx.get(dut.y_out[n]) for n in range(cols)])
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    np.testing.assert_array_equal(np.array(outs), numerics.wrap(a @ w, acc_bits))
