"""Block-level tests in Amaranth's Python simulator: post-processing, the array, the decoder, lint."""
import numpy as np
import pytest
from amaranth.lib import wiring
from amaranth.sim import Simulator

from emu.contract import isa, numerics
from emu.contract.config import AccelConfig
from emu.contract.faults import FaultCode
from emu.emulator.golden import Golden, check_fields
from emu.contract.isa import Buffer, Opcode

from hdl.array import SystolicArray
from hdl.decoder import Decoder
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
    # rows * blocks around each buffer's end, blocks = 0, and a product past 16 bits
    for op, buf, depth in ((Opcode.LOAD, Buffer.ACT, cfg.act_depth), (Opcode.LOAD, Buffer.PARAM, cfg.param_depth),
                           (Opcode.STORE, Buffer.OUT, cfg.out_depth)):
        for buf_addr, rows, blocks in ((depth - 12, 4, 3), (depth - 11, 4, 3), (1, 2, 0), (0, 1 << 15, 1023),
                                       (0, 1, depth), (1, 1, depth)):
            out.append(isa.encode(isa.make(op, buf=buf, rows=rows, row_len=1, buf_addr=max(buf_addr, 0),
                                           ext_addr=0, ext_stride=1, blocks=blocks, block_stride=0)))
    return out


def test_decoder_faults_match_check_fields():
    """Faults in check_fields' order (PROGRAM_RANGE first), a LOAD/STORE's row bytes and a MATMUL's count
    (k_valid * n_valid; a LOAD/STORE's count only feeds the range check), LATENCY cycles later."""
    from emu.contract.timing import element_bytes
    cfg = AccelConfig(rows=3, cols=5, act_depth=64, wgt_depth=32, acc_depth=64, out_depth=64, param_depth=8,
                      instr_depth=128)
    dut = Decoder(cfg)
    words = _words(cfg)

    def want(word):
        instr = isa.decode(word)
        return FaultCode.ILLEGAL_OPCODE if instr is None else (check_fields(instr, cfg) or (0,))[0]

    async def tb(ctx):
        # one word a cycle, every other one marked past the program's end; results LATENCY cycles later
        seen = []
        for cycle in range(len(words) + Decoder.LATENCY):
            if cycle < len(words):
                ctx.set(dut.word, words[cycle])
                ctx.set(dut.past_end, cycle % 2)
            ctx.set(dut.valid, cycle < len(words))
            await ctx.tick()
            if ctx.get(dut.out_valid):
                seen.append((ctx.get(dut.out_word), ctx.get(dut.fault), ctx.get(dut.count), ctx.get(dut.row_bytes)))
        assert [s[0] for s in seen] == words
        for i, (word, fault, count, row_bytes) in enumerate(seen):
            assert fault == (FaultCode.PROGRAM_RANGE if i % 2 else want(word)), (hex(word), want(word))
            instr = isa.decode(word)
            if fault == 0 and instr.op in (Opcode.LOAD, Opcode.STORE):
                assert row_bytes == instr.row_len * element_bytes(Buffer(instr.buf))
            elif fault == 0 and instr.op == Opcode.MATMUL:
                assert count == instr.k_valid * instr.n_valid

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_product_with_addend():
    """hdl.pipeline.product with `plus`: a * b + plus, signed, for unsigned 6 x 3-bit operands and a signed
    8-bit addend at both ends of their ranges and at random, one set a cycle, product_latency cycles later."""
    from amaranth.hdl import Module, Signal, signed
    from hdl.pipeline import product, product_latency
    m = Module()
    a, b, plus = Signal(6), Signal(3), Signal(signed(8))
    result = product(m, a, b, plus=plus, name="p")
    rng = np.random.default_rng(11)
    cases = [(63, 7, 127), (63, 7, -128), (0, 0, -128), (0, 7, 127), (1, 1, -2)]
    cases += [(int(rng.integers(0, 64)), int(rng.integers(0, 8)), int(rng.integers(-128, 128))) for _ in range(100)]
    latency = product_latency(3, plus=True)

    async def tb(ctx):
        seen = []
        for cycle in range(len(cases) + latency):
            if cycle < len(cases):
                ctx.set(a, cases[cycle][0])
                ctx.set(b, cases[cycle][1])
                ctx.set(plus, cases[cycle][2])
            await ctx.tick()
            if cycle + 1 >= latency:
                seen.append(ctx.get(result))
        assert seen[:len(cases)] == [x * y + z for x, y, z in cases]

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("depth", [2, 3, 12])
def test_queue_matches_a_fifo(depth):
    """hdl.pipeline.Queue against a Python list: random pushes (never more than `depth` entries after the
    cycle), random pops of a ready head and a few flushes; every cycle the registered head is the oldest
    entry (zero and not ready when empty)."""
    from hdl.pipeline import Queue
    dut = Queue(width=8, depth=depth)
    rng = np.random.default_rng(depth)

    async def tb(ctx):
        model, serial = [], 0
        for cycle in range(600):
            assert ctx.get(dut.r_rdy) == bool(model), cycle
            assert ctx.get(dut.r_data) == (model[0] if model else 0), cycle
            pop = bool(model) and rng.random() < 0.5
            push = len(model) - pop < depth and rng.random() < 0.6
            flush = rng.random() < 0.01
            serial = serial % 255 + 1
            ctx.set(dut.r_en, pop)
            ctx.set(dut.w_en, push)
            ctx.set(dut.w_data, serial)
            ctx.set(dut.flush, flush)
            await ctx.tick()
            if pop:
                model.pop(0)
            if push:
                model.append(serial)
            if flush:
                model = []

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_block_ram_address_copies():
    """BlockRAM with addr_copies=3 (generic path): slice j of the 10 bits (3, 3, 4 wide) is read at copy j,
    so a copy driven apart from the others shows in its slice, LATENCY cycles after the address."""
    from hdl.bram import BlockRAM
    dut = BlockRAM(shape=10, depth=16, addr_copies=3)
    entries = [(i * 0x2D5 + 0x13) & 0x3FF for i in range(16)]
    reads = [(a, (a + 5) % 16, (a * 7) % 16) for a in range(16)]

    async def tb(ctx):
        for addr, value in enumerate(entries):
            ctx.set(dut.wr_en, 1)
            ctx.set(dut.wr_addr, addr)
            ctx.set(dut.wr_data, value)
            await ctx.tick()
        ctx.set(dut.wr_en, 0)
        seen = []
        for cycle in range(len(reads) + BlockRAM.LATENCY):
            if cycle < len(reads):
                a0, a1, a2 = reads[cycle]
                ctx.set(dut.rd_addr[0], a0)
                ctx.set(dut.rd_addr_copy[0][0], a1)
                ctx.set(dut.rd_addr_copy[0][1], a2)
            await ctx.tick()
            if cycle + 1 >= BlockRAM.LATENCY:
                seen.append(ctx.get(dut.rd_data[0]))
        want = [entries[a0] & 0x7 | entries[a1] & 0x38 | entries[a2] & 0x3C0 for a0, a1, a2 in reads]
        assert seen[:len(reads)] == want

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_block_ram_rejects_more_address_copies_than_bits():
    from hdl.bram import BlockRAM
    with pytest.raises(ValueError, match=r"addr_copies=11 is not accepted: expected an integer from 1 to the "
                                         r"width, 10"):
        BlockRAM(shape=10, depth=16, addr_copies=11)


