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
only spans the bits where its operands overlap (35 to 64 bits). The 16 partial products are summed by a
tree of registered adders, 16 -> 8 -> 4 -> 2 -> 1, and bias + 2**(shift-1) joins at the end, all mod 2**64.

After the rounding shift only r's low 10 bits and whether its bits 9..62 all equal are needed: b = r +
zero_point lies in [-256, 255] only when r lies in [-512, 511], and outside that window the clip is
decided by b's sign, which is r's sign flipped by the carry into bit 63 (the add wraps only for shift 0).
So the second shift stage selects 10 bits, not 64, and no 64-bit add follows it.

Pipeline, one register stage per cycle, LATENCY = 12 cycles from `acc` to `out` (each stage holds at
most one carry chain, the FPGA critical path of the unit; about 185 MHz alone on LFE5U-85F-6)::

    1  acc, bias, mult captured; 2**(shift-1)
    2  Booth partial products; low 32 bits of bias + 2**(shift-1) and their carry
    3  adder tree level 1; high 32 bits of bias + 2**(shift-1)
    4..6  adder tree levels 2-4: acc * mult
    7  s = acc * mult + bias + 2**(shift-1)
    8  t = s >> (shift % 8)
    9  r = t >> (shift & 56) in its low 10 bits; each byte of t from bit 9 up all ones? all zeros?
    10 near = r[:10] + zero_point (11 bits); r's bits 9..62 all ones? all zeros? (the bytes from shift & 56)
    11 b in [-256, 255]?  near[:9] < clamp_lo?  near[:9] > clamp_hi?  b's sign
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
    m.d.comb += total.eq(Cat(Const(0, off), value).as_signed())
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
        # np.clip(b, lo, hi) = min(max(b, lo), hi) is hi for every b when lo > hi: compared in stage 2,
        # chosen in stage 3
        lo_r, hi_r = delay(m, self.clamp_lo, 1, "clamp_lo_in"), delay(m, self.clamp_hi, 1, "clamp_hi_in")
        lo_above_hi = Signal()
        m.d.sync += lo_above_hi.eq(lo_r > hi_r)
        lo_rr, hi_rr = delay(m, lo_r, 1, "clamp_lo_cmp"), delay(m, hi_r, 1, "clamp_hi_cmp")
        clip_lo = Signal(signed(8))
        m.d.sync += clip_lo.eq(Mux(lo_above_hi, hi_rr, lo_rr))
        clip_lo = delay(m, clip_lo, 7, "clip_lo")                         # for stage 12
        lo = delay(m, lo_rr, 7, "clamp_lo")                               # for stage 11
        hi = delay(m, hi_rr, 7, "clamp_hi")
        clip_hi = delay(m, hi, 1, "clip_hi")
        half_hi = delay(m, half[32:], 1, "half_hi")                       # for stage 3

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
            # its low 32 bits in stage 2, the high ones with the carry in stage 3 (64-bit carry chains are slow)
            bias_lo = Signal(33, name=f"bias_lo_{n}")
            m.d.sync += bias_lo.eq(bias[:32] + carry_in[:32])
            bias_hi = delay(m, bias[32:], 1, f"bias_hi_{n}")
            bias_half = Signal(signed(PRODUCT_BITS), name=f"bias_half_{n}")
            # the carry rides in below both operands, so the high add is one carry chain
            carried = (Cat(bias_lo[32], bias_hi) + Cat(bias_lo[32], half_hi))[1:]
            m.d.sync += bias_half.eq(Cat(bias_lo[:32], carried))
            product = adder_tree(m, terms, name=f"sum_{n}")                # stage 6
            bias_half = delay(m, bias_half, 3, f"bias_half_{n}")            # for stage 7
            rounded = Signal(signed(PRODUCT_BITS), name=f"rounded_{n}")     # stage 7
            m.d.sync += rounded.eq(product + bias_half)

            shift_n = copy(shift, f"shift_{n}")
            byte_shift = delay(m, shift_n[3:], 1, f"byte_shift_{n}")          # for stage 9
            byte_shift_r = delay(m, byte_shift, 1, f"byte_shift_r_{n}")     # for stage 10
            zp_n = copy(zp, f"zero_point_{n}")
            zp_neg = delay(m, zp_n[-1], 1, f"zero_point_neg_{n}")            # for stage 11
            lo_n, hi_n = copy(lo, f"clamp_lo_{n}"), copy(hi, f"clamp_hi_{n}")
            clip_lo_n, clip_hi_n = copy(clip_lo, f"clip_lo_{n}"), copy(clip_hi, f"clip_hi_{n}")

            # stage 8: t = s >> (shift % 8); stage 9: r = t >> (shift & 56) is only needed in its low 10 bits
            # (`window`) and in whether its bits 9..62 all equal, which per byte of t above bit 8 tells
            t = Signal(signed(PRODUCT_BITS), name=f"shifted_lo_{n}")
            m.d.sync += t.eq(rounded >> shift_n[:3])
            window = Signal(signed(10), name=f"window_{n}")
            m.d.sync += window.eq((t >> Cat(Const(0, 3), byte_shift))[:10])
            t_sign = delay(m, t[-1], 1, f"t_sign_{n}")
            byte_ones, byte_zeros = [], []
            for g, start in enumerate(range(9, PRODUCT_BITS - 1, 8)):
                chunk = t[start:min(start + 8, PRODUCT_BITS - 1)]
                byte_ones.append(Signal(name=f"byte_ones_{n}_{g}")), byte_zeros.append(Signal(name=f"byte_zeros_{n}_{g}"))
                m.d.sync += [byte_ones[-1].eq(chunk.all()), byte_zeros[-1].eq(~chunk.any())]
            # stage 10: near = r[:10] + zero_point (11 bits), exactly b = r + zero_point when r lies in
            # [-512, 511]; r's bits 9..62 are t's from bit 9 + (shift & 56) on, then copies of t's sign
            near = Signal(signed(11), name=f"near_{n}")
            m.d.sync += near.eq(window + zp_n)
            suffix_ones = [Cat(*byte_ones[q:], *([t_sign] if q else [])).all() for q in range(8)]
            suffix_zeros = [Cat(*byte_zeros[q:], *([~t_sign] if q else [])).all() for q in range(8)]
            ones, zeros = Signal(name=f"ones_{n}"), Signal(name=f"zeros_{n}")
            m.d.sync += [ones.eq(Cat(*suffix_ones).bit_select(byte_shift_r, 1)),
                         zeros.eq(Cat(*suffix_zeros).bit_select(byte_shift_r, 1))]
            r_sign, r8 = delay(m, t_sign, 1, f"r_sign_{n}"), delay(m, window[8], 1, f"r8_{n}")
            # stage 11: b lies in [-256, 255] exactly when r's bits 9..63 and near's bits 8..10 all equal; then
            # near's low 9 bits are b and two 9-bit comparisons decide the clip, else b's sign does. b's
            # sign is r's, flipped by the carry into bit 63 of the 64-bit add (zero_point sign-extended):
            # with c8 the carry out of r[:8] + zero_point[:8], that carry is c8 & all(r[8:63]) for
            # zero_point >= 0, c8 | any(r[8:63]) for zero_point < 0 (it wraps only for shift 0)
            small, sign = Signal(name=f"small_{n}"), Signal(name=f"sign_{n}")
            lt_lo, gt_hi = Signal(name=f"lt_lo_{n}"), Signal(name=f"gt_hi_{n}")
            b8 = Signal(signed(8), name=f"b8_{n}")
            near9 = near[:9].as_signed()
            c8 = near[8] ^ r8 ^ zp_neg
            carry63 = Mux(zp_neg, c8 | r8 | ~zeros, c8 & r8 & ones)
            m.d.sync += [
                small.eq(Mux(r_sign, ones, zeros) & (near[8:].all() | ~near[8:].any())),
                sign.eq(r_sign ^ zp_neg ^ carry63),
                lt_lo.eq(near9 < lo_n), gt_hi.eq(near9 > hi_n), b8.eq(near[:8]),
            ]
            # stage 12: y = clip(b, lo, hi) wrapped to act_bits
            below, above = Mux(small, lt_lo, sign), Mux(small, gt_hi, ~sign)
            y = Signal(signed(self._act_bits), name=f"y_{n}")
            m.d.sync += y.eq(Mux(below, clip_lo_n, Mux(above, clip_hi_n, b8)))
            m.d.comb += self.out[n].eq(y)
        return m
