"""The activation table: the POST's last step, an elementwise function of each requantized result.

Each of the `lanes` lanes has a block RAM of 2**act_bits entries of act_bits (signed), written by the DMA (a
LOAD of Buffer.TABLE writes entry buf_addr + r of every lane at once, lane n from element n of the row) and
read at its own address: the lane's result y, taken as its act_bits two's-complement bits. So a lane holds
any function of an act_bits value, which is how the compiler maps hardswish, sigmoid, GELU, ... between a
layer's requantize and the next quantize (emu.contract.numerics.look_up states the same rule).

Pipeline, LATENCY = BlockRAM.LATENCY + 1 = 3 cycles from `y` to `out`: the entry read (2), then a register
choosing the entry (`use_table`, travelling with its row) or y itself. The register keeps the block RAM's
output route off the OUT buffer's write inputs.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hdl.bram import BlockRAM
from hdl.pipeline import delay

__all__ = ["ActivationTable"]


class ActivationTable(wiring.Component):
    LATENCY = BlockRAM.LATENCY + 1

    def __init__(self, *, lanes: int, act_bits: int):
        self._lanes, self._act_bits = lanes, act_bits
        depth = 1 << act_bits
        lane = data.ArrayLayout(signed(act_bits), lanes)
        super().__init__({
            "in_valid": In(1), "y": In(lane), "use_table": In(1),
            "wr_en": In(1), "wr_addr": In(BlockRAM.addr_bits(depth)), "wr_data": In(lane),
            "out_valid": Out(1), "out": Out(lane),
        })

    def elaborate(self, platform):
        m = Module()
        depth = 1 << self._act_bits
        use = delay(m, self.use_table, BlockRAM.LATENCY, "use_table")
        m.d.comb += self.out_valid.eq(delay(m, self.in_valid, self.LATENCY, "valid"))
        for n in range(self._lanes):
            # a LOAD's writes are registered here, as in the other buffers the DMA loads (hdl/top.py)
            m.submodules[f"lane_{n}"] = ram = BlockRAM(shape=signed(self._act_bits), depth=depth,
                                                       registered_write=True)
            y = delay(m, self.y[n], BlockRAM.LATENCY, f"y_{n}")
            out = delay(m, Mux(use, ram.rd_data[0], y), 1, f"out_{n}")
            m.d.comb += [
                ram.wr_en.eq(self.wr_en), ram.wr_addr.eq(self.wr_addr), ram.wr_data.eq(self.wr_data[n]),
                ram.rd_addr[0].eq(self.y[n].as_unsigned()),
                self.out[n].eq(out),
            ]
        return m
