"""hdl.dma.arguments.Arguments, the DMA's argument registers: loaded while idle, held while busy, `go`."""
import numpy as np
from amaranth.sim import Simulator

from hdl.dma.signatures import ARGUMENTS


def test_arguments_registered_while_idle_and_held_while_busy():
    """Random arguments and `start`/`busy` sequences against a model: each idle cycle's arguments are the
    next cycle's registers, a busy cycle keeps them; `go` follows a `start` in an idle cycle only; the
    command's `busy` and `error` are the bus state machine's."""
    from hdl.dma.arguments import Arguments
    dut = Arguments()
    rng = np.random.default_rng(5)
    widths = {name: len(getattr(dut.cmd, name)) for name in ARGUMENTS}

    async def tb(ctx):
        held, go, gos = {name: 0 for name in ARGUMENTS}, 0, 0
        for _ in range(400):
            args = {name: int(rng.integers(0, 1 << width)) for name, width in widths.items()}
            start, busy, error = (int(rng.random() < p) for p in (0.3, 0.5, 0.5))
            for name, value in args.items():
                ctx.set(getattr(dut.cmd, name), value)
            ctx.set(dut.cmd.start, start)
            ctx.set(dut.status.busy, busy)
            ctx.set(dut.status.error, error)
            assert (ctx.get(dut.cmd.busy), ctx.get(dut.cmd.error)) == (busy, error)
            assert {name: ctx.get(getattr(dut.xfer, name)) for name in ARGUMENTS} == held
            assert ctx.get(dut.xfer.go) == go
            await ctx.tick()
            held = held if busy else args
            go = start & (1 - busy)
            gos += go
        assert gos > 50

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
