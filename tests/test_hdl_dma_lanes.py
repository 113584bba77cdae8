"""hdl.dma.lanes.LaneSequencer, the DMA's beat-by-beat walk of the spans, against tests/dmamodel.py: every
beat's lanes and entry bytes, and the cycles it takes per span."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.dma.cycles import SPAN_CYCLE

from dmamodel import Transfer, drive, random_transfer, read

SET_UP = 3      # a span's first beat comes 3 cycles after go_span or after the last beat of the span before


def lane_run(t: Transfer, rng, mode: str):
    """The beats LaneSequencer presents for `t`, each with the cycle it moves in (counted from go_span: the
    arguments and constants are set SPAN_CYCLE - 1 cycles before it, as in a transfer).

    mode "full": a STORE whose producer takes a beat every cycle; "store": credits come and go at random
    (credit_ok_n a cycle ahead of credit_ok, as the W FIFO's register has it); "load": R beats arrive at
    random, only while a beat is presented (the bus state machine's timing)."""
    from hdl.dma.lanes import LaneSequencer
    dut = LaneSequencer(bus_bytes=t.bus_bytes)
    names = list(t.beats()[0][0])
    total = sum(map(len, t.beats()))
    got = []

    async def tb(ctx):
        drive(ctx, dut.xfer, t.xfer())
        drive(ctx, dut.span, t.span_constants())
        load = mode == "load"
        ctx.set(dut.bus_state.in_rdata, int(load))
        ctx.set(dut.bus_state.in_rdata_n, int(load))
        credit = mode == "full"
        ctx.set(dut.w_fifo.credit_ok, int(credit))
        ctx.set(dut.w_fifo.credit_ok_n, int(credit))
        for _ in range(SPAN_CYCLE - 1):                   # the arguments from cycle 0, as SpanSetup's
            await ctx.tick()
        ctx.set(dut.span.go_span, 1)
        await ctx.tick()
        ctx.set(dut.span.go_span, 0)
        cycle = 1                                           # after the last beat, 8 cycles more: no beat may follow
        while not (len(got) == total and cycle > got[-1][0] + 8) and cycle < 20 * total + 100:
            if mode == "store":
                ctx.set(dut.w_fifo.credit_ok, int(credit))
                credit = rng.random() < 0.6
                ctx.set(dut.w_fifo.credit_ok_n, int(credit))
            in_beat = ctx.get(dut.beat.in_beat)
            rvalid = load and in_beat and rng.random() < 0.6
            ctx.set(dut.rvalid, int(rvalid))
            if in_beat and (rvalid or ctx.get(dut.w_fifo.credit_ok)):
                got.append((cycle, read(ctx, dut.beat, names)))
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got


@pytest.mark.parametrize("mode", ["full", "store", "load"])
@pytest.mark.parametrize("bus_bytes", [4, 8, 16])
def test_beats_match_model(bus_bytes, mode):
    """Every beat's lanes, bytes and entry bytes equal the model's, and no beat follows the last; at full rate
    a span's beats come back to back, its first SET_UP cycles after go_span or after the span before."""
    rng = np.random.default_rng(bus_bytes + {"full": 0, "store": 100, "load": 200}[mode])
    B = bus_bytes
    cases = [Transfer(B, 3, 4, 5, 2, 4096 - 23, 7, 9),             # rows of their own, blocks overlap
             Transfer(B, 3, 2, 21, 4, 4003, 21, 100),              # merged, (rows * row_bytes) % B != row_bytes % B
             Transfer(B, 1, 3, 1, 0, 13, 16, 40),                   # one-byte rows
             Transfer(B, 2, 2, B, 7, 3 * B, B, 5 * B)]              # merged, aligned, two beats a span
    cases += [random_transfer(rng, B) for _ in range(16)]
    for t in cases:
        got = lane_run(t, rng, mode)
        want = t.beats()
        assert [beat for _, beat in got] == [beat for span in want for beat in span], t
        if mode == "full":
            cycles, i, start = [c for c, _ in got], 0, 0
            for span in want:
                first = start + SET_UP
                assert cycles[i:i + len(span)] == list(range(first, first + len(span))), t
                i, start = i + len(span), first + len(span) - 1
