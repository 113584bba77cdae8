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

A wide memory spans many blocks, and one address register driving them all is a slow net. With
`addr_copies` = k > 1 each read port takes its address k times: rd_addr[i] and rd_addr_copy[i][0 .. k-2],
which the user drives from registers of its own with the same value every cycle. On ECP5 the blocks are
split into k groups (hdl.ecp5.block_ram), each addressed by one copy; elsewhere the memory is split into k
slices of adjacent bits, slice j read at copy j, so a simulation sees a copy that differs. Same latency.
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

    def __init__(self, *, shape, depth: int, read_ports: int = 1, addr_copies: int = 1):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth={depth!r} is not accepted: expected a positive integer")
        if not isinstance(read_ports, int) or read_ports < 1:
            raise ValueError(f"read_ports={read_ports!r} is not accepted: expected a positive integer")
        width = Shape.cast(shape).width
        if not isinstance(addr_copies, int) or not 1 <= addr_copies <= width:
            raise ValueError(f"addr_copies={addr_copies!r} is not accepted: expected an integer from 1 to the "
                             f"width, {width}")
        self._shape, self._depth, self._read_ports, self._addr_copies = shape, depth, read_ports, addr_copies
        abits = max(1, (depth - 1).bit_length())
        members = {
            "rd_addr": In(abits).array(read_ports), "rd_data": Out(shape).array(read_ports),
            "wr_en": In(1), "wr_addr": In(abits), "wr_data": In(shape),
        }
        if addr_copies > 1:
            members["rd_addr_copy"] = In(abits).array(read_ports, addr_copies - 1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._shape).width
        k = self._addr_copies
        for i in range(self._read_ports):
            rd_addrs = [self.rd_addr[i]] + [self.rd_addr_copy[i][j] for j in range(k - 1)]
            if ecp5.is_ecp5(platform):
                ecp5.block_ram(m, width=width, depth=self._depth, wr_en=self.wr_en, wr_addr=self.wr_addr,
                               wr_data=Value.cast(self.wr_data), rd_addr=rd_addrs if k > 1 else rd_addrs[0],
                               rd_data=Value.cast(self.rd_data[i]), name=f"port{i}")
                continue
            if k == 1:
                mem = Memory(shape=self._shape, depth=self._depth, init=[])
                m.submodules[f"mem{i}"] = mem
                wr, rd = mem.write_port(), mem.read_port()
                m.d.comb += [wr.en.eq(self.wr_en), wr.addr.eq(self.wr_addr), wr.data.eq(self.wr_data),
                             rd.addr.eq(self.rd_addr[i]), self.rd_data[i].eq(delay(m, rd.data, 1, f"rd_data{i}"))]
                continue
            wr_data, rd_data = Value.cast(self.wr_data), Value.cast(self.rd_data[i])
            for j, addr in enumerate(rd_addrs):
                lo, hi = j * width // k, (j + 1) * width // k
                mem = Memory(shape=hi - lo, depth=self._depth, init=[])
                m.submodules[f"mem{i}_{j}"] = mem
                wr, rd = mem.write_port(), mem.read_port()
                m.d.comb += [wr.en.eq(self.wr_en), wr.addr.eq(self.wr_addr), wr.data.eq(wr_data[lo:hi]),
                             rd.addr.eq(addr), rd_data[lo:hi].eq(delay(m, rd.data, 1, f"rd_data{i}_{j}"))]
        return m
