"""The control/status registers: an AXI4-Lite slave implementing the emu.contract.regs map.

Addresses come from emu.contract.regs.OFFSET (word index = address[2:]); unknown addresses read 0 and ignore
writes; the response is always OKAY. One transaction at a time per direction: a write is taken when both
AW and W are valid, a read when AR is valid and no read data is waiting. Writes ignore WSTRB (32-bit
registers are written whole). STATUS bit 1 (done) and bit 2 (error) are set when a run ends and cleared by
the next start; `done` mirrors bit 1 and doubles as the interrupt line.
"""
from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from emu.contract.config import AccelConfig
from emu.contract import regs

from hdl.axi import axil_signature

__all__ = ["CSR"]


class CSR(wiring.Component):
    def __init__(self, cfg: AccelConfig):
        self._cfg = cfg
        super().__init__({
            "bus": In(axil_signature(addr_bits=regs.CSR_ADDR_BITS)),
            "start": Out(1), "prog_addr": Out(32), "prog_len": Out(32), "watchdog": Out(32),
            "running": In(1), "finished": In(1), "error_code": In(4), "error_pc": In(32),
            "cycles": In(64), "macs": In(64), "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        done, errored = Signal(), Signal()
        m.d.comb += self.done.eq(done)
        with m.If(self.finished):
            m.d.sync += [done.eq(1), errored.eq(self.error_code != 0)]
        with m.If(self.start):
            m.d.sync += [done.eq(0), errored.eq(0)]

        read_value = {
            "MAGIC": regs.MAGIC,
            "CTRL": 0,
            "STATUS": self.running * regs.STATUS_BUSY | done * regs.STATUS_DONE | errored * regs.STATUS_ERROR,
            "ERROR_CODE": self.error_code, "ERROR_PC": self.error_pc,
            "PROG_ADDR": self.prog_addr, "PROG_LEN": self.prog_len, "WATCHDOG": self.watchdog,
            "CYCLES_LO": self.cycles[:32], "CYCLES_HI": self.cycles[32:],
            "MACS_LO": self.macs[:32], "MACS_HI": self.macs[32:],
        }
        read_value.update(regs.config_registers(self._cfg))
        assert set(read_value) == {r.name for r in regs.REGISTERS}, "every register needs a read value"
        writable = {"PROG_ADDR": self.prog_addr, "PROG_LEN": self.prog_len, "WATCHDOG": self.watchdog}

        # ---- writes ----
        m.d.sync += self.start.eq(0)
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        with m.If(bus.awvalid & bus.wvalid & ~bus.bvalid):
            m.d.comb += [bus.awready.eq(1), bus.wready.eq(1)]
            m.d.sync += bus.bvalid.eq(1)
            with m.Switch(bus.awaddr[2:]):
                with m.Case(regs.OFFSET["CTRL"] // regs.REG_BYTES):
                    # a register, so the bus decode does not reach the sequencer's start logic
                    m.d.sync += self.start.eq(bus.wdata[0] & ~self.running & ~self.start)
                for name, reg in writable.items():
                    with m.Case(regs.OFFSET[name] // regs.REG_BYTES):
                        m.d.sync += reg.eq(bus.wdata)

        # ---- reads ----
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        with m.If(bus.arvalid & ~bus.rvalid):
            m.d.comb += bus.arready.eq(1)
            m.d.sync += bus.rvalid.eq(1)
            with m.Switch(bus.araddr[2:]):
                for name, value in read_value.items():
                    with m.Case(regs.OFFSET[name] // regs.REG_BYTES):
                        m.d.sync += bus.rdata.eq(value)
                with m.Default():
                    m.d.sync += bus.rdata.eq(0)
        return m
