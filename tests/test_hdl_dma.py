"""hdl.dma.DMA, the 3-D LOAD/STORE engine, in Amaranth's simulator against a fixed-latency AXI memory and golden."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from emu.contract import isa
from emu.contract.config import AccelConfig
from emu.emulator.golden import Golden
from emu.contract.isa import Buffer, Opcode


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
            ctx.set(getattr(dut.cmd, name), getattr(instr, name))
        ctx.set(dut.cmd.store, instr.op == Opcode.STORE)
        ctx.set(dut.cmd.target, instr.buf)
        ctx.set(dut.cmd.row_bytes, row_bytes)
        ctx.set(dut.cmd.start, 1)
        rd_addrs = [0] * (rd_latency - 1) + [ctx.get(dut.rd_addr)]  # rd_addr of the last rd_latency cycles
        await ctx.tick()
        ctx.set(dut.cmd.start, 0)
        cycle = 1
        while True:
            slave.drive(ctx, dut.bus)
            image = out_images[rd_addrs[0] % 64]                       # rd_data lags rd_addr rd_latency cycles
            ctx.set(dut.rd_data, int.from_bytes(image.tobytes(), "little"))
            if not ctx.get(dut.cmd.busy):
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
        assert not ctx.get(dut.cmd.error)

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
