"""The DMA's argument registers: the command's end of the unit.

The arguments are registered in every cycle the unit is idle, so `start` (from a far-away sequencer
flip-flop) reaches no argument enable: only the bus state machine's IDLE exit, `busy`, `error` and `go`.
A `start` while busy is ignored. `go` is cycle 1 of a transfer, the cycle after `start`.

The program preload's arguments are chosen here (`preload`), behind the sequencer's argument registers,
so that those have one source each, the issue queue's LUT RAM: its read is the sequencer's longest path.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from emu.contract.isa import INSTR_BYTES

from hdl.dma.signatures import ARGUMENTS, TARGET_INSTR, dma_command_signature, status_signature, transfer_signature

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
        # the preload: one block of prog_len instructions, each a 16-byte row, into instruction memory
        preload = {"store": 0, "target": TARGET_INSTR, "rows": cmd.prog_len, "blocks": 1, "row_bytes": INSTR_BYTES,
                   "buf_addr": 0, "ext_addr": cmd.prog_addr, "ext_stride": INSTR_BYTES, "block_stride": 0}
        assert set(preload) == set(ARGUMENTS)
        with m.If(~busy):
            m.d.sync += [getattr(xfer, name).eq(Mux(cmd.preload, preload[name], getattr(cmd, name)))
                         for name in ARGUMENTS]
        m.d.sync += xfer.go.eq(cmd.start & ~busy)
        m.d.comb += [cmd.busy.eq(busy), cmd.error.eq(self.status.error)]
        return m
