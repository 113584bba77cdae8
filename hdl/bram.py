"""Block RAM with an output register: the one memory primitive of the design.

Every on-chip memory (instruction memory, ACT, WGT, PARAM, ACC, OUT) is a `BlockRAM`: one write port and
one or more read ports, each read taking LATENCY = 2 cycles (the address is registered in the RAM, then the
data in its output register). On ECP5 the data then leaves the block RAM 0.7 ns after the clock instead
of 5.8 ns, which leaves most of a 150 MHz period for routing; the units are built around the two
cycles.

Behaviour, on every target: the entry at rd_addr[i] presented in cycle c appears on rd_data[i] in cycle
c + 2. A write in cycle c is seen by reads presented from cycle c + 1 on. The units never read an entry in
the cycle it is written (a real dual-port RAM's result would be undefined), so no read-during-write rule is
stated. In simulation (and for non-ECP5 targets) it is an Amaranth `Memory` read port plus one register; for
ECP5 it is DP16KD blocks with REGMODE = OUTREG (hdl/ecp5.py), one copy per read port.
"""
from __future__ import annotations

from amaranth.hdl import Module, Shape, Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import ecp5
from .pipeline import delay

__all__ = ["BlockRAM"]


class BlockRAM(wiring.Component):
    LATENCY = 2
    assert LATENCY == ecp5.BLOCK_RAM_LATENCY

    def __init__(self, *, shape, depth: int, read_ports: int = 1):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth={depth!r} is not accepted: expected a positive integer")
        if not isinstance(read_ports, int) or read_ports < 1:
            raise ValueError(f"read_ports={read_ports!r} is not accepted: expected a positive integer")
        self._shape, self._depth, self._read_ports = shape, depth, read_ports
        abits = max(1, (depth - 1).bit_length())
        super().__init__({
            "rd_addr": In(abits).array(read_ports), "rd_data": Out(shape).array(read_ports),
            "wr_en": In(1), "wr_addr": In(abits), "wr_data": In(shape),
        })

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._shape).width
        for i in range(self._read_ports):
            if ecp5.is_ecp5(platform):
                ecp5.block_ram(m, width=width, depth=self._depth, wr_en=self.wr_en, wr_addr=self.wr_addr,
                               wr_data=Value.cast(self.wr_data), rd_addr=self.rd_addr[i],
                               rd_data=Value.cast(self.rd_data[i]), name=f"port{i}")
                continue
            mem = Memory(shape=self._shape, depth=self._depth, init=[])
            m.submodules[f"mem{i}"] = mem
            wr, rd = mem.write_port(), mem.read_port()
            m.d.comb += [wr.en.eq(self.wr_en), wr.addr.eq(self.wr_addr), wr.data.eq(self.wr_data),
                         rd.addr.eq(self.rd_addr[i]), self.rd_data[i].eq(delay(m, rd.data, 1, f"rd_data{i}"))]
        return m