def test_accumulate_carries_into_the_high_half():
    """hdl.pipeline.accumulate: a 12-bit total in 6-bit halves, terms that carry out of the low half on most
    adds, random enables and a clear: the total equals the running sum mod 2**12 two cycles after each add."""
    from amaranth.hdl import Module, Signal
    from hdl.pipeline import accumulate
    m = Module()
    total, term, en, clear = Signal(12), Signal(6), Signal(), Signal()
    accumulate(m, total, term, en=en, clear=clear, init=5, name="acc")
    rng = np.random.default_rng(7)
    steps = [(int(rng.integers(40, 64)), bool(rng.integers(0, 4)), i == 90) for i in range(200)]

    async def tb(ctx):
        want = 0
        for term_value, enable, restart in steps:
            ctx.set(term, term_value)
            ctx.set(en, enable)
            ctx.set(clear, restart)
            await ctx.tick()
            want = 5 if restart else (want + term_value * enable) % (1 << 12)
        ctx.set(en, 0)
        ctx.set(clear, 0)
        await ctx.tick().repeat(2)
        assert ctx.get(total) == want

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_accumulate_rejects_a_wide_term():
    from amaranth.hdl import Module, Signal
    from hdl.pipeline import accumulate
    m = Module()
    m._MustUse__silence = True     # never elaborated: no "created but never used" warning
    with pytest.raises(ValueError, match="a 12-bit total takes an even width and a term of at most 6 bits, not 7"):
        accumulate(m, Signal(12), Signal(7), en=1, clear=0, name="acc")


