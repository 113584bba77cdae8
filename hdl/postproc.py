"""The post-processing (requantization) unit: exactly emu.numerics.requantize, then wrap to act_bits.

Per lane, all signed two's complement::

    p = acc * mult + bias          acc: acc_bits, mult: 32 bits, bias: 64 bits; wraps to 64 bits (as numpy int64)
    r = (p + 2**(shift-1)) >> shift   for shift >= 1 (round half up, arithmetic shift; the add wraps to 64)
    r = p                          for shift == 0
    y = min(max(r + zero_point, clamp_lo), clamp_hi)   (64-bit wrapping add, then clip like np.clip)
    out = y wrapped to act_bits

The multiplier uses no hard DSP block: it is a radix-4 Booth multiplier in logic, built here from muxes and
adders (no `*` for synthesis to map), so the array keeps every DSP. Booth digit i (i = 0..15) of `mult` is
d_i = -2 m[2i+1] + m[2i] + m[2i-1] (m[-1] = 0), so acc * mult = sum_i d_i * acc * 4**i (exact in 64 bits).
Each partial product is (x_i XOR neg_i) << 2i with x_i in {acc, 2 acc} (acc_bits + 1 bits), its register
cleared for a zero digit; the +neg_i that completes a negation sits two bits below the next partial
product, the last one in the rounding constant. Every term keeps its own width and bit offset, so an adder
only spans the bits where its operands overlap (35 to 64 bits). The 16 partial products and
bias + 2**(shift-1) are summed by a tree of registered adders, 17 -> 9 -> 5 -> 3 -> 2 -> 1, all mod 2**64.

Pipeline, one register stage per cycle, LATENCY = 12 cycles from `acc` to `out` (each stage holds at
most one carry chain, the FPGA critical path of the unit; about 185 MHz alone on LFE5U-85F-6)::

    1  acc, bias, mult captured; 2**(shift-1)      8   t = s >> (shift % 8)
    2  Booth partial products; bias + 2**(shift-1)  9   r = t >> (shift & 56)
    3..7  adder tree: s = acc * mult + bias + 2**(shift-1)
    10 b = r + zero_point (64 bits, for its sign), near = r[:10] + zero_point (11 bits), r's bits 9..63
       all equal? (in four groups)
    11 b in [-256, 255]?  near[:9] < clamp_lo?  near[:9] > clamp_hi?  sign
    12 y = clip(b, clamp_lo, clamp_hi) wrapped to act_bits

On ECP5 each lane has its own registers for the last stage of every control (hdl/ecp5.py `replica`), so
no control register drives more than one lane's shifter, adder or comparators.

`out_valid`/`out` follow `in_valid` and all other inputs by LATENCY cycles: the controls (`param`, `shift`,
`zero_point`, `clamp_lo`, `clamp_hi`) travel down the pipeline with their row, so any input may change
every cycle.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import ecp5
from .buffers import param_layout
from .pipeline import delay

__all__ = ["PostProc", "booth_terms"]

PRODUCT_BITS = 64
ZP_SIGN_COPIES = 4                                        # registers holding a lane's zero-point sign
ZP_SIGN_SPAN = -(-(PRODUCT_BITS - 8) // ZP_SIGN_COPIES)   # adder bits each of them extends to
RANGE_GROUP_BITS = 14                                     # bits of r one stage-10 all-equal test covers


def booth_terms(m: Module, v, mult, *, name: str):
    """Radix-4 Booth partial products of the signed `v` * `mult` (`mult` signed, even width), registered, as
    (value, bit offset) pairs whose sum is v * mult minus the last digit's negation carry; returns the
    pairs and that carry (1 bit, combinational from `mult`), which the caller adds at bit len(mult) - 2.

    Digit i selects x_i in {v, 2v} (len(v) + 1 bits, signed) and its negation flag neg_i, or zero; its
    partial product is (x_i XOR neg_i) * 4**i, and the +neg_i that completes the negation rides two bits below the
    next digit's partial product (bits 2i+1..2i of that term are free), so no term is wider than
    len(v) + 3 bits and no sign extension is materialised."""
    digits = len(mult) // 2
    terms, negs = [], []
    for i in range(digits):
        b0 = mult[2 * i - 1] if i > 0 else Const(0, 1)
        b1, b2 = mult[2 * i], mult[2 * i + 1]
        zero = (b2 & b1 & b0) | ~(b2 | b1 | b0)
        two = (b2 & ~b1 & ~b0) | (~b2 & b1 & b0)
        pp = Signal(signed(len(v) + 1), name=f"{name}_pp{i}", reset_less=True)
        # a zero digit clears the register (its synchronous reset), so each bit is one LUT4 of
        # (two, negate, v[k], v[k-1]) instead of a five-input function
        m.d.sync += pp.eq(Mux(zero, 0, Mux(two, v << 1, v) ^ b2.replicate(len(pp))))
        negs.append(b2 & ~zero)
        if i == 0:
            terms.append((pp, 0))
        else:
            neg = Signal(name=f"{name}_neg{i - 1}")
            m.d.sync += neg.eq(negs[i - 1])
            terms.append((Cat(neg, Const(0, 1), pp).as_signed(), 2 * i - 2))
    return terms, negs[-1]


def add_terms(a, a_off: int, b, b_off: int):
    """(a << a_off) + (b << b_off) for signed a, b as (value, offset), mod 2**PRODUCT_BITS: the bits of the
    lower-offset term below the other's offset pass through, only the overlap goes through an adder."""
    if a_off > b_off:
        a, a_off, b, b_off = b, b_off, a, a_off
    k = b_off - a_off
    if len(a) <= k:
        a = a.as_signed() if len(a) else Const(0, signed(1))
        a = Cat(a, a[-1].replicate(k + 1 - len(a))).as_signed()
    total = Cat(a[:k], a[k:].as_signed() + b.as_signed())
    return total[:PRODUCT_BITS - a_off].as_signed(), a_off


