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
ECP5 it is DP16KD blocks with REGMODE = OUTREG (hdl/fpga/ecp5.py), one copy per read port: a family's
`Family.block_ram`, where it has one.

A wide memory is many DP16KD blocks side by side (ACC at 8x8: 15 a port, PARAM 22), and a DP16KD's address
and enable inputs have a large setup time, so one register driving them all cannot be near them all. For
the compute unit's streaming accesses the block RAM therefore holds the registers itself, one copy beside
each block on ECP5 (one register elsewhere), with no logic between a copy and its block:

* `counted_reads`: each read port is addressed by a counter, `rd_count[i]` (`counter_signature`) in place
  of `rd_addr[i]`. A `load` presented in cycle c sets the address to `base` (unsigned), else a `step` adds
  one (wrapping); the address so set is read in cycle c + 1, its entry on rd_data[i] in cycle c + 3. Each
  copy counts for itself, so the copies need only `load`, `base` and `step` from afar.
* `registered_write`: wr_en, wr_addr and wr_data presented in cycle c write in cycle c + 1 (so reads
  presented from cycle c + 2 see it); wr_en is cleared by reset.
* `addr_copies` = k > 1 (for a reader that keeps its own address register, like the sequencer's fetch):
  each read port takes its address k times, rd_addr[i] and rd_addr_copy[i][0 .. k-2], which the reader
  drives from registers of its own with the same value every cycle. On ECP5 the blocks are split into k
  groups of adjacent blocks, each addressed by one copy; elsewhere the memory is split into k slices of
  adjacent bits, slice j read at copy j, so a simulation sees a copy that differs. Same latency.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hdl.fpga import family_of
from hdl.pipeline import delay

__all__ = ["BlockRAM", "counter_signature"]


def counter_signature(addr_bits: int) -> wiring.Signature:
    """A read address counter, from the reader's side: `load` (1 bit) sets it to `base` (addr_bits, unsigned),
    else `step` (1 bit) adds one."""
    return wiring.Signature({"load": Out(1), "base": Out(addr_bits), "step": Out(1)})


class BlockRAM(wiring.Component):
    LATENCY = 2

    @staticmethod
    def addr_bits(depth: int) -> int:
        """Width of the address of a `depth`-entry block RAM."""
        return max(1, (depth - 1).bit_length())

    def __init__(self, *, shape, depth: int, read_ports: int = 1, counted_reads: bool = False,
                 registered_write: bool = False, addr_copies: int = 1):
        self._MustUse__silence = True   # until the arguments pass: a refused RAM warns of no unused object
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth={depth!r} is not accepted: expected a positive integer")
        if not isinstance(read_ports, int) or read_ports < 1:
            raise ValueError(f"read_ports={read_ports!r} is not accepted: expected a positive integer")
        width = Shape.cast(shape).width
        if not isinstance(addr_copies, int) or not 1 <= addr_copies <= width or (counted_reads and addr_copies > 1):
            raise ValueError(f"addr_copies={addr_copies!r} is not accepted: expected an integer from 1 to the "
                             f"width, {width} (1 with counted_reads)")
        self._MustUse__silence = False
        self._shape, self._depth, self._read_ports, self._addr_copies = shape, depth, read_ports, addr_copies
        self._counted_reads, self._registered_write = counted_reads, registered_write
        abits = self.addr_bits(depth)
        read = ({"rd_count": In(counter_signature(abits)).array(read_ports)} if counted_reads else
                {"rd_addr": In(abits).array(read_ports)})
        if addr_copies > 1:
            read["rd_addr_copy"] = In(abits).array(read_ports, addr_copies - 1)
        super().__init__({
            **read, "rd_data": Out(shape).array(read_ports),
            "wr_en": In(1), "wr_addr": In(abits), "wr_data": In(shape),
        })

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._shape).width
        family = family_of(platform)
        hard = family.has_block_ram
        if hard and family.block_ram_latency != self.LATENCY:
            raise ValueError(f"{family!r}'s block RAM reads in {family.block_ram_latency} cycles, not "
                             f"BlockRAM.LATENCY = {self.LATENCY}")
        copies = family.block_ram_blocks(width, self._depth) if hard else 1
        apart = hard and family.has_replicas      # the copies in flip-flops synthesis keeps apart

        def counters(i):
            ctl, addrs = self.rd_count[i], []
            for c in range(copies):
                addr = Signal.like(ctl.base, name=f"rd_addr{i}_{c}")
                nxt = Mux(ctl.load, ctl.base, addr + 1)
                if apart:    # flip-flops of its own: Yosys merges copies with the same inputs into one
                    family.flops(m, addr, nxt, en=ctl.load | ctl.step, name=f"rd_addr{i}_{c}")
                else:
                    with m.If(ctl.load | ctl.step):
                        m.d.sync += addr.eq(nxt)
                addrs.append(addr)
            return addrs

        wr_en, wr_addr, wr_data = self.wr_en, self.wr_addr, Value.cast(self.wr_data)
        if self._registered_write:
            wr_data = delay(m, wr_data, 1, "wr_data")
            if apart:   # copies Yosys keeps, though their inputs are the same
                wr_en = [family.replica(m, self.wr_en, name=f"wr_en_{c}", reset=True) for c in range(copies)]
                wr_addr = [family.replica(m, self.wr_addr, name=f"wr_addr_{c}") for c in range(copies)]
            else:
                wr_en, wr_addr = delay(m, self.wr_en, 1, "wr_en"), delay(m, self.wr_addr, 1, "wr_addr")
        k = self._addr_copies
        for i in range(self._read_ports):
            if self._counted_reads:
                rd_addrs = counters(i)
            else:
                rd_addrs = [self.rd_addr[i]] + [self.rd_addr_copy[i][j] for j in range(k - 1)]
            if hard:
                family.block_ram(m, width=width, depth=self._depth, wr_en=wr_en, wr_addr=wr_addr, wr_data=wr_data,
                                 rd_addr=rd_addrs, rd_data=Value.cast(self.rd_data[i]), name=f"port{i}")
                continue
            # k slices of adjacent bits, slice j read at address copy j (one slice without copies)
            rd_data = Value.cast(self.rd_data[i])
            for j, addr in enumerate(rd_addrs):
                lo, hi = j * width // k, (j + 1) * width // k
                m.submodules[f"mem{i}_{j}"] = mem = Memory(shape=hi - lo, depth=self._depth, init=[])
                wr, rd = mem.write_port(), mem.read_port()
                m.d.comb += [wr.en.eq(wr_en), wr.addr.eq(wr_addr), wr.data.eq(wr_data[lo:hi]), rd.addr.eq(addr),
                             rd_data[lo:hi].eq(delay(m, rd.data, 1, f"rd_data{i}_{j}"))]
        return m