def test_generated_verilog_lints_clean():
    from sim.lint import lint
    from sim.runner import verilog_for
    lint(verilog_for(AccelConfig(rows=3, cols=5, act_depth=64, wgt_depth=32, acc_depth=64, out_depth=64,
                                 param_depth=8, instr_depth=128)))


class _FixedLatencyMemory:
    """Python model of sim/axi_mem.v for the Amaranth simulator: AR/AW accepted while idle, first R beat two
    cycles after AR, W accepted from the cycle after AW, B the cycle after the last W beat. Records bursts."""

    def __init__(self, mem: np.ndarray, bus_bytes: int):
        self.mem, self.B = mem, bus_bytes
        self.bursts = []                        # (aligned address, beats) in issue order
        self.r_state, self.r_word, self.r_left = 0, 0, 0
        self.w_state, self.w_word = 0, 0
        self.rvalid = self.rlast = self.bvalid = 0
        self.rdata = 0

    def _word(self, w):
        return int.from_bytes(self.mem[w * self.B:(w + 1) * self.B].tobytes(), "little")

    def drive(self, ctx, bus):
        """Registered slave outputs of this cycle."""
        ctx.set(bus.arready, self.r_state == 0)
        ctx.set(bus.rvalid, self.rvalid)
        ctx.set(bus.rlast, self.rlast)
        ctx.set(bus.rdata, self.rdata)
        ctx.set(bus.awready, self.w_state == 0)
        ctx.set(bus.wready, self.w_state == 1)
        ctx.set(bus.bvalid, self.bvalid)

    def step(self, ctx, bus):
        """Sample the master's outputs (after `drive`) and advance one clock."""
        if self.r_state == 0 and ctx.get(bus.arvalid):
            self.r_word, self.r_left = ctx.get(bus.araddr) // self.B, ctx.get(bus.arlen)
            self.bursts.append((ctx.get(bus.araddr), self.r_left + 1))
            self.r_state = 1
        elif self.r_state == 1:
            self.rdata, self.rvalid, self.rlast, self.r_state = self._word(self.r_word), 1, self.r_left == 0, 2
        elif self.r_state == 2 and ctx.get(bus.rready):
            if self.r_left == 0:
                self.rvalid = self.rlast = 0
                self.r_state = 0
            else:
                self.r_word, self.r_left = self.r_word + 1, self.r_left - 1
                self.rdata, self.rlast = self._word(self.r_word), self.r_left == 0
        if self.w_state == 0 and ctx.get(bus.awvalid):
            self.w_word = ctx.get(bus.awaddr) // self.B
            self.bursts.append((ctx.get(bus.awaddr), ctx.get(bus.awlen) + 1))
            self.w_state = 1
        elif self.w_state == 1 and ctx.get(bus.wvalid):
            data, strb = ctx.get(bus.wdata), ctx.get(bus.wstrb)
            for j in range(self.B):
                if strb >> j & 1:
                    self.mem[self.w_word * self.B + j] = data >> (8 * j) & 0xFF
            self.w_word += 1
            if ctx.get(bus.wlast):
                self.bvalid, self.w_state = 1, 2
        elif self.w_state == 2 and ctx.get(bus.bready):
            self.bvalid, self.w_state = 0, 0


