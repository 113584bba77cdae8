"""The post-processing (requantization) unit: exactly emu.contract.numerics.requantize, then wrap to act_bits.

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
product, the last one a one-bit term of its own. Every term keeps its own width and bit offset, so an adder
only spans the bits where its operands overlap (32 to 50 bits). No add spans 64 bits in one stage:
c = bias + 2**(shift-1) is added in two 32-bit halves side by side, the low half's carry joining the tree
as a one-bit term (like the last digit's negation carry), and the final add is `split_add`: both halves
in one stage from the same operand bits, the low half's carry into the high half in the next. (A split
whose high half waits a stage for the carry leaves nextpnr free to place the two halves' carry chains far
apart.) The adds, all mod 2**64:

    first level: 16 partial products -> 8
    then 8 + c + the two carries: 11 -> 6 -> 3 -> 2, the product and c (with both carries)
    s = product + c in halves

After the rounding shift only r's low 10 bits and whether its bits 9..62 all equal are needed: b = r +
zero_point lies in [-256, 255] only when r lies in [-512, 511], and outside that window the clip is
decided by b's sign, which is r's sign flipped by the carry into bit 63 (the add wraps only for shift 0).
So the second shift stage selects 10 bits, not 64, and no 64-bit add follows it.

Pipeline, one register stage per cycle, LATENCY = 14 cycles from `acc` to `out`::

    1  acc, bias, mult, shift captured
    2  Booth partial products; 2**(shift-1)
    3  partial products 16 -> 8; c = bias + 2**(shift-1) in halves
    4..6  11 -> 6 -> 3 -> 2 (c takes its carries in stages 4 and 5)
    7, 8  s = acc * mult + bias + 2**(shift-1) in halves, then the carry
    9  s >> (shift % 4)
    10 t = s >> (shift % 8)
    11 r = t >> (shift & 56) in its low 10 bits; each byte of t from bit 9 up all ones? all zeros?
    12 near = r[:10] + zero_point (11 bits); r's bits 9..62 all ones? all zeros? (the bytes from shift & 56)
    13 b in [-256, 255]?  near[:9] < clamp_lo?  near[:9] > clamp_hi?  b's sign
    14 y = clip(b, clamp_lo, clamp_hi) wrapped to act_bits

Each stage holds one carry chain, or at most three LUT levels. The shift's first step takes two stages
(9 and 10: a 4:1 then a 2:1 mux) because one 8:1 mux stage is too slow for the whole accelerator's clock.

On ECP5 each lane has its own registers for the last stage of every control and for the shift it decodes
2**(shift-1) from (`Family.replica`, hdl/fpga/family.py), so no control register drives more than one lane's shifter,
adder or comparators; the first shift stage's select has four copies per lane.

`out_valid`/`out` follow `in_valid` and all other inputs by LATENCY cycles: the controls (`param`, `shift`,
`zero_point`, `clamp_lo`, `clamp_hi`) travel down the pipeline with their row, so any input may change
every cycle.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hdl.fpga import family_of
from hdl.buffers import param_layout
from hdl.pipeline import delay

__all__ = ["PostProc", "booth_terms"]

PRODUCT_BITS = 64
SHIFT_SELECT_COPIES = 4   # registers per lane holding shift % 8, which selects the first shift stage's muxes


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


def less(a, b):
    """a < b for signed a, b: the sign of the exact difference, a carry chain with nothing behind it (Yosys
    builds a comparison as a chain followed by two LUT levels)."""
    return (a.as_signed() - b.as_signed())[-1]


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


def adder_tree(m: Module, terms: list, *, keep: int, name: str) -> list:
    """Pairwise registered adds of the (value, offset) `terms` mod 2**PRODUCT_BITS, one register per level,
    until `keep` terms are left; returns them as (value, offset) pairs."""
    level = 0
    while len(terms) > keep:
        nxt = []
        for j in range(0, len(terms), 2):
            value, off = add_terms(*terms[j], *terms[j + 1]) if j + 1 < len(terms) else terms[j]
            s = Signal(signed(len(value)), name=f"{name}_l{level}_{j // 2}")
            m.d.sync += s.eq(value)
            nxt.append((s, off))
        terms = nxt
        level += 1
    return terms


def bits64(value):
    """The signed `value` sign-extended to PRODUCT_BITS."""
    return Cat(value, value[-1].replicate(PRODUCT_BITS - len(value)))


def split_add(m: Module, x, y, *, name: str) -> Signal:
    """x + y mod 2**PRODUCT_BITS (x, y PRODUCT_BITS wide) in two registered stages, no carry chain longer
    than half the width: both halves are added in the first stage, from the same operand bits, so nextpnr
    keeps the two chains side by side; the second stage adds the low half's carry into the high one."""
    half = PRODUCT_BITS // 2
    lo, hi = Signal(half + 1, name=f"{name}_lo"), Signal(half, name=f"{name}_hi")
    m.d.sync += [lo.eq(x[:half] + y[:half]), hi.eq(x[half:] + y[half:])]
    total = Signal(signed(PRODUCT_BITS), name=name)
    m.d.sync += total.eq(Cat(lo[:half], hi + lo[half]))
    return total


