"""Block-level tests in Amaranth's Python simulator: post-processing, the array, the decoder, lint."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from emu import isa, numerics
from emu.config import AccelConfig
from emu.faults import FaultCode
from emu.golden import check_fields
from emu.isa import Buffer, Opcode

from hdl.array import SystolicArray
from hdl.decoder import Decoder
from hdl.postproc import PostProc


@pytest.mark.parametrize("acc_bits,act_bits", [(32, 8), (16, 4), (24, 2)])
def test_postproc_matches_numerics(acc_bits, act_bits):
    lanes, n = 3, 40
    rng = np.random.default_rng(acc_bits * 10 + act_bits)
    dut = PostProc(lanes=lanes, acc_bits=acc_bits, act_bits=act_bits)
    acc = rng.integers(-(1 << (acc_bits - 1)), 1 << (acc_bits - 1), (n, lanes))
    bias = rng.integers(-(1 << 31), 1 << 31, (n, lanes))
    mult = rng.integers(0, 1 << 31, (n, lanes))
    shift = rng.integers(0, 64, n)
    zp, lo = rng.integers(-128, 128, n), rng.integers(-128, 128, n)
    hi = rng.integers(-128, 128, n)
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
    want = np.stack([numerics.wrap(numerics.requantize(acc[i], bias[i], mult[i], int(shift[i]), int(zp[i]),
                                                       int(lo[i]), int(hi[i])), act_bits) for i in range(n)])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("rows,cols,bits", [(3, 5, 8), (4, 2, 4)])
def test_array_matches_numpy(rows, cols, bits):
    rng = np.random.default_rng(rows * cols)
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)
    w = rng.integers(lo, hi, (rows, cols))
    a = rng.integers(lo, hi, (7, rows))
    dut = SystolicArray(rows=rows, cols=cols, act_bits=bits, weight_bits=bits, acc_bits=20)
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
    np.testing.assert_array_equal(np.array(outs), a @ w)


def _words(cfg):
    """Instructions around every decode check, plus illegal opcodes."""
    rng = np.random.default_rng(3)
    out = [0, 7, 15]
    for _ in range(300):
        op = Opcode(int(rng.integers(1, 7)))
        vals = {}
        for f in isa.FIELDS[op]:
            top = 1 << f.width
            choice = rng.integers(0, 4)
            v = [0, 1, int(rng.integers(0, min(top, 80))), int(rng.integers(0, top))][choice]
            if f.signed and v >= top // 2:
                v -= top
            vals[f.name] = v
        out.append(isa.encode(isa.make(op, **vals)))
    return out


def test_decoder_faults_match_check_fields():
    cfg = AccelConfig(rows=3, cols=5, act_depth=64, wgt_depth=32, acc_depth=64, out_depth=64, param_depth=8,
                      instr_depth=128)
    dut = Decoder(cfg)
    words = _words(cfg)

    async def tb(ctx):
        for word in words:
            ctx.set(dut.word, word)
            instr = isa.decode(word)
            want = FaultCode.ILLEGAL_OPCODE if instr is None else (check_fields(instr, cfg) or (0,))[0]
            assert ctx.get(dut.fault) == want, (hex(word), instr, want)

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()


def test_generated_verilog_lints_clean():
    from sim.lint import lint
    from sim.runner import verilog_for
    lint(verilog_for(AccelConfig(rows=3, cols=5, act_depth=64, wgt_depth=32, acc_depth=64, out_depth=64,
                                 param_depth=8, instr_depth=128)))
