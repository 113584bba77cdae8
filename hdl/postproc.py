"""The post-processing (requantization) unit: exactly emu.numerics.requantize, then wrap to act_bits.

Per lane, all signed two's complement::

    p = acc * mult + bias          acc: acc_bits, mult: 32 bits, bias: 64 bits; wraps to 64 bits (as numpy int64)
    r = (p + 2**(shift-1)) >> shift   for shift >= 1 (round half up, arithmetic shift; the add wraps to 64)
    r = p                          for shift == 0
    y = min(max(r + zero_point, clamp_lo), clamp_hi)   (64-bit wrapping add, then clip like np.clip)
    out = y wrapped to act_bits

The multiplier uses no hard DSP block: it is a radix-4 Booth multiplier in logic, built here from muxes and
adders (no `*` for synthesis to map), so the array keeps every DSP. Booth digit i (i = 0..15) of `mult` is
d_i = -2 m[2i+1] + m[2i] + m[2i-1] (m[-1] = 0), so acc * mult = sum_i d_i * v * 4**i (mod 2**64). Each partial product
is written as (x_i XOR neg_i) << 2i with x_i in {0, v, 2v}, and the +1 that completes each negation is
gathered into one correction word (bit 2i = neg_i): 17 terms summed by a tree of registered 64-bit adders.

Pipeline, one register stage per cycle, LATENCY = 12 cycles from `acc` to `out` (each stage holds at
most one 64-bit carry chain, the FPGA critical path of the unit)::

    1  acc, bias, mult captured          9   r0 = p + (bias + 2**(shift-1))
    2  v = acc; bias + 2**(shift-1)      10  r = r0 >> shift
    3  Booth partial products            11  b = r + zero_point
    4..8  adder tree 17 -> 9 -> 5 -> 3 -> 2 -> 1 = p = acc * mult
    12 y = clip(b, clamp_lo, clamp_hi) wrapped to act_bits

`out_valid`/`out` follow `in_valid` and all other inputs by LATENCY cycles: the controls (`param`, `shift`,
`zero_point`, `clamp_lo`, `clamp_hi`) travel down the pipeline with their row, so any input may change
every cycle.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .buffers import param_layout
from .pipeline import delay

__all__ = ["PostProc", "booth_terms"]

PRODUCT_BITS = 64


def booth_terms(m: Module, v, mult, *, name: str) -> list[Signal]:
    """Radix-4 Booth partial products of the signed `v` * `mult` (`mult` signed, even width), registered,
    plus the negation correction word: terms whose 64-bit wrapping sum is v * mult mod 2**64."""
    digits = len(mult) // 2
    terms = []
    correction = []
    for i in range(digits):
        b0 = mult[2 * i - 1] if i > 0 else Const(0, 1)
        b1, b2 = mult[2 * i], mult[2 * i + 1]
        one = b1 ^ b0
        two = (b2 & ~b1 & ~b0) | (~b2 & b1 & b0)
        width = PRODUCT_BITS - 2 * i
        x = Signal(signed(len(v) + 1), name=f"{name}_x{i}")
        m.d.comb += x.eq(Mux(one, v, Mux(two, v << 1, 0)))
        pp = Signal(signed(width), name=f"{name}_pp{i}")
        m.d.sync += pp.eq(x ^ b2.replicate(width))
        terms.append(Cat(Const(0, 2 * i), pp).as_signed() if i else pp)
        correction += [b2, Const(0, 1)]
    corr = Signal(PRODUCT_BITS, name=f"{name}_corr")
    m.d.sync += corr.eq(Cat(*correction))
    return terms + [corr]


def adder_tree(m: Module, terms: list, *, name: str) -> Signal:
    """Sum of `terms` wrapped to PRODUCT_BITS, one register per level of pairwise adds."""
    level = 0
    while len(terms) > 1:
        nxt = []
        for j in range(0, len(terms) - 1, 2):
            s = Signal(signed(PRODUCT_BITS), name=f"{name}_l{level}_{j // 2}")
            m.d.sync += s.eq(terms[j] + terms[j + 1])
            nxt.append(s)
        if len(terms) % 2:
            s = Signal(signed(PRODUCT_BITS), name=f"{name}_l{level}_{len(terms) // 2}")
            m.d.sync += s.eq(terms[-1])
            nxt.append(s)
        terms = nxt
        level += 1
    return terms[0]


class PostProc(wiring.Component):
    LATENCY = 12

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
        m.d.comb += self.out_valid.eq(delay(m, self.in_valid, self.LATENCY, "valid"))

        # The per-row controls travel down the pipeline with the data, so every input may change every
        # cycle; each arrives in the cycle before the stage register that uses it.
        half = Signal(signed(PRODUCT_BITS))    # 2**(shift-1), 0 for shift 0
        m.d.sync += half.eq(Mux(self.shift == 0, 0, Const(1, PRODUCT_BITS) << (self.shift - 1)[:6]))
        shift = delay(m, self.shift, 9, "shift")                          # for stage 10
        zp = delay(m, self.zero_point, 10, "zero_point")                  # for stage 11
        lo = delay(m, self.clamp_lo, 11, "clamp_lo")                      # for stage 12
        hi = delay(m, self.clamp_hi, 11, "clamp_hi")
        lo_above_hi = Signal()
        m.d.sync += lo_above_hi.eq(self.clamp_lo > self.clamp_hi)
        lo_above_hi = delay(m, lo_above_hi, 10, "lo_above_hi")

        for n in range(self._lanes):
            acc = Signal(signed(self._acc_bits), name=f"acc_{n}")
            bias, mult = Signal(signed(64), name=f"bias_{n}"), Signal(signed(32), name=f"mult_{n}")
            v = Signal(signed(self._acc_bits), name=f"v_{n}")
            bias_half = Signal(signed(PRODUCT_BITS), name=f"bias_half_{n}")
            m.d.sync += [acc.eq(self.acc[n]), bias.eq(self.param[n].bias), mult.eq(self.param[n].mult),
                         v.eq(acc), bias_half.eq(bias + half)]
            bias_half = delay(m, bias_half, 6, f"bias_half_{n}")         # for stage 9
            mult_d = delay(m, mult, 1, f"mult_{n}")                      # lines up with v
            prod = adder_tree(m, booth_terms(m, v, mult_d, name=f"booth_{n}"), name=f"sum_{n}")

            rounded = Signal(signed(PRODUCT_BITS), name=f"rounded_{n}")
            shifted = Signal(signed(PRODUCT_BITS), name=f"shifted_{n}")
            biased = Signal(signed(PRODUCT_BITS), name=f"biased_{n}")
            y = Signal(signed(self._act_bits), name=f"y_{n}")
            m.d.sync += [
                rounded.eq(prod + bias_half),
                shifted.eq(rounded >> shift),
                biased.eq(shifted + zp),
            ]
            # np.clip(b, lo, hi) = min(max(b, lo), hi): both comparisons against b, in parallel
            m.d.sync += y.eq(Mux(biased < lo, Mux(lo_above_hi, hi, lo), Mux(biased > hi, hi, biased)))
            m.d.comb += self.out[n].eq(y)
        return m