DMA_CASES = {
    # blocks overlap (block_stride < a block's extent), rows one span each, a block crosses 4 KiB
    "load_rows_overlapping_blocks": dict(op=Opcode.LOAD, buf=Buffer.ACT, rows=3, row_len=5, buf_addr=2,
                                         ext_addr=4096 - 23, ext_stride=7, blocks=4, block_stride=9),
    # merged rows (ext_stride == row bytes >= bus bytes), unaligned, blocks far apart
    "load_merged_blocks": dict(op=Opcode.LOAD, buf=Buffer.WGT, rows=4, row_len=16, buf_addr=1,
                               ext_addr=4011, ext_stride=16, blocks=3, block_stride=301),
    # merged rows whose span is not a whole number of bus words: (rows * row bytes) % B != row bytes % B
    "load_merged_odd_rows": dict(op=Opcode.LOAD, buf=Buffer.ACT, rows=3, row_len=21, buf_addr=4, ext_addr=4003,
                                 ext_stride=21, blocks=2, block_stride=100),
    # one merged span of 2047 bytes that fits its last burst exactly: at 256 beats (bus 32 and 64 bits)
    "load_merged_long": dict(op=Opcode.LOAD, buf=Buffer.ACT, rows=23, row_len=89, buf_addr=0, ext_addr=1,
                             ext_stride=89, blocks=1, block_stride=0),
    "load_param_blocks": dict(op=Opcode.LOAD, buf=Buffer.PARAM, rows=1, row_len=2, buf_addr=0, ext_addr=13,
                              ext_stride=16, blocks=3, block_stride=40),
    "store_rows_blocks": dict(op=Opcode.STORE, buf=Buffer.OUT, rows=2, row_len=3, buf_addr=3, ext_addr=4090,
                              ext_stride=5, blocks=3, block_stride=12),
    "store_merged_odd_rows": dict(op=Opcode.STORE, buf=Buffer.OUT, rows=3, row_len=21, buf_addr=5, ext_addr=8170,
                                  ext_stride=21, blocks=2, block_stride=70),
    # the same span ending at a 4 KiB boundary: its last burst fits it exactly (bus 32 and 128 bits)
    "store_merged_long": dict(op=Opcode.STORE, buf=Buffer.OUT, rows=23, row_len=89, buf_addr=7, ext_addr=6145,
                              ext_stride=89, blocks=1, block_stride=0),
    "store_merged_blocks": dict(op=Opcode.STORE, buf=Buffer.OUT, rows=3, row_len=16, buf_addr=0,
                                ext_addr=8185, ext_stride=16, blocks=2, block_stride=50),
}


@pytest.mark.parametrize("rd_latency", [1, 2])
@pytest.mark.parametrize("bus_bits", [32, 64, 128])
@pytest.mark.parametrize("case", sorted(DMA_CASES))
def test_dma_3d_transfer_matches_golden(case, bus_bits, rd_latency):
    """One LOAD/STORE: bursts = emu.contract.timing.bursts of dma_spans, busy cycles = dma_cycles, data = golden."""
    from emu.contract.timing import ISSUE_LATENCY, bursts, dma_cycles, dma_spans, element_bytes
    from hdl.dma import DMA
    fields = dict(DMA_CASES[case])
    instr = isa.make(fields.pop("op"), **fields)
    cfg = AccelConfig(rows=16, cols=16, bus_bits=bus_bits)
    B, EB = cfg.bus_bytes, 8 * 16
    rng = np.random.default_rng(bus_bits)
    mem = rng.integers(0, 256, 3 * 4096, dtype=np.uint8)
    before = mem.copy()
    slave = _FixedLatencyMemory(mem, B)
    dut = DMA(bus_bytes=B, entry_bytes=EB, rd_latency=rd_latency)
    row_bytes = instr.row_len * element_bytes(Buffer(instr.buf))
    entries = instr.rows * instr.blocks
    out_images = rng.integers(0, 256, (64, EB), dtype=np.uint8)  # STORE source: a 64-entry OUT buffer
    writes = {}
    state = {}

    async def tb(ctx):
        for name in ("rows", "blocks", "buf_addr", "ext_addr", "ext_stride", "block_stride"):
            ctx.set(getattr(dut, name), getattr(instr, name))
        ctx.set(dut.store, instr.op == Opcode.STORE)
        ctx.set(dut.target, instr.buf)
        ctx.set(dut.row_bytes, row_bytes)
        ctx.set(dut.start, 1)
        rd_addrs = [0] * (rd_latency - 1) + [ctx.get(dut.rd_addr)]  # rd_addr of the last rd_latency cycles
        await ctx.tick()
        ctx.set(dut.start, 0)
        cycle = 1
        while True:
            slave.drive(ctx, dut.bus)
            image = out_images[rd_addrs[0] % 64]                       # rd_data lags rd_addr rd_latency cycles
            ctx.set(dut.rd_data, int.from_bytes(image.tobytes(), "little"))
            if not ctx.get(dut.busy):
                break
            if ctx.get(dut.wr_en):
                assert ctx.get(dut.wr_target) == instr.buf
                writes[ctx.get(dut.wr_addr)] = ctx.get(dut.wr_data)
            rd_addrs = rd_addrs[1:] + [ctx.get(dut.rd_addr)]
            slave.step(ctx, dut.bus)
            await ctx.tick()
            cycle += 1
            assert cycle <= 4 * dma_cycles(instr, cfg), "the DMA hangs"
        state["cycles"] = cycle
        assert not ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    want_bursts = [b for a, n in dma_spans(instr, B) for b in bursts(a, n, B)]
    assert slave.bursts == want_bursts
    assert state["cycles"] == dma_cycles(instr, cfg) - ISSUE_LATENCY  # the DMA alone: no issue register
    g = Golden(cfg, before.copy())
    addresses = g._addresses(instr)
    if instr.op == Opcode.LOAD:
        want = {instr.buf_addr + e: int.from_bytes(before[addresses[e]].tobytes(), "little")
                for e in range(entries)}
        assert writes == want
    else:
        assert not writes
        expect = before.copy()
        expect[addresses] = out_images[instr.buf_addr:instr.buf_addr + entries, :row_bytes]
        np.testing.assert_array_equal(mem, expect)


