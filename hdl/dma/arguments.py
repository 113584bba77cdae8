"""The DMA's argument registers: the command's end of the unit.

The arguments are registered in every cycle the unit is idle, so `start` (from a far-away sequencer
flip-flop) reaches no argument enable: only the bus state machine's IDLE exit, `busy`, `error` and `go`.
A `start` while busy is ignored. `go` is cycle 1 of a transfer, the cycle after `start`.
"""
from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.dma.signatures import ARGUMENTS, dma_command_signature, status_signature, transfer_signature

__all__ = ["Arguments"]


class Arguments(wiring.Component):
    """`cmd` (dma_command_signature, flipped): the command; `busy` and `error` go back to it from `status`
    (status_signature, from the bus state machine). `xfer` (transfer_signature): the registered arguments
    and `go`."""

    def __init__(self):
        super().__init__({"cmd": In(dma_command_signature()), "status": In(status_signature()),
                          "xfer": Out(transfer_signature())})

    def elaborate(self, platform):
        m = Module()
        cmd, xfer, busy = self.cmd, self.xfer, self.status.busy
        with m.If(~busy):
            m.d.sync += [getattr(xfer, name).eq(getattr(cmd, name)) for name in ARGUMENTS]
        m.d.sync += xfer.go.eq(cmd.start & ~busy)
        m.d.comb += [cmd.busy.eq(busy), cmd.error.eq(self.status.error)]
        return m