class PostProc(wiring.Component):
    LATENCY = 14

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
        family = family_of(platform)
        m.d.comb += self.out_valid.eq(delay(m, self.in_valid, self.LATENCY, "valid"))

        # The per-row controls travel down the pipeline with the data, so every input may change every
        # cycle; each arrives in the cycle before the stage register that uses it. The chains are shared by
        # the lanes up to their last register, which each lane has its own of (the shifter's selects
        # fan out to 64 muxes per lane).
        shift = delay(m, self.shift, 7, "shift")                          # for stage 9, after a lane's own
        zp = delay(m, self.zero_point, 10, "zero_point")                  # for stage 12
        # np.clip(b, lo, hi) = min(max(b, lo), hi) is hi for every b when lo > hi: compared in stage 2,
        # chosen in stage 3
        lo_r, hi_r = delay(m, self.clamp_lo, 1, "clamp_lo_in"), delay(m, self.clamp_hi, 1, "clamp_hi_in")
        lo_above_hi = Signal()
        m.d.sync += lo_above_hi.eq(less(hi_r, lo_r))
        lo_rr, hi_rr = delay(m, lo_r, 1, "clamp_lo_cmp"), delay(m, hi_r, 1, "clamp_hi_cmp")
        clip_lo = Signal(signed(8))
        m.d.sync += clip_lo.eq(Mux(lo_above_hi, hi_rr, lo_rr))
        clip_lo = delay(m, clip_lo, 9, "clip_lo")                         # for stage 14
        lo = delay(m, lo_rr, 9, "clamp_lo")                               # for stage 13
        hi = delay(m, hi_rr, 9, "clamp_hi")
        clip_hi = delay(m, hi, 1, "clip_hi")

        def copy(value, name):
            # each lane's own register; Yosys would merge plain copies back into one (Family.replica)
            if family.has_replicas:
                return family.replica(m, value, name=name)
            return delay(m, value, 1, name)

        for n in range(self._lanes):
            acc = Signal(signed(self._acc_bits), name=f"acc_{n}")
            bias, mult = Signal(signed(64), name=f"bias_{n}"), Signal(signed(32), name=f"mult_{n}")
            m.d.sync += [acc.eq(self.acc[n]), bias.eq(self.param[n].bias), mult.eq(self.param[n].mult)]
            # 2**(shift-1), 0 for shift 0 (stage 2), decoded in each lane from its own copy of the shift, as
            # every lane adds all its bits. (Decoded once from the input and then copied, the decode would sit
            # between the input's register, in the compute unit, and the copies in every lane.)
            # Bit k is its own comparison, shift == k + 1: written as 0-or-a-shift, Yosys makes shift == 0 the
            # synchronous reset of all 64 flip-flops, one slow net to 32 slices per lane
            shift_n = copy(self.shift, f"shift_in_{n}")
            half_n = Signal(PRODUCT_BITS, name=f"half_{n}")
            m.d.sync += half_n.eq(Cat(*(shift_n == k + 1 for k in range(PRODUCT_BITS))))
            # c = bias + 2**(shift-1), its halves added side by side in stage 3; the low half's carry and the
            # top Booth digit's negation carry (mult[31] << 30) are one-bit terms of the tree, so no chain
            # waits on another's carry (nextpnr does not keep such chains together)
            terms, neg_top = booth_terms(m, acc, mult, name=f"booth_{n}")
            bias_r = delay(m, bias, 1, f"bias_r_{n}")
            c_lo, c_hi = Signal(33, name=f"bias_half_lo_{n}"), Signal(32, name=f"bias_half_hi_{n}")
            m.d.sync += [c_lo.eq(bias_r[:32] + half_n[:32]), c_hi.eq(bias_r[32:] + half_n[32:])]
            c, c_carry = Cat(c_lo[:32], c_hi).as_signed(), c_lo[32]
            neg_top = delay(m, neg_top, 2, f"neg_top_{n}")
            # the partial products' first level (stage 3), then c and the carries join: 11 -> 6 -> 3 -> 2
            first = adder_tree(m, terms, keep=8, name=f"sum_{n}_first")
            carries = [(Cat(neg_top, Const(0, 1)).as_signed(), 30), (Cat(c_carry, Const(0, 1)).as_signed(), 32)]
            (p, p_off), (c, c_off) = adder_tree(m, first + [(c, 0)] + carries, keep=2, name=f"sum_{n}")
            assert p_off == c_off == 0 and len(c) == PRODUCT_BITS
            rounded = split_add(m, bits64(p), c, name=f"rounded_{n}")          # stages 7, 8

            # the bit shift: shift % 4 selects 4:1 muxes for all 64 bits (four copies of it, one per 16 bits),
            # then shift bit 2 2:1 muxes (two copies): one 8:1 mux stage is too slow
            bit_shift = [copy(shift[:2], f"bit_shift_{n}_{k}") for k in range(SHIFT_SELECT_COPIES)]
            four_shift = [delay(m, copy(shift[2], f"four_shift_{n}_{k}"), 1, f"four_shift_{n}_{k}") for k in range(2)]
            byte_shift = delay(m, copy(shift[3:], f"byte_shift_{n}"), 2, f"byte_shift_{n}")  # for stage 11
            byte_shift_r = delay(m, byte_shift, 1, f"byte_shift_r_{n}")     # for stage 12
            zp_n = copy(zp, f"zero_point_{n}")
            zp_neg = delay(m, zp_n[-1], 1, f"zero_point_neg_{n}")            # for stage 13
            lo_n, hi_n = copy(lo, f"clamp_lo_{n}"), copy(hi, f"clamp_hi_{n}")
            clip_lo_n, clip_hi_n = copy(clip_lo, f"clip_lo_{n}"), copy(clip_hi, f"clip_hi_{n}")

            # stages 9, 10: t = s >> (shift % 8); stage 11: r = t >> (shift & 56) is only needed in its low 10
            # bits (`window`) and in whether its bits 9..62 all equal, which per byte of t above bit 8 tells
            t4 = Signal(signed(PRODUCT_BITS), name=f"shifted_4_{n}")
            span = PRODUCT_BITS // SHIFT_SELECT_COPIES
            m.d.sync += t4.eq(Cat(*((rounded >> sel)[k * span:(k + 1) * span] for k, sel in enumerate(bit_shift))))
            t = Signal(signed(PRODUCT_BITS), name=f"shifted_lo_{n}")
            half = PRODUCT_BITS // 2
            m.d.sync += t.eq(Cat(*(Mux(sel, t4 >> 4, t4)[k * half:(k + 1) * half]
                                   for k, sel in enumerate(four_shift))))
            window = Signal(signed(10), name=f"window_{n}")
            m.d.sync += window.eq((t >> Cat(Const(0, 3), byte_shift))[:10])
            t_sign = delay(m, t[-1], 1, f"t_sign_{n}")
            byte_ones, byte_zeros = [], []
            for g, start in enumerate(range(9, PRODUCT_BITS - 1, 8)):
                chunk = t[start:min(start + 8, PRODUCT_BITS - 1)]
                byte_ones.append(Signal(name=f"byte_ones_{n}_{g}")), byte_zeros.append(Signal(name=f"byte_zeros_{n}_{g}"))
                m.d.sync += [byte_ones[-1].eq(chunk.all()), byte_zeros[-1].eq(~chunk.any())]
            # stage 12: near = r[:10] + zero_point (11 bits), exactly b = r + zero_point when r lies in
            # [-512, 511]; r's bits 9..62 are t's from bit 9 + (shift & 56) on, then copies of t's sign
            near = Signal(signed(11), name=f"near_{n}")
            m.d.sync += near.eq(window + zp_n)
            suffix_ones = [Cat(*byte_ones[q:], *([t_sign] if q else [])).all() for q in range(8)]
            suffix_zeros = [Cat(*byte_zeros[q:], *([~t_sign] if q else [])).all() for q in range(8)]
            ones, zeros = Signal(name=f"ones_{n}"), Signal(name=f"zeros_{n}")
            m.d.sync += [ones.eq(Cat(*suffix_ones).bit_select(byte_shift_r, 1)),
                         zeros.eq(Cat(*suffix_zeros).bit_select(byte_shift_r, 1))]
            r_sign, r8 = delay(m, t_sign, 1, f"r_sign_{n}"), delay(m, window[8], 1, f"r8_{n}")
            # stage 13: b lies in [-256, 255] exactly when r's bits 9..63 and near's bits 8..10 all equal; then
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
                lt_lo.eq(less(near9, lo_n)), gt_hi.eq(less(hi_n, near9)), b8.eq(near[:8]),
            ]
            # stage 14: y = clip(b, lo, hi) wrapped to act_bits
            below, above = Mux(small, lt_lo, sign), Mux(small, gt_hi, ~sign)
            y = Signal(signed(self._act_bits), name=f"y_{n}")
            m.d.sync += y.eq(Mux(below, clip_lo_n, Mux(above, clip_hi_n, b8)))
            m.d.comb += self.out[n].eq(y)
        return m