@pytest.mark.parametrize("rd_latency", [0, 3])
def test_dma_rejects_bad_rd_latency(rd_latency):
    from hdl.dma import DMA
    with pytest.raises(ValueError, match=f"rd_latency must be 1 or 2 .*not {rd_latency}"):
        DMA(bus_bytes=8, entry_bytes=96, rd_latency=rd_latency)


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


def test_compute_max_mode_matches_golden():
    """MATMULs overwriting, accumulating with reduce_max and adding, read back through a POST with
    multiplier 1 and shift 0 (every ACC value stays within int8, so OUT shows it whole): OUT equals golden
    and each instruction keeps the unit busy for instr_cycles. Small values of both signs check the signed
    compare; one result (4 * 128 * 128 - 60) wraps at acc_bits=16 to -60, below the ACC value it meets."""
    from emu.contract.timing import ISSUE_LATENCY, instr_cycles
    from hdl.bram import BlockRAM
    from hdl.compute import start_counts
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
        dict(op=Opcode.POST, rows=11, acc_addr=1, out_addr=3, param_addr=1, shift=0, zero_point=0,
             clamp_lo=-128, clamp_hi=127),
    ]
    instrs = [isa.make(f.pop("op"), **f) for f in (dict(p) for p in program)]
    m, cu, bufs = _compute_with_buffers(cfg)
    busy = []
    got = np.zeros_like(g.out)

    async def tb(ctx):
        for name, table in (("act", g.act), ("wgt", g.wgt)):
            for e, row in enumerate(table):
                ctx.set(bufs[name].wr_en, 1)
                ctx.set(bufs[name].wr_addr, e)
                for k, v in enumerate(row):
                    ctx.set(bufs[name].wr_data[k], int(v))
                await ctx.tick()
            ctx.set(bufs[name].wr_en, 0)
        ctx.set(bufs["param"].wr_en, 1)
        ctx.set(bufs["param"].wr_addr, 1)
        for k in range(cfg.cols):
            ctx.set(bufs["param"].wr_data[k].bias, int(g.bias[1, k]))
            ctx.set(bufs["param"].wr_data[k].mult, int(g.mult[1, k]))
        await ctx.tick()
        ctx.set(bufs["param"].wr_en, 0)
        for instr in instrs:
            post = instr.op == Opcode.POST
            for name, value in (instr.fields | start_counts(cfg, instr.fields["rows"], post=post)).items():
                if hasattr(cu, name):
                    ctx.set(getattr(cu, name), value)
            start = cu.post_start if post else cu.matmul_start
            ctx.set(start, (1 << len(start)) - 1)   # every copy of the strobe
            await ctx.tick()
            ctx.set(start, 0)
            cycles = 1
            while ctx.get(cu.post_busy if instr.op == Opcode.POST else cu.busy):
                await ctx.tick()
                cycles += 1
            busy.append(cycles)
        for e in range(cfg.out_depth):
            ctx.set(bufs["out"].rd_addr[0], e)
            await ctx.tick().repeat(BlockRAM.LATENCY)
            got[e] = [ctx.get(bufs["out"].rd_data[0][k]) for k in range(cfg.cols)]

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    for instr in instrs:
        (g._matmul if instr.op == Opcode.MATMUL else g._post)(instr)
    assert busy == [instr_cycles(i, cfg) - ISSUE_LATENCY for i in instrs]  # the unit alone: no issue register
    assert (np.abs(g.acc) < 128).all() and g.acc[2, 0] > -60
    np.testing.assert_array_equal(got, g.out)
