"""hdl.dma.bursts.BurstGenerator, the DMA's burst address generator, driven as the bus state machine drives
it (at its fastest and with random stalls) and checked against emu.contract.timing.bursts of the spans."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.dma.cycles import SPAN_CYCLE

from dmamodel import Transfer, drive, random_transfer

BOUNDARY, MAX_BEATS = 4096, 256


def edge_cases(B):
    """Spans that end exactly at a 4 KiB boundary, are exactly 256 beats, or cross both limits."""
    return [
        Transfer(B, 1, 1, 768, 0, 4096 - 768, 768, 0),                      # ends at the boundary
        Transfer(B, 16, 1, 16 * B, 0, 4096 * 3, 16 * B, 0),                 # 256 beats, aligned
        Transfer(B, 16, 1, 16 * B, 0, 4096 * 3 + 1, 16 * B, 0),             # 256 beats and one byte more
        Transfer(B, 23, 1, 89, 0, 6145, 89, 0),                             # tests/test_hdl_dma.py's long span
        Transfer(B, 50, 2, 700, 0, 4096 - 3, 700, 4096 * 9 + 5),            # 35000 bytes: 256-beat and 4 KiB cuts
        Transfer(B, 3, 4, 5, 2, 4096 - 23, 7, 9),                           # rows of their own, blocks overlap
    ]


def burst_run(t: Transfer, rng, stall: bool):
    """The bursts BurstGenerator puts out for `t` (aligned address, beats) and `final` at each burst's end.

    In the role of the bus state machine: go_span, then ADDR 3 cycles later (the fastest LOAD); each address
    is accepted on ready (random when `stall`, else at once); `final` is read 2 cycles after the acceptance,
    the earliest burst end, or later when `stall`, and the next ADDR follows."""
    from hdl.dma.bursts import BurstGenerator
    B = t.bus_bytes
    dut = BurstGenerator(bus_bytes=B)
    got, finals = [], []
    ready = dut.awready if t.store else dut.arready

    async def tb(ctx):
        drive(ctx, dut.xfer, t.xfer())
        drive(ctx, dut.span, t.span_constants())
        for _ in range(SPAN_CYCLE - 1):                   # the arguments from cycle 0, as SpanSetup's
            await ctx.tick()
        ctx.set(dut.span.go_span, 1)
        await ctx.tick()
        ctx.set(dut.span.go_span, 0)
        for _ in range(1 + (rng.integers(0, 3) if stall else 0)):
            await ctx.tick()
        while len(got) <= len(t.bursts()):
            ctx.set(dut.bus_state.in_addr_n, 1)             # next cycle: ADDR
            await ctx.tick()
            while True:                                     # ADDR
                accepted = not stall or rng.random() < 0.6
                ctx.set(ready, int(accepted))
                ctx.set(dut.bus_state.in_addr_n, int(not accepted))
                if accepted:
                    got.append((ctx.get(dut.burst.addr), ctx.get(dut.burst.len) + 1))
                    assert ctx.get(dut.burst.size) == B.bit_length() - 1 and ctx.get(dut.burst.burst) == 1
                await ctx.tick()
                ctx.set(ready, int(stall and rng.random() < 0.5))   # ready outside ADDR is not an acceptance
                if accepted:
                    break
            for _ in range(1 + (rng.integers(0, 4) if stall else 0)):   # DATA (and RESP)
                await ctx.tick()
            finals.append(ctx.get(dut.burst.final))
            if finals[-1]:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got, finals


@pytest.mark.parametrize("stall", [False, True])
@pytest.mark.parametrize("bus_bytes", [4, 8, 16])
def test_bursts_cover_the_spans_within_the_limits(bus_bytes, stall):
    """The bursts are timing.bursts of every span in order, none crosses 4 KiB or exceeds 256 beats, each
    span's bursts are contiguous from its first aligned word to the word of its last byte, and `final` is
    set at the last burst's end and at no earlier one."""
    rng = np.random.default_rng(bus_bytes + 100 * stall)
    B = bus_bytes
    cases = edge_cases(B) + [random_transfer(rng, B, store=int(rng.integers(0, 2)), long=True) for _ in range(25)]
    for t in cases:
        got, finals = burst_run(t, rng, stall)
        assert got == t.bursts(), t
        assert finals == [0] * (len(got) - 1) + [1], t
        for addr, beats in got:
            assert addr % B == 0 and 1 <= beats <= MAX_BEATS
            assert addr // BOUNDARY == (addr + beats * B - 1) // BOUNDARY, (t, addr, beats)
        i = 0
        for addr, nbytes in t.spans():
            at = addr - addr % B
            while at < addr + nbytes:
                assert got[i][0] == at, (t, addr, nbytes)
                at, i = at + got[i][1] * B, i + 1
            assert at - (addr + nbytes) < B
        assert i == len(got)