def adder_tree(m: Module, terms: list, *, name: str) -> Signal:
    """Sum of the (value, offset) `terms` mod 2**PRODUCT_BITS, one register per level of pairwise adds."""
    level = 0
    while len(terms) > 1:
        nxt = []
        for j in range(0, len(terms), 2):
            value, off = add_terms(*terms[j], *terms[j + 1]) if j + 1 < len(terms) else terms[j]
            s = Signal(signed(len(value)), name=f"{name}_l{level}_{j // 2}")
            m.d.sync += s.eq(value)
            nxt.append((s, off))
        terms = nxt
        level += 1
    value, off = terms[0]
    total = Signal(signed(PRODUCT_BITS), name=f"{name}_total")
    m.d.comb += total.eq(Cat(Const(0, off), value))
    return total


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
        # cycle; each arrives in the cycle before the stage register that uses it. The chains are shared by
        # the lanes up to their last register, which each lane has its own of (the shifter's selects
        # fan out to 64 muxes per lane).
        half = Signal(PRODUCT_BITS)            # 2**(shift-1), 0 for shift 0 (stage 1, shared by the lanes)
        m.d.sync += half.eq(Mux(self.shift == 0, 0, Const(1, PRODUCT_BITS) << (self.shift - 1)[:6]))
        shift = delay(m, self.shift, 6, "shift")                          # for stage 8, after a lane's own
        zp = delay(m, self.zero_point, 8, "zero_point")                   # for stage 10
        lo = delay(m, self.clamp_lo, 9, "clamp_lo")                       # for stage 11
        hi = delay(m, self.clamp_hi, 9, "clamp_hi")
        # np.clip(b, lo, hi) = min(max(b, lo), hi) is hi for every b when lo > hi
        lo_r, hi_r = delay(m, self.clamp_lo, 1, "clip_lo_in"), delay(m, self.clamp_hi, 1, "clip_hi_in")
        clip_lo = Signal(signed(8))
        m.d.sync += clip_lo.eq(Mux(lo_r > hi_r, hi_r, lo_r))                # stage 2
        clip_lo = delay(m, clip_lo, 8, "clip_lo")                         # for stage 12
        clip_hi = delay(m, hi, 1, "clip_hi")

        def copy(value, name):
            # each lane's own register; Yosys would merge plain copies back into one (hdl/ecp5.py)
            if ecp5.is_ecp5(platform):
                return ecp5.replica(m, value, name=name)
            return delay(m, value, 1, name)

        for n in range(self._lanes):
            acc = Signal(signed(self._acc_bits), name=f"acc_{n}")
            bias, mult = Signal(signed(64), name=f"bias_{n}"), Signal(signed(32), name=f"mult_{n}")
            m.d.sync += [acc.eq(self.acc[n]), bias.eq(self.param[n].bias), mult.eq(self.param[n].mult)]
            # bias + 2**(shift-1) + the top Booth digit's negation carry (mult[31] << 30), stage 2
            terms, neg_top = booth_terms(m, acc, mult, name=f"booth_{n}")
            carry_in = Cat(half[:30], half[30] ^ neg_top, half[31] | (half[30] & neg_top), half[32:])
            bias_half = Signal(signed(PRODUCT_BITS), name=f"bias_half_{n}")
            m.d.sync += bias_half.eq(bias + carry_in)
            # the bias is the odd term: it passes the first levels as a register while the products pair up
            rounded = adder_tree(m, terms + [(bias_half, 0)], name=f"sum_{n}")   # stage 7

            shift_n = copy(shift, f"shift_{n}")
            shift_hi_n = delay(m, shift_n[3:], 1, f"shift_hi_{n}")
            # the zero point's sign bit extends over 56 adder bits: four copies of it share them
            zp_n = copy(Cat(zp, zp[-1].replicate(ZP_SIGN_COPIES - 1)), f"zero_point_{n}")
            zp_wide = Cat(zp_n[:8], *(zp_n[7 + c // ZP_SIGN_SPAN] for c in range(PRODUCT_BITS - 8))).as_signed()
            lo_n, hi_n = copy(lo, f"clamp_lo_{n}"), copy(hi, f"clamp_hi_{n}")
            clip_lo_n, clip_hi_n = copy(clip_lo, f"clip_lo_{n}"), copy(clip_hi, f"clip_hi_{n}")

            shifted_lo = Signal(signed(PRODUCT_BITS), name=f"shifted_lo_{n}")
            shifted = Signal(signed(PRODUCT_BITS), name=f"shifted_{n}")
            m.d.sync += [
                shifted_lo.eq(rounded >> shift_n[:3]),                    # stage 8
                shifted.eq(shifted_lo >> Cat(Const(0, 3), shift_hi_n)),   # stage 9
            ]
            # stage 10: b = r + zero_point. As |zero_point| <= 128, b can lie in [-256, 255] only when r lies
            # in [-512, 511], i.e. r's bits 9..63 all equal (tested in groups here, combined next stage);
            # then b = r[:10] + zero_point exactly, in 11 bits. The 64-bit sum is kept for b's sign alone
            # (it wraps for shift 0).
            biased = Signal(signed(PRODUCT_BITS), name=f"biased_{n}")
            near = Signal(signed(11), name=f"near_{n}")
            m.d.sync += [biased.eq(shifted + zp_wide), near.eq(shifted[:10].as_signed() + zp_n[:8].as_signed())]
            ones, zeros = [], []
            for g, start in enumerate(range(9, PRODUCT_BITS, RANGE_GROUP_BITS)):
                group = shifted[start:start + RANGE_GROUP_BITS]
                ones.append(Signal(name=f"ones_{n}_{g}")), zeros.append(Signal(name=f"zeros_{n}_{g}"))
                m.d.sync += [ones[-1].eq(group.all()), zeros[-1].eq(~group.any())]
            # stage 11: b lies in [-256, 255] exactly when r's bits 9..63 and near's bits 8..10 all equal; then
            # near's low 9 bits are b and two 9-bit comparisons decide the clip, else b's sign does.
            small, sign = Signal(name=f"small_{n}"), Signal(name=f"sign_{n}")
            lt_lo, gt_hi = Signal(name=f"lt_lo_{n}"), Signal(name=f"gt_hi_{n}")
            b8 = Signal(signed(8), name=f"b8_{n}")
            near9 = near[:9].as_signed()
            m.d.sync += [
                small.eq((Cat(*ones).all() | Cat(*zeros).all()) & (near[8:].all() | ~near[8:].any())),
                sign.eq(biased[-1]),
                lt_lo.eq(near9 < lo_n), gt_hi.eq(near9 > hi_n), b8.eq(near[:8]),
            ]
            # stage 12: y = clip(b, lo, hi) wrapped to act_bits
            below, above = Mux(small, lt_lo, sign), Mux(small, gt_hi, ~sign)
            y = Signal(signed(self._act_bits), name=f"y_{n}")
            m.d.sync += y.eq(Mux(below, clip_lo_n, Mux(above, clip_hi_n, b8)))
            m.d.comb += self.out[n].eq(y)
        return m
