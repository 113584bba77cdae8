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


@pytest.mark.parametrize("rows,cols", [(3, 5), (4, 2), (8, 8)])
def test_folds_overlap(rows, cols):
    """Folds back to back with no gap: the first tile's row k presented in cycle k, its vectors in cycles
    1..T; the second tile's row k in cycle T + k, its vectors from T + 1 on. Each row serves the vectors
    from c + 1 - k on, so every vector meets its own tile's weights in every column."""
    rng = np.random.default_rng(rows + cols)
    tiles = [rng.integers(-128, 128, (rows, cols)) for _ in range(3)]
    acts = [rng.integers(-128, 128, (t, rows)) for t in (5, 1, 4)]
    dut = SystolicArray(rows=rows, cols=cols, act_bits=8, weight_bits=8, acc_bits=32)
    w_at, a_at, cycle = {}, {}, 0           # cycle -> (row, weights) / vector
    for w, a in zip(tiles, acts):
        for k in range(rows):
            w_at[cycle + k] = (k, w[k])
        for i, vec in enumerate(a):
            a_at[cycle + 1 + i] = vec
        cycle += max(len(a), rows)      # the next tile's row 0 in the cycle of this tile's last vector
    outs = []

    async def tb(ctx):
        for c in range(max(a_at) + dut.latency + 2):
            ctx.set(dut.w_load, c in w_at)
            if c in w_at:
                ctx.set(dut.w_row, w_at[c][0])
                for n in range(cols):
                    ctx.set(dut.w_data[n], int(w_at[c][1][n]))
            ctx.set(dut.a_valid, c in a_at)
            if c in a_at:
                for k in range(rows):
                    ctx.set(dut.a_in[k], int(a_at[c][k]))
            if ctx.get(dut.y_valid):
                outs.append([ctx.get(dut.y_out[n]) for n in range(cols)])
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    np.testing.assert_array_equal(np.array(outs), np.concatenate([a @ w for w, a in zip(tiles, acts)]))
