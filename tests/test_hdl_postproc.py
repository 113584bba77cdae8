"""hdl.postproc.PostProc, the requantizing post-processor, in Amaranth's simulator against emu.contract.numerics."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from emu.contract import numerics

from hdl.postproc import PostProc


def run_postproc(acc_bits, act_bits, acc, bias, mult, shift, zp, lo, hi):
    """PostProc's outputs for rows of inputs ([n, lanes] acc/bias/mult, [n] controls), one row per cycle."""
    n, lanes = acc.shape
    dut = PostProc(lanes=lanes, acc_bits=acc_bits, act_bits=act_bits)
    got = np.zeros((n, lanes), np.int64)

    async def tb(ctx):
        for i in range(n):
            for k in range(lanes):
                ctx.set(dut.acc[k], int(acc[i, k]))
                ctx.set(dut.param[k].bias, int(bias[i, k]))
                ctx.set(dut.param[k].mult, int(mult[i, k]))
            ctx.set(dut.shift, int(shift[i]))
            ctx.set(dut.zero_point, int(zp[i]))
            ctx.set(dut.clamp_lo, int(lo[i]))
            ctx.set(dut.clamp_hi, int(hi[i]))
            await ctx.tick()
            if i >= dut.LATENCY - 1:   # every input changes each cycle; row i comes out LATENCY later
                for k in range(lanes):
                    got[i - dut.LATENCY + 1, k] = ctx.get(dut.out[k])
        for i in range(n - dut.LATENCY + 1, n):
            await ctx.tick()
            for k in range(lanes):
                got[i, k] = ctx.get(dut.out[k])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got


def requantize_rows(act_bits, acc, bias, mult, shift, zp, lo, hi):
    return np.stack([numerics.wrap(numerics.requantize(acc[i], bias[i], mult[i], int(shift[i]), int(zp[i]),
                                                       int(lo[i]), int(hi[i])), act_bits) for i in range(len(acc))])


@pytest.mark.parametrize("acc_bits,act_bits", [(32, 8), (16, 4), (24, 2)])
def test_postproc_matches_numerics(acc_bits, act_bits):
    lanes, n = 3, 40
    rng = np.random.default_rng(acc_bits * 10 + act_bits)
    acc = rng.integers(-(1 << (acc_bits - 1)), 1 << (acc_bits - 1), (n, lanes))
    bias = rng.integers(-(1 << 62), 1 << 62, (n, lanes))
    mult = rng.integers(0, 1 << 31, (n, lanes))
    shift = rng.integers(0, 64, n)
    zp, lo = rng.integers(-128, 128, n), rng.integers(-128, 128, n)
    hi = rng.integers(-128, 128, n)
    args = (acc, bias, mult, shift, zp, lo, hi)
    np.testing.assert_array_equal(run_postproc(acc_bits, act_bits, *args), requantize_rows(act_bits, *args))


@pytest.mark.parametrize("acc_bits,act_bits", [(32, 8), (16, 4)])
def test_postproc_extremes(acc_bits, act_bits):
    """Operand extremes (signed 32-bit multipliers included), shifts 0 and 63, int64 wrap-around of the
    sum, the rounding add and the zero point, and results just inside and outside the 9-bit window the
    clamp looks through."""
    lanes, n = 3, 160
    rng = np.random.default_rng(7 + acc_bits)
    a_lo, a_hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    i64 = np.iinfo(np.int64)
    accs = np.array([a_lo, a_hi, -1, 0, 1, a_lo + 1])
    mults = np.array([-(1 << 31), (1 << 31) - 1, -1, 0, 1, 1 << 30, -(1 << 30) - 1])
    biases = np.array([i64.min, i64.max, 0, -1, 1 << 62, -(1 << 62), i64.max - 5, i64.min + 5])
    shifts = np.array([0, 1, 2, 31, 32, 62, 63])
    acc = rng.choice(accs, (n, lanes))
    mult = rng.choice(mults, (n, lanes))
    bias = rng.choice(biases, (n, lanes))
    shift = rng.choice(shifts, n)
    zp = rng.choice([-128, 127, 0, -1, 1], n)
    lo, hi = rng.integers(-128, 128, n), rng.integers(-128, 128, n)
    # rows 0..79: p = t * 2**shift + a few low bits, t around the clamp window's edges (+-128, +-256) and
    # r = t + zero_point around the edges of the range PostProc adds in 11 bits ([-512, 511])
    w = n // 2
    edges = np.array([-258, -257, -256, -255, -130, -129, -128, -127, -1, 0, 1, 126, 127, 128, 254, 255, 256, 257,
                      -641, -640, -386, -385, -384, 383, 384, 385, 638, 639, 640])
    t = rng.choice(edges, (w, lanes)) - zp[:w, None]
    shift[:w] = rng.choice([0, 1, 5, 40, 55], w)
    low = rng.integers(0, 1 << 62, (w, lanes)) & ((np.int64(1) << shift[:w, None].astype(np.int64)) - 1)
    acc[:w], mult[:w] = rng.choice([0, 1, -1], (w, lanes)), 0
    bias[:w] = (t << shift[:w, None].astype(np.int64)) + low
    args = (acc, bias, mult, shift, zp, lo, hi)
    np.testing.assert_array_equal(run_postproc(acc_bits, act_bits, *args), requantize_rows(act_bits, *args))


def test_postproc_zero_point_wraps_int64():
    """b = r + zero_point wraps to the other sign when r lies within 128 of the int64 limits (shift 0 and
    small shifts only); PostProc takes b's sign from r's and the carry into bit 63, not from a 64-bit add."""
    lanes, n = 4, 60
    rng = np.random.default_rng(11)
    i64 = np.iinfo(np.int64)
    near_max = i64.max - rng.integers(0, 300, (n, lanes))
    near_min = i64.min + rng.integers(0, 300, (n, lanes))
    bias = np.where(rng.integers(0, 2, (n, lanes)) == 1, near_max, near_min)
    acc, mult = rng.integers(-3, 4, (n, lanes)), rng.integers(-3, 4, (n, lanes))
    shift = rng.choice([0, 0, 0, 1, 2], n)
    zp = rng.choice([-128, -127, -1, 0, 1, 126, 127], n)
    lo, hi = rng.integers(-128, 128, n), rng.integers(-128, 128, n)
    args = (acc, bias, mult, shift, zp, lo, hi)
    np.testing.assert_array_equal(run_postproc(32, 8, *args), requantize_rows(8, *args))
