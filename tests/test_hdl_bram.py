"""hdl.bram.BlockRAM's address copies in Amaranth's simulator."""
import pytest
from amaranth.sim import Simulator


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
