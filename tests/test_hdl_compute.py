"""hdl.compute.ComputeUnit with its block RAMs in Amaranth's simulator against golden."""
import numpy as np
from amaranth.lib import wiring
from amaranth.sim import Simulator

from emu.contract import isa
from emu.contract.config import AccelConfig
from emu.emulator.golden import Golden
from emu.contract.isa import Opcode


def _compute_with_buffers(cfg):
    """The compute unit wired to ACT, WGT, PARAM and OUT block RAMs as in hdl/top.py."""
    from amaranth.hdl import Module
    from hdl.bram import BlockRAM
    from hdl.buffers import entry_layouts
    from hdl.compute import ComputeUnit
    m = Module()
    lay = entry_layouts(cfg)
    m.submodules.cu = cu = ComputeUnit(cfg)
    bufs = {}
    for name in ("act", "wgt", "param", "out"):
        m.submodules[name] = bufs[name] = BlockRAM(shape=lay[name], depth=getattr(cfg, f"{name}_depth"),
                                                   counted_reads=name != "out")
    for name in ("act", "wgt", "param"):
        wiring.connect(m, getattr(cu, f"{name}_rd"), bufs[name].rd_count[0])
        m.d.comb += getattr(cu, f"{name}_rd_data").eq(bufs[name].rd_data[0])
    m.d.comb += [bufs["out"].wr_en.eq(cu.out_wr_en), bufs["out"].wr_addr.eq(cu.out_wr_addr),
                 bufs["out"].wr_data.eq(cu.out_wr_data)]
    return m, cu, bufs


async def _load_buffers(ctx, bufs, g, *, param_entry):
    """Golden's ACT and WGT into the block RAMs, and its PARAM entry `param_entry`."""
    for name, table in (("act", g.act), ("wgt", g.wgt)):
        for e, row in enumerate(table):
            ctx.set(bufs[name].wr_en, 1)
            ctx.set(bufs[name].wr_addr, e)
            for k, v in enumerate(row):
                ctx.set(bufs[name].wr_data[k], int(v))
            await ctx.tick()
        ctx.set(bufs[name].wr_en, 0)
    ctx.set(bufs["param"].wr_en, 1)
    ctx.set(bufs["param"].wr_addr, param_entry)
    for k in range(g.bias.shape[1]):
        ctx.set(bufs["param"].wr_data[k].bias, int(g.bias[param_entry, k]))
        ctx.set(bufs["param"].wr_data[k].mult, int(g.mult[param_entry, k]))
    await ctx.tick()
    ctx.set(bufs["param"].wr_en, 0)


def _present(ctx, cu, cfg, instr):
    """The instruction's fields and start counts on the unit's command interface."""
    from hdl.compute import start_counts
    counts = start_counts(cfg, instr.fields["rows"], post=instr.op == Opcode.POST)
    for name, value in (instr.fields | counts).items():
        if name in cu.cmd.signature.members:
            ctx.set(getattr(cu.cmd, name), value)


async def _read_out(ctx, bufs, got):
    """Every OUT entry into `got`."""
    from hdl.bram import BlockRAM
    for e in range(len(got)):
        ctx.set(bufs["out"].rd_addr[0], e)
        await ctx.tick().repeat(BlockRAM.LATENCY)
        got[e] = [ctx.get(bufs["out"].rd_data[0][k]) for k in range(got.shape[1])]


def _simulate_and_replay(m, tb, g, instrs):
    """Run the testbench on the unit, then the instructions on golden."""
    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    for instr in instrs:
        (g._matmul if instr.op == Opcode.MATMUL else g._post)(instr)


