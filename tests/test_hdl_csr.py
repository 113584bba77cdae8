"""hdl.csr.CSR, the AXI4-Lite register block, in Amaranth's simulator against the map in emu.contract.regs."""
from amaranth.sim import Simulator

from emu.contract import regs
from emu.contract.config import AccelConfig

from hdl.csr import CSR

CFG = AccelConfig(rows=3, cols=5, act_bits=4, weight_bits=4)


async def axil_write(ctx, bus, addr: int, value: int) -> None:
    ctx.set(bus.awaddr, addr)
    ctx.set(bus.wdata, value)
    ctx.set(bus.awvalid, 1)
    ctx.set(bus.wvalid, 1)
    ctx.set(bus.bready, 1)
    await ctx.tick().until(bus.awready & bus.wready)
    ctx.set(bus.awvalid, 0)
    ctx.set(bus.wvalid, 0)
    await ctx.tick().until(bus.bvalid)
    assert ctx.get(bus.bresp) == 0
    await ctx.tick()
    ctx.set(bus.bready, 0)


async def axil_read(ctx, bus, addr: int) -> int:
    ctx.set(bus.araddr, addr)
    ctx.set(bus.arvalid, 1)
    ctx.set(bus.rready, 1)
    await ctx.tick().until(bus.arready)
    ctx.set(bus.arvalid, 0)
    await ctx.tick().until(bus.rvalid)
    value, resp = ctx.get(bus.rdata), ctx.get(bus.rresp)
    assert resp == 0
    await ctx.tick()
    ctx.set(bus.rready, 0)
    return value


def simulate(testbench, cfg: AccelConfig = CFG) -> None:
    dut = CSR(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def tb(ctx):
        await testbench(ctx, dut)
    sim.add_testbench(tb)
    sim.run()


def test_read_only_registers_read_the_map():
    seen = {}

    async def tb(ctx, dut):
        ctx.set(dut.cycles, 0x1234_5678_9ABC_DEF0)
        ctx.set(dut.macs, 0x0FED_CBA9_8765_4321)
        ctx.set(dut.error_code, 5)
        ctx.set(dut.error_pc, 77)
        for r in regs.REGISTERS:
            seen[r.name] = await axil_read(ctx, dut.bus, regs.OFFSET[r.name])
        seen["unmapped"] = await axil_read(ctx, dut.bus, len(regs.REGISTERS) * regs.REG_BYTES)
    simulate(tb)
    assert seen["MAGIC"] == regs.MAGIC
    assert {k: seen[k] for k in regs.config_registers(CFG)} == regs.config_registers(CFG)
    assert (seen["CYCLES_HI"] << 32 | seen["CYCLES_LO"]) == 0x1234_5678_9ABC_DEF0
    assert (seen["MACS_HI"] << 32 | seen["MACS_LO"]) == 0x0FED_CBA9_8765_4321
    assert (seen["ERROR_CODE"], seen["ERROR_PC"], seen["CTRL"], seen["unmapped"]) == (5, 77, 0, 0)


def test_writable_registers_read_back_and_read_only_ones_ignore_writes():
    seen = {}

    async def tb(ctx, dut):
        for i, r in enumerate(regs.REGISTERS):
            if r.name != "CTRL":
                await axil_write(ctx, dut.bus, regs.OFFSET[r.name], 0xA5A5_0000 + i)
        for r in regs.REGISTERS:
            seen[r.name] = await axil_read(ctx, dut.bus, regs.OFFSET[r.name])
        seen["ports"] = (ctx.get(dut.prog_addr), ctx.get(dut.prog_len), ctx.get(dut.watchdog))
    simulate(tb)
    index = {r.name: i for i, r in enumerate(regs.REGISTERS)}
    for r in regs.REGISTERS:
        if r.name == "CTRL":
            continue
        if r.access == "rw":
            assert seen[r.name] == 0xA5A5_0000 + index[r.name], r.name
        else:
            assert seen[r.name] != 0xA5A5_0000 + index[r.name], r.name
    assert seen["ports"] == tuple(0xA5A5_0000 + index[n] for n in ("PROG_ADDR", "PROG_LEN", "WATCHDOG"))


def test_start_is_one_pulse_and_ignored_while_running():
    starts, pulses = [0], []

    dut = CSR(CFG)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def monitor(ctx):   # counts every cycle `start` is high, also while a write is in flight
        async for _, _, start in ctx.tick().sample(dut.start):
            starts[0] += start

    async def testbench(ctx):
        for running, value in ((0, 1), (1, 1), (0, 0)):   # idle: starts; busy: ignored; bit 0 clear: no start
            ctx.set(dut.running, running)
            before = starts[0]
            await axil_write(ctx, dut.bus, regs.OFFSET["CTRL"], value)
            await ctx.tick().repeat(5)
            pulses.append(starts[0] - before)
    sim.add_process(monitor)
    sim.add_testbench(testbench)
    sim.run_until(1e-5)
    assert pulses == [1, 0, 0]


def test_status_done_and_error_set_at_the_end_and_clear_on_start():
    status = []

    async def tb(ctx, dut):
        read = lambda: axil_read(ctx, dut.bus, regs.OFFSET["STATUS"])  # noqa: E731
        ctx.set(dut.running, 1)
        status.append((await read(), ctx.get(dut.done)))
        ctx.set(dut.running, 0)
        ctx.set(dut.error_code, 3)
        ctx.set(dut.finished, 1)
        await ctx.tick()
        ctx.set(dut.finished, 0)
        status.append((await read(), ctx.get(dut.done)))
        await axil_write(ctx, dut.bus, regs.OFFSET["CTRL"], 1)
        await ctx.tick()
        ctx.set(dut.error_code, 0)
        status.append((await read(), ctx.get(dut.done)))
        ctx.set(dut.finished, 1)
        await ctx.tick()
        ctx.set(dut.finished, 0)
        status.append((await read(), ctx.get(dut.done)))
    simulate(tb)
    assert status == [(regs.STATUS_BUSY, 0), (regs.STATUS_DONE | regs.STATUS_ERROR, 1), (0, 0),
                      (regs.STATUS_DONE, 1)]
