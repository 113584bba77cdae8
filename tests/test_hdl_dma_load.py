"""hdl.dma.load.LoadAssembly, the DMA's LOAD rotation and entry assembly: R beats as tests/dmamodel.py's lane
model presents them, the entries written against the bytes of the rows, zero past row_bytes."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from dmamodel import drive, random_transfer

from hdl.dma.cycles import LOAD_DRAIN_MIN


def transfers(rng, bus_bytes, entry_bytes, count):
    """Random LOADs whose rows fit an entry, long rows first, so that a stale byte past a shorter row shows."""
    out = []
    while len(out) < count:
        t = random_transfer(rng, bus_bytes)
        if t.row_bytes <= entry_bytes:
            out.append(t)
    return sorted(out, key=lambda t: -t.row_bytes)[:2] + out[2:]


@pytest.mark.parametrize("bus_bytes,entry_bytes", [(4, 12), (8, 40), (8, 96), (16, 12), (16, 128)])
def test_entries_assembled_from_beats(bus_bytes, entry_bytes):
    """Transfers one after another (each starting with `go`); beats with random gaps, junk in the lanes a beat
    does not carry and in the beat fields between beats. Each entry is written once, in order, LOAD_DRAIN_MIN
    cycles after the beat that completes it, with its row's bytes and zeros past row_bytes."""
    from hdl.dma.load import LoadAssembly
    rng = np.random.default_rng(bus_bytes * entry_bytes)
    B = bus_bytes
    dut = LoadAssembly(bus_bytes=B, entry_bytes=entry_bytes)
    cases = transfers(rng, B, entry_bytes, 14)
    writes, expected = [], []
    names = ["lanes", "n", "skip", "skip_rb", "pos", "entry", "entry_p1", "s", "complete"]

    def junk():
        return {"n": int(rng.integers(0, B + 1)), "skip": int(rng.integers(0, B)),
                "pos": int(rng.integers(0, 1024)), "s": int(rng.integers(-600, 600)),
                "complete": int(rng.integers(0, 2)), "entry": int(rng.integers(0, 1 << 16))}

    async def tb(ctx):
        ctx.set(dut.bus_state.in_rdata, 1)
        cycle = 0

        async def tick():
            nonlocal cycle
            if ctx.get(dut.wr_en):
                writes.append((cycle, ctx.get(dut.wr_addr), ctx.get(dut.wr_data)))
            await ctx.tick()
            cycle += 1

        for t in cases:
            rb = t.row_bytes
            stream = rng.integers(0, 256, rb * t.rows * t.blocks, dtype=np.uint8)
            for e in range(t.rows * t.blocks):
                row = stream[e * rb:(e + 1) * rb].tobytes() + bytes(entry_bytes - rb)
                expected.append((t.buf_addr + e, int.from_bytes(row, "little")))
            ctx.set(dut.rb_mask, t.row_mask(entry_bytes))
            ctx.set(dut.xfer.go, 1)
            await tick()
            ctx.set(dut.xfer.go, 0)
            for _ in range(3):
                await tick()
            k, done = 0, []
            for beat in (b for span in t.beats() for b in span):
                while rng.random() < 0.3:                   # no R beat this cycle
                    ctx.set(dut.rvalid, 0)
                    ctx.set(dut.rdata, int(rng.integers(0, 1 << 62)))
                    drive(ctx, dut.beat, junk())
                    await tick()
                lanes = rng.integers(0, 256, B, dtype=np.uint8)
                lanes[beat["skip"]:beat["skip"] + beat["n"]] = stream[k:k + beat["n"]]
                k += beat["n"]
                drive(ctx, dut.beat, {name: beat[name] for name in names})
                ctx.set(dut.rvalid, 1)
                ctx.set(dut.rdata, int.from_bytes(lanes.tobytes(), "little"))
                if beat["complete"]:
                    done.append(cycle + LOAD_DRAIN_MIN)
                await tick()
            ctx.set(dut.rvalid, 0)
            for _ in range(LOAD_DRAIN_MIN + 1):
                await tick()
            assert [c for c, _, _ in writes[-len(done):]] == done, t

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert [(addr, data) for _, addr, data in writes] == expected