def test_compute_max_mode_matches_golden():
    """MATMULs overwriting, accumulating with reduce_max and adding, read back through a POST with
    multiplier 1 and shift 0 (every ACC value stays within int8, so OUT shows it whole): OUT equals golden
    and each instruction keeps the unit busy for instr_cycles. Each starts as the sequencer would start it,
    ISSUE_LATENCY + BUSY_LATENCY cycles after its unit (for the POST, also the MATMULs' drain) is seen
    idle, so the MATMULs overlap: the one-row MATMULs read ACC rows the one before is writing, at the same
    position (emu.contract.timing's rule), as early as the cycle model lets them. Small values of both signs check the signed
    compare; one result (4 * 128 * 128 - 60) wraps at acc_bits=16 to -60, below the ACC value it meets."""
    from emu.contract.timing import BUSY_LATENCY, ISSUE_LATENCY, instr_cycles, matmul_cycles
    cfg = AccelConfig(rows=5, cols=4, acc_bits=16, act_depth=32, wgt_depth=16, acc_depth=16, out_depth=16,
                      param_depth=2, instr_depth=16)
    rng = np.random.default_rng(5)
    g = Golden(cfg, np.zeros(16, np.uint8))
    g.act[:] = rng.integers(-3, 4, g.act.shape)
    g.wgt[:] = rng.integers(-3, 4, g.wgt.shape)
    g.act[20] = [-128, -128, -128, -128, 60]
    g.wgt[10:15] = 0
    g.wgt[10:15, 0] = [-128, -128, -128, -128, -1]
    g.wgt[14, 1:] = [-2, 1, 2]
    g.bias[1], g.mult[1] = 0, 1
    mm = dict(op=Opcode.MATMUL, k_valid=5, n_valid=4)
    program = [
        dict(mm, rows=9, act_addr=0, wgt_addr=0, acc_addr=2, accumulate=0, reduce_max=1),  # max ignored
        dict(mm, rows=9, act_addr=6, wgt_addr=5, acc_addr=2, accumulate=1, reduce_max=1),
        dict(mm, rows=1, act_addr=20, wgt_addr=10, acc_addr=2, accumulate=1, reduce_max=1),  # wraps
        dict(mm, rows=4, act_addr=11, wgt_addr=3, acc_addr=6, accumulate=1, reduce_max=0),
        # the row the MATMUL before wrote first, at the same position, as soon as the cycle model allows
        dict(mm, rows=1, act_addr=0, wgt_addr=0, acc_addr=6, accumulate=1, reduce_max=0),
        dict(op=Opcode.POST, rows=11, acc_addr=1, out_addr=3, param_addr=1, shift=0, zero_point=0,
             clamp_lo=-128, clamp_hi=127),
    ]
    instrs = [isa.make(f.pop("op"), **f) for f in (dict(p) for p in program)]
    m, cu, bufs = _compute_with_buffers(cfg)
    busy, drained = [], []
    got = np.zeros_like(g.out)

    async def tb(ctx):
        await _load_buffers(ctx, bufs, g, param_entry=1)
        since_matmul = None
        for instr in instrs:
            post = instr.op == Opcode.POST
            if post:
                while ctx.get(cu.cmd.drain):
                    await ctx.tick()
                    since_matmul += 1
                drained.append(since_matmul)
            await ctx.tick().repeat(ISSUE_LATENCY + BUSY_LATENCY)
            _present(ctx, cu, cfg, instr)
            start = cu.cmd.post_start if post else cu.cmd.matmul_start
            ctx.set(start, (1 << len(start)) - 1)   # every copy of the strobe
            await ctx.tick()
            ctx.set(start, 0)
            cycles = 1
            while ctx.get(cu.cmd.post_busy if instr.op == Opcode.POST else cu.cmd.busy):
                await ctx.tick()
                cycles += 1
            busy.append(cycles)
            since_matmul = None if post else cycles
        await _read_out(ctx, bufs, got)

    _simulate_and_replay(m, tb, g, instrs)
    assert busy == [instr_cycles(i, cfg) - ISSUE_LATENCY for i in instrs]  # the unit alone: no issue register
    assert drained == [matmul_cycles(cfg, instrs[-2].rows) - ISSUE_LATENCY]
    assert (np.abs(g.acc) < 128).all() and g.acc[2, 0] > -60
    np.testing.assert_array_equal(got, g.out)


def test_short_matmuls_read_every_weight_row():
    """MATMULs shorter than the array is tall (T < R, busy for the floor max(R, MATMUL_MIN_ACCEPT)), back to
    back into one ACC region, then a POST: every weight row is read, whatever T."""
    from emu.contract.timing import BUSY_LATENCY, ISSUE_LATENCY
    cfg = AccelConfig(rows=8, cols=3, acc_bits=16, act_depth=16, wgt_depth=16, acc_depth=8, out_depth=8,
                      param_depth=1, instr_depth=16)
    rng = np.random.default_rng(7)
    g = Golden(cfg, np.zeros(16, np.uint8))
    g.act[:] = rng.integers(-2, 3, g.act.shape)
    g.wgt[:] = rng.integers(-2, 3, g.wgt.shape)
    g.bias[0], g.mult[0] = 0, 1
    mm = dict(op=Opcode.MATMUL, k_valid=8, n_valid=3, reduce_max=0)
    program = [dict(mm, rows=2, act_addr=0, wgt_addr=0, acc_addr=0, accumulate=0),
               dict(mm, rows=2, act_addr=4, wgt_addr=8, acc_addr=0, accumulate=1),
               dict(op=Opcode.POST, rows=2, acc_addr=0, out_addr=0, param_addr=0, shift=0, zero_point=0,
                    clamp_lo=-128, clamp_hi=127)]
    instrs = [isa.make(f.pop("op"), **f) for f in (dict(p) for p in program)]
    m, cu, bufs = _compute_with_buffers(cfg)
    got = np.zeros_like(g.out)

    async def tb(ctx):
        await _load_buffers(ctx, bufs, g, param_entry=0)
        for instr in instrs:
            post = instr.op == Opcode.POST
            while ctx.get(cu.cmd.busy) or (post and ctx.get(cu.cmd.drain)):
                await ctx.tick()
            await ctx.tick().repeat(ISSUE_LATENCY + BUSY_LATENCY)
            _present(ctx, cu, cfg, instr)
            start = cu.cmd.post_start if post else cu.cmd.matmul_start
            ctx.set(start, (1 << len(start)) - 1)
            await ctx.tick()
            ctx.set(start, 0)
        await ctx.tick().repeat(40)
        await _read_out(ctx, bufs, got)

    _simulate_and_replay(m, tb, g, instrs)
    np.testing.assert_array_equal(got, g.out)
