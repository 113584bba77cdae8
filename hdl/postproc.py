"""The post-processing (requantization) unit: exactly emu.numerics.requantize, then wrap to act_bits.

Per lane, all signed two's complement::

    v = acc + bias                 acc: acc_bits, bias: 32 bits -> 33 bits
    p = v * mult                   mult: 32 bits; the product wraps to 64 bits (numpy int64 does too)
    r = (p + 2**(shift-1)) >> shift   for shift >= 1 (round half up, arithmetic shift; the add wraps to 64)
    r = p                          for shift == 0
    y = min(max(r + zero_point, clamp_lo), clamp_hi)   (64-bit wrapping add, then clip like np.clip)
    out = y wrapped to act_bits

Pipeline: stage 1 registers the 64-bit products; stage 2 (combinational) rounds, shifts and clamps.
`out_valid`/`out` follow `in_valid`/`acc` by LATENCY = 1 cycle; the other inputs must be held meanwhile.
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .buffers import param_layout

__all__ = ["PostProc"]


class PostProc(wiring.Component):
    LATENCY = 1

    def __init__(self, *, lanes: int, acc_bits: int, act_bits: int):
        self._lanes, self._acc_bits, self._act_bits = lanes, acc_bits, act_bits
        super().__init__({
            "in_valid": In(1),
            "acc": In(data.ArrayLayout(signed(acc_bits), lanes)),
            "param": In(data.ArrayLayout(param_layout, lanes)),
            "shift": In(6), "zero_point": In(signed(8)), "clamp_lo": In(signed(8)), "clamp_hi": In(signed(8)),
            "out_valid": Out(1),
            "out": Out(data.ArrayLayout(signed(act_bits), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.out_valid.eq(self.in_valid)
        for n in range(self._lanes):
            v = Signal(signed(33), name=f"v_{n}")
            prod = Signal(signed(64), name=f"prod_{n}")  # wraps to 64 bits, as numpy's int64 product
            m.d.comb += v.eq(self.acc[n] + self.param[n].bias)
            m.d.sync += prod.eq(v * self.param[n].mult)

            half = Signal(signed(64), name=f"half_{n}")
            rounded = Signal(signed(64), name=f"rounded_{n}")
            shifted = Signal(signed(64), name=f"shifted_{n}")
            biased = Signal(signed(64), name=f"biased_{n}")
            lo_clip = Signal(signed(64), name=f"lo_clip_{n}")
            y = Signal(signed(64), name=f"y_{n}")
            m.d.comb += [
                half.eq(Mux(self.shift == 0, 0, Const(1, 64) << (self.shift - 1)[:6])),
                rounded.eq(prod + half),
                shifted.eq(rounded >> self.shift),
                biased.eq(shifted + self.zero_point),
                lo_clip.eq(Mux(biased < self.clamp_lo, self.clamp_lo, biased)),
                y.eq(Mux(lo_clip > self.clamp_hi, self.clamp_hi, lo_clip)),
                self.out[n].eq(y),
            ]
        return m
