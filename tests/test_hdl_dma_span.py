"""hdl.dma.span.SpanSetup, the DMA's transfer constants and span set-up, against tests/dmamodel.py."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from dmamodel import Transfer, drive, random_transfer, read

# the members a consumer reads in the go_span cycle itself (BurstGenerator and LaneSequencer load the first span)
AT_GO_SPAN = ("merged", "span_now", "span_now_m1", "rows_m1", "blocks_m1", "multi_rows", "multi_blocks")


@pytest.mark.parametrize("bus_bytes,entry_bytes", [(4, 12), (8, 96), (16, 128)])
def test_span_constants_match_model(bus_bytes, entry_bytes):
    """Each transfer's arguments are set with `go` (cycle 1) and held; `go_span` is high in cycle SPAN_CYCLE
    alone, and from then on every span_signature member and the row mask equal the model's, the members read
    at go_span already in that cycle. Between transfers the arguments change, so a stale constant fails."""
    from hdl.dma.cycles import SPAN_CYCLE
    from hdl.dma.span import SpanSetup
    rng = np.random.default_rng(bus_bytes)
    B = bus_bytes
    cases = [random_transfer(rng, B, long=True) for _ in range(40)]
    # merged or not at the edges: row_bytes == B, one byte less; 1 and 2 rows (span // B below 3)
    cases += [Transfer(B, rows, 1, rb, 0, 4093, rb, 0) for rows in (1, 2, 3) for rb in (B - 1, B, B + 1, 2 * B + 1)]
    cases += [Transfer(B, 65535, 1023, 768, 65000, (1 << 32) - 1, 768, (1 << 20) - 1)]   # the widest values
    dut = SpanSetup(bus_bytes=B, entry_bytes=entry_bytes)
    names = list(cases[0].span_constants())

    async def tb(ctx):
        for t in cases:
            drive(ctx, dut.xfer, t.xfer())
            ctx.set(dut.xfer.go, 1)
            await ctx.tick()                            # cycle 1 was the go cycle
            ctx.set(dut.xfer.go, 0)
            for cycle in range(2, SPAN_CYCLE):
                assert not ctx.get(dut.span.go_span), cycle
                await ctx.tick()
            want = t.span_constants()
            assert ctx.get(dut.span.go_span)
            assert read(ctx, dut.span, AT_GO_SPAN) == {k: want[k] for k in AT_GO_SPAN}, t
            for _ in range(3):
                await ctx.tick()
                assert not ctx.get(dut.span.go_span)
                assert read(ctx, dut.span, names) == want, t
                assert ctx.get(dut.rb_mask) == t.row_mask(entry_bytes), t

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
