"""The DMA's lane sequencer: which bytes each beat carries, span by span (LOAD: R beats; STORE: the producer).

It walks the same spans as the burst address generator a beat at a time (first lane, bytes, the entry byte
the beat starts at), independent of the burst cuts, which are bus-aligned inside a span. Per span it takes
two set-up states: S1 counts the span's beats and works out the first beat's bytes both for a one-beat span
and for a longer one, S2 picks one. Its beat bookkeeping (bytes past the entry's end `s`, entry + 1, the
next step of `s` chosen with the registered "last beat next" flag) is kept in registers next to the values
it derives from, so each beat's step is an adder or a mux behind flip-flops; the states are one-hot
flip-flops, and each group of registers a beat steps has its own copy of the beat condition. The span
counts step in the cycle after a span's end (they are read again 3 cycles later at the earliest).
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from hdl.dma.signatures import (beat_signature, bus_state_signature, span_signature, transfer_signature,
                                w_fifo_signature)
from hdl.fpga import family_of

__all__ = ["LaneSequencer", "therm"]


def therm(n, width):
    """Bits j < n, j in [0, width)."""
    return Cat(*(n > j for j in range(width)))


class LaneSequencer(wiring.Component):
    """`xfer` (transfer_signature) and `span` (span_signature): the transfer, whose first span is set up at
    `go_span`. A beat moves when `in_beat` and either `w_fifo.credit_ok` (STORE: the producer takes it) or
    `bus_state.in_rdata` and `rvalid` (LOAD: an R beat is accepted). `beat` (beat_signature): the beat."""

    def __init__(self, *, bus_bytes: int):
        self._B = bus_bytes
        super().__init__({"xfer": In(transfer_signature()), "span": In(span_signature(bus_bytes)),
                          "bus_state": In(bus_state_signature()), "w_fifo": In(w_fifo_signature()),
                          "rvalid": In(1), "beat": Out(beat_signature(bus_bytes))})

    def elaborate(self, platform):
        m = Module()
        B = self._B
        lgB = exact_log2(B)
        family = family_of(platform)

        def copies(value, count, name):
            return family.copies(m, value, count, name=name)

        xfer, span = self.xfer, self.span
        rows, rb, buf_addr, ext_addr = xfer.rows, xfer.row_bytes, xfer.buf_addr, xfer.ext_addr
        go_span, merged, span_bytes, block_spans, more_spans_0 = (span.go_span, span.merged, span.span_bytes,
                                                                  span.block_spans, span.more_spans_0)
        rows_m1, blocks_m1, multi_rows, multi_blocks = span.rows_m1, span.blocks_m1, span.multi_rows, span.multi_blocks
        b_mrb, stride_lane, bstride_lane = span.b_mrb, span.stride_lane, span.bstride_lane
        prod_hi, prod_hi_p1, prod_hi_p2 = span.prod_hi, span.prod_hi_p1, span.prod_hi_p2
        rb_hi, rb_hi_p1, rb_hi_p2 = rb[lgB:], span.rb_hi_p1, span.rb_hi_p2
        hi0, hi1, hi2 = span.hi0, span.hi1, span.hi2
        in_rdata, in_rdata_n = self.bus_state.in_rdata, self.bus_state.in_rdata_n
        credit_ok, credit_ok_n = self.w_fifo.credit_ok, self.w_fifo.credit_ok_n

        advance = Signal()                                  # the beat described below moves this cycle
        in_beat, in_beat_n = Signal(), Signal()             # the lane state is BEAT
        m.d.comb += in_beat_n.eq(in_beat)
        m.d.sync += in_beat.eq(in_beat_n)
        m.d.comb += advance.eq(in_beat & (credit_ok | (in_rdata & self.rvalid)))    # credit_ok is 0 for a LOAD
        row_lane, block_lane = Signal(lgB), Signal(lgB)
        l_spans_left, l_blocks_left = Signal(17), Signal(10)
        l_more_spans, l_more_blocks = Signal(), Signal()    # l_spans_left != 0, l_blocks_left != 0
        l_more = Signal()                                   # either: another span follows this one
        span_end = Signal()                                 # the cycle after a span's last beat
        next_row_lane = Signal(lgB)                         # the first lane of the span after this one
        beats_s, n_last = Signal(28 - lgB), Signal(lgB + 1)
        skip, n, last = Signal(lgB), Signal(lgB + 1), Signal()
        skip_rb = Signal(lgB)                               # (skip + row_bytes) % B, for the spill rotation
        n_last_mrb = Signal(signed(12))                    # n_last - row_bytes
        n_one, n_many = Signal(lgB + 1), Signal(lgB + 1)   # S1 -> S2: n when the span is one beat / more
        lanes = Signal(B, name="lanes")                    # bus lanes the beat carries: [skip, skip + n)
        lanes_one, lanes_many = Signal(B, name="lanes_one"), Signal(B, name="lanes_many")   # S1 -> S2
        nmrb_many = Signal(signed(12))                     # n_many - row_bytes
        beats_left = Signal(28 - lgB)
        at2, at3 = Signal(), Signal()                      # beats_left == 2, == 3, registered with it
        # s's step at the next beat when the entry completes (n' - row_bytes) and when it does not (n'),
        # picked by at2 when at2 is registered, so that the beat's step is an adder behind registers
        step_done, step_fill = Signal(signed(12)), Signal(lgB + 1)
        one_s, two_s = Signal(), Signal()                  # S1 -> S2: beats_s == 1, beats_s == 2
        pos, entry = Signal(10), Signal(16)                # byte of the entry the beat starts at; that entry
        entry_p1 = Signal(16)                              # entry + 1, counted alongside
        # s = pos + n - row_bytes, the bytes of the beat past the entry's end, is a register of its own, so
        # that `complete` (its sign) and the beat's byte bookkeeping start at a flip-flop, not an adder
        s = Signal(signed(12))
        complete = s >= 0
        fill = pos + n

        # The lane states are one-hot flip-flops (none set: idle), so that a beat's step is one LUT of
        # registers and the inputs away from the ~150 flip-flops it moves.
        in_s1, in_s2 = Signal(), Signal()
        # t_carry = (row_lane + span_bytes % B + B - 1) // B of the span about to start, registered before its
        # S1: from the transfer's first lane at go_span, then from the next span's lane kept ready
        lo_cases = [(i % B, i >> lgB) for i in range(B * B)]              # (row lane, span bytes % B)
        t_table = Array(Const((rl + sb + B - 1) >> lgB, 2) for rl, sb in lo_cases)
        # the transfer's first t_carry is a register by go_span (cycle 6: `merged` in 4, span_lo in 5), from
        # the span's bytes % B: row_bytes % B, or (rows * row_bytes) % B, a table of the low bits
        span_lo, t_first, t_carry = Signal(lgB), Signal(2), Signal(2)
        prod_lo = Array(Const((i % B) * (i >> lgB) % B, lgB) for i in range(B * B))[Cat(rows[:lgB], rb[:lgB])]
        m.d.sync += [span_lo.eq(Mux(merged, prod_lo, rb[:lgB])), t_first.eq(t_table[Cat(ext_addr[:lgB], span_lo)]),
                     t_carry.eq(Mux(go_span, t_first, t_table[Cat(next_row_lane, span_bytes[:lgB])]))]
        with m.If(in_s1):
            # the first beat's byte count for both cases (the span is one beat or more), from the low
            # address bits only, so that S2 is the beats == 1 compare and a mux
            # beats = (row_lane + span_bytes + B - 1) // B, its low part (0..2) from the low bits alone
            # (tables of the lgB + lgB low bits: logic, not adders in series with the subtractions)
            lo = Cat(row_lane, span_bytes[:lgB])
            n_last_of = [(rl + sb + B - 1) % B + 1 for rl, sb in lo_cases]
            n_last_s1 = Array(Const(nl, lgB + 1) for nl in n_last_of)[lo]
            n_one_s1 = Array(Const((rl + sb + B - 1) % B + 1 - rl, signed(lgB + 2))
                             for rl, sb in lo_cases)[lo]                  # n_last - row lane
            n_many_s1 = B - row_lane
            m.d.sync += [one_s.eq((hi0 & (t_carry == 1)) | (hi1 & (t_carry == 0))),
                         two_s.eq((hi0 & (t_carry == 2)) | (hi1 & (t_carry == 1)) | (hi2 & (t_carry == 0)))]
            # span_bytes // B + t_carry, picked among registers rather than added
            beats_prod = Array([prod_hi, prod_hi_p1, prod_hi_p2, prod_hi])[t_carry]
            beats_rb = Array([rb_hi, rb_hi_p1, rb_hi_p2, rb_hi])[t_carry]
            m.d.sync += [beats_s.eq(Mux(merged, beats_prod, beats_rb)),
                         n_last.eq(n_last_s1), n_one.eq(n_one_s1), n_many.eq(n_many_s1),
                         # lanes [row lane, n_last) as one table of the low bits, not compares behind it
                         lanes_one.eq(Array(Const(((1 << nl) - 1) & ~((1 << rl) - 1), B)
                                            for (rl, _), nl in zip(lo_cases, n_last_of))[lo]),
                         lanes_many.eq(~therm(row_lane, B)),
                         nmrb_many.eq(b_mrb - row_lane), in_s1.eq(0), in_s2.eq(1)]
        with m.If(in_s2):
            # a span starts at an entry's first byte (pos = 0): the previous span ended with its entry
            one = one_s
            m.d.sync += [skip.eq(row_lane), skip_rb.eq(row_lane + rb[:lgB]), n.eq(Mux(one, n_one, n_many)),
                         lanes.eq(Mux(one, lanes_one, lanes_many)),
                         s.eq(Mux(one, n_one - rb, nmrb_many)), n_last_mrb.eq(n_last - rb),
                         beats_left.eq(beats_s), at2.eq(two_s), at3.eq(beats_s == 3), last.eq(one),
                         step_done.eq(Mux(two_s, n_last - rb, b_mrb)), step_fill.eq(Mux(two_s, n_last, B)),
                         in_s2.eq(0)]
            m.d.comb += in_beat_n.eq(1)
        # A beat's step moves ~130 flip-flops: each group of them has its own copy of the beat's condition
        # (in_beat & (credit_ok | in_rdata & rvalid): copies of the three flags, and the input).
        beat_go = copies(Cat(in_beat_n, credit_ok_n, in_rdata_n), 6, "beat_go")
        advance_c = [c[0] & (c[1] | (c[2] & self.rvalid)) for c in beat_go]
        with m.If(advance_c[0]):
            m.d.sync += [entry.eq(Mux(complete, entry_p1, entry)),
                         entry_p1.eq(Mux(complete, entry_p1 + 1, entry_p1))]
        with m.If(advance_c[1]):
            # s' = pos' + n' - row_bytes: s + n' - row_bytes once the entry completes (pos' = s), else s + n'
            # (pos' = pos + n = s + row_bytes)
            m.d.sync += [pos.eq(Mux(complete, s, fill)), s.eq(Mux(complete, s + step_done, s + step_fill))]
        with m.If(advance_c[2]):
            m.d.sync += [skip.eq(0), skip_rb.eq(rb[:lgB]), n.eq(step_fill), lanes.eq(therm(step_fill, B))]
        with m.If(advance_c[3]):
            m.d.sync += beats_left.eq(beats_left - 1)
        with m.If(advance_c[4]):
            m.d.sync += [at2.eq(at3), at3.eq(beats_left == 4), last.eq(at2)]
        with m.If(advance_c[5]):
            m.d.sync += [step_done.eq(Mux(at3, n_last_mrb, b_mrb)), step_fill.eq(Mux(at3, n_last, B))]
        with m.If(advance):
            with m.If(last):
                m.d.sync += [in_s1.eq(l_more), row_lane.eq(next_row_lane)]
                m.d.comb += in_beat_n.eq(0)
        # The span counts are next read at the end of the next span, at least 3 cycles on: they step in the
        # cycle after a span's last beat, from a register, rather than behind the beat's own logic; the
        # next span's first lane is kept ready in a register.
        m.d.sync += [span_end.eq(advance & last), l_more.eq(l_more_spans | l_more_blocks),
                     next_row_lane.eq(Mux(l_more_spans, row_lane + stride_lane, block_lane + bstride_lane))]
        with m.If(span_end):
            with m.If(l_more_spans):
                m.d.sync += [l_spans_left.eq(l_spans_left - 1), l_more_spans.eq(l_spans_left != 1)]
            with m.Elif(l_more_blocks):
                m.d.sync += [l_blocks_left.eq(l_blocks_left - 1), l_more_blocks.eq(l_blocks_left != 1),
                             l_spans_left.eq(block_spans), l_more_spans.eq(more_spans_0),
                             block_lane.eq(block_lane + bstride_lane)]
        with m.If(go_span):      # also when a transfer stopped by an error left the sequencer mid-way
            m.d.sync += [row_lane.eq(ext_addr[:lgB]), block_lane.eq(ext_addr[:lgB]),
                         l_spans_left.eq(Mux(merged, 0, rows_m1)), l_blocks_left.eq(blocks_m1),
                         l_more_spans.eq(~merged & multi_rows), l_more_blocks.eq(multi_blocks),
                         entry.eq(buf_addr), entry_p1.eq(buf_addr + 1),
                         pos.eq(0), in_s1.eq(1), in_s2.eq(0)]
            m.d.comb += in_beat_n.eq(0)

        beat = self.beat
        m.d.comb += [beat.in_beat.eq(in_beat), beat.lanes.eq(lanes), beat.complete.eq(complete), beat.s.eq(s),
                     beat.n.eq(n), beat.pos.eq(pos), beat.skip.eq(skip), beat.skip_rb.eq(skip_rb),
                     beat.entry.eq(entry), beat.entry_p1.eq(entry_p1)]
        return m
