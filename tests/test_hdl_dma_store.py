"""hdl.dma.store.StoreProducer, the DMA's STORE beat producer and W FIFO: beats as tests/dmamodel.py's lane
model presents them, OUT entries read at rd_addr, the W beats that leave against the bytes of the rows."""
from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator

from dmamodel import drive, random_transfer

from hdl.dma.store import W_FIFO_DEPTH

FIRST_POP = 6       # cycles from a transfer's first P0 (a beat taken) to its W beat leaving, at the earliest
NAMES = ["lanes", "n", "skip", "skip_rb", "pos", "entry", "entry_p1", "s", "complete"]


def store_run(cases, bus_bytes, entry_bytes, rd_latency, rng, full):
    """Runs the STOREs `cases` one after another (each starting with `go`); returns per transfer the W beats
    (strobes, data under the strobes), their expected values, and the first pop's cycle after the first P0,
    and the cycles in which an offered beat found no credit.

    `full`: beats always offered, the W channel always ready; else gaps between beats and a W channel that
    stalls, for stretches long enough to fill the FIFO."""
    from hdl.dma.store import StoreProducer
    B = bus_bytes
    dut = StoreProducer(bus_bytes=B, entry_bytes=entry_bytes, rd_latency=rd_latency)
    images = rng.integers(0, 256, (64, entry_bytes), dtype=np.uint8)     # the OUT buffer, entry e at e % 64
    results, refused = [], [0]                        # refused: cycles a beat waited for a credit

    async def tb(ctx):
        rd_addrs = [0] * rd_latency                         # rd_addr of the last rd_latency cycles
        ctx.set(dut.xfer.store, 1)
        cycle, pending, got, first_p0, first_pop, wready = 0, 0, [], None, None, 1

        async def tick():
            nonlocal cycle, rd_addrs, pending, first_pop
            ctx.set(dut.rd_data, int.from_bytes(images[rd_addrs[0] % 64].tobytes(), "little"))
            if ctx.get(dut.w_fifo.pop):
                strb, data = ctx.get(dut.wstrb), ctx.get(dut.wdata)
                mask = sum(0xFF << (8 * j) for j in range(B) if strb >> j & 1)
                got.append((strb, data & mask))
                pending -= 1
                first_pop = cycle if first_pop is None else first_pop
            rd_addrs = rd_addrs[1:] + [ctx.get(dut.rd_addr)]
            await ctx.tick()
            cycle += 1

        for t in cases:
            rb = t.row_bytes
            got, first_p0, first_pop, want = [], None, None, []
            ctx.set(dut.bus_state.in_wdata, 0)
            ctx.set(dut.xfer.go, 1)
            await tick()
            ctx.set(dut.xfer.go, 0)
            beats = [b for span in t.beats() for b in span]
            k, i, start, wready = 0, 0, cycle, int(full)      # unless full: the W channel stalls at first
            for beat in beats:
                row = [images[(t.buf_addr + (k + j) // rb) % 64][(k + j) % rb] for j in range(beat["n"])]
                data = sum(int(byte) << (8 * (beat["skip"] + j)) for j, byte in enumerate(row))
                want.append((beat["lanes"], data))
                k += beat["n"]
            while i < len(beats) or pending or cycle < (first_p0 or cycle) + FIRST_POP + 1:
                offered = i < len(beats) and (full or rng.random() < 0.7)
                ctx.set(dut.beat.in_beat, int(offered))
                drive(ctx, dut.beat, {n: beats[i][n] for n in NAMES} if offered else
                      {"s": int(rng.integers(-600, 600)), "entry": int(rng.integers(0, 1 << 16))})
                if full or rng.random() < 0.08:
                    wready = 1 if full else int(rng.integers(0, 2))
                ctx.set(dut.wready, wready)
                ctx.set(dut.bus_state.in_wdata, 1 if full else int(rng.random() < 0.9))
                if offered and ctx.get(dut.w_fifo.credit_ok):   # P0 takes the beat
                    first_p0 = cycle if first_p0 is None else first_p0
                    i, pending = i + 1, pending + 1
                refused[0] += offered and not ctx.get(dut.w_fifo.credit_ok) and cycle > start + 1
                assert pending <= W_FIFO_DEPTH + 4          # the FIFO and the producer's 4 stages before it
                await tick()
                assert cycle < start + 100 * len(beats) + 100, "the producer hangs"
            results.append((got, want, first_pop - first_p0))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return results, refused[0]


@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize("rd_latency", [1, 2])
@pytest.mark.parametrize("bus_bytes,entry_bytes", [(4, 12), (8, 96), (16, 128), (16, 12)])
def test_w_beats_carry_the_rows(bus_bytes, entry_bytes, rd_latency, full):
    """Every W beat's strobes are the beat's lanes and its bytes under them the rows' bytes, in order, one W
    beat per beat taken; credits never let more beats in than the FIFO holds; at full rate the first W beat
    leaves FIRST_POP cycles after the first beat is taken."""
    rng = np.random.default_rng(bus_bytes * entry_bytes + rd_latency + 7 * full)
    cases = []
    while len(cases) < 10:
        t = random_transfer(rng, bus_bytes, store=1)
        if t.row_bytes <= entry_bytes:                  # every other one long enough to fill the FIFO
            cases.append(replace(t, rows=int(rng.integers(10, 40))) if len(cases) % 2 else t)
    results, refused = store_run(cases, bus_bytes, entry_bytes, rd_latency, rng, full)
    for t, (got, want, first) in zip(cases, results):
        assert got == want, t
        if full:
            assert first == FIRST_POP, t
    assert refused == 0 if full else refused > 20       # with a stalling W channel, the credits run out
