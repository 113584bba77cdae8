"""The DMA's transfer constants and span set-up (cycles 2 to SPAN_CYCLE of a transfer).

From `go` (cycle 1), rows * row_bytes enters a registered shift-add tree (pipeline.product), and the
per-transfer constants (merge test, row mask, B - row_bytes, the span's beat count when it is below 3) take
a register stage or two each. In cycle SPAN_CYCLE (6), `go_span`, the product is ready and the burst address
generator and the lane sequencer load their first span. Nothing reads the constants before the span
set-up, so each is given the register stages it needs.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from hdl.dma.cycles import SPAN_CYCLE
from hdl.dma.lanes import therm
from hdl.dma.signatures import LIM_BITS, SPAN_BITS, entry_words, span_signature, transfer_signature
from hdl.pipeline import delay, product

__all__ = ["SpanSetup"]


class SpanSetup(wiring.Component):
    """`xfer` (transfer_signature): the arguments and `go`. `span` (span_signature): the constants, from
    `go_span` on. `rb_mask`: the bytes of an entry of `entry_bytes` bytes (padded to whole words of
    `bus_bytes`) below row_bytes, one bit a byte, from cycle 5."""

    def __init__(self, *, bus_bytes: int, entry_bytes: int):
        self._B, self._EB = bus_bytes, entry_bytes
        super().__init__({"xfer": In(transfer_signature()), "span": Out(span_signature(bus_bytes)),
                          "rb_mask": Out(-(-entry_bytes // bus_bytes) * bus_bytes)})

    def elaborate(self, platform):
        m = Module()
        B, EB = self._B, self._EB
        lgB = exact_log2(B)
        NW = entry_words(EB, B)
        xfer = self.xfer
        go, rows, blocks, rb = xfer.go, xfer.rows, xfer.blocks, xfer.row_bytes
        stride, block_stride = xfer.ext_stride, xfer.block_stride

        merged = Signal()                                  # cycle 4: ext_stride == row_bytes >= B
        stride_is_rb, rb_ge_bus = Signal(), Signal()
        b_mrb = Signal(signed(12))                         # B - row_bytes
        stride_lane, bstride_lane = Signal(lgB), Signal(lgB)
        rows_m1, blocks_m1 = Signal(rows.shape()), Signal(blocks.shape())
        multi_rows, multi_blocks = Signal(), Signal()      # rows != 1, blocks != 1
        rb_c = delay(m, rb, 1, "row_bytes_c")              # row_bytes for the constants: a fanout of its own
        m.d.sync += [stride_is_rb.eq(stride == rb_c), rb_ge_bus.eq(rb_c >= B), merged.eq(stride_is_rb & rb_ge_bus),
                     b_mrb.eq(B - rb_c), stride_lane.eq(stride[:lgB]), bstride_lane.eq(block_stride[:lgB]),
                     rows_m1.eq(rows - 1), blocks_m1.eq(blocks - 1),
                     multi_rows.eq(rows != 1), multi_blocks.eq(blocks != 1)]
        # entry bytes below row_bytes (cycle 5): whole words, then the lanes of the word row_bytes ends in
        rb_mask = Signal(NW * B)
        rb_word_full, rb_word_end, rb_lanes = Signal(NW), Signal(NW), Signal(B)
        # row_bytes // B > w, from the compares of its high and low parts (cycle 3), combined at cycle 4
        rb_w = rb_c[lgB:]
        hi_gt, hi_eq, lo_gt = Signal(NW), Signal(NW), Signal(NW)
        m.d.sync += [hi_gt.eq(Cat(*(rb_w[3:] > (w >> 3) for w in range(NW)))),
                     hi_eq.eq(Cat(*(rb_w[3:] == (w >> 3) for w in range(NW)))),
                     lo_gt.eq(Cat(*(rb_w[:3] > (w & 7) for w in range(NW))))]
        m.d.sync += [rb_word_full.eq(hi_gt | (hi_eq & lo_gt)),
                     rb_word_end.eq(Cat(*(rb_c[lgB:] == w for w in range(NW)))), rb_lanes.eq(therm(rb_c[:lgB], B)),
                     rb_mask.eq(Cat(*(rb_word_full[k // B] | (rb_word_end[k // B] & rb_lanes[k % B])
                                      for k in range(NW * B))))]
        # rows * row_bytes through a registered shift-add tree: the bytes of a merged span
        prod = product(m, rows, rb, name="span_product")
        go_span = delay(m, go, SPAN_CYCLE - 1, "go_span")  # the cycle the product is ready
        span_now = Mux(merged, prod, rb)
        # every block: bytes of a span, the spans after its first
        span_bytes, block_spans = Signal(SPAN_BITS), Signal(17)
        m.d.sync += [span_bytes.eq(span_now), block_spans.eq(Mux(merged, 0, rows_m1))]
        more_spans_0 = Signal()                            # block_spans != 0
        with m.If(go_span):
            m.d.sync += more_spans_0.eq(~merged & multi_rows)
        # the same bytes - 1, modulo 2**13, for the burst fit compare (spans are >= 1 byte: row_len >= 1);
        # row_bytes - 1 is a register long before, so that only the product's decrement sits before the pick
        span_bytes_m1, rb_m1 = Signal(LIM_BITS), Signal(LIM_BITS)
        span_now_m1 = Mux(merged, prod[:LIM_BITS] - 1, rb_m1)
        m.d.sync += [span_bytes_m1.eq(span_now_m1), rb_m1.eq(rb_c - 1)]
        # The span's beats are span_bytes // B plus 0, 1 or 2 (from the low bits); the three sums are kept
        # for the product and for row_bytes, each a short adder from a register, and the lane sequencer
        # picks one. Whether span_bytes // B is 0, 1 or 2 needs no product: a merged span of 3 rows or
        # more is at least 3 * B bytes, one of 1 or 2 rows is row_bytes or 2 * row_bytes (cycles 2-3).
        prod_hi = prod[lgB:]
        prod_hi_p1, prod_hi_p2 = Signal(SPAN_BITS - lgB), Signal(SPAN_BITS - lgB)
        rb_hi_p1, rb_hi_p2 = Signal(10 - lgB), Signal(10 - lgB)
        m.d.sync += [prod_hi_p1.eq(prod_hi + 1), prod_hi_p2.eq(prod_hi + 2),
                     rb_hi_p1.eq(rb_c[lgB:] + 1), rb_hi_p2.eq(rb_c[lgB:] + 2)]
        small_hi, big_span = Signal(11 - lgB), Signal()    # span // B when it is below 3 beats; it is not
        hi0, hi1, hi2 = Signal(), Signal(), Signal()
        rows_is_2, rows_gt_2 = Signal(), Signal()
        m.d.sync += [rows_is_2.eq(rows == 2), rows_gt_2.eq(rows > 2),
                     small_hi.eq(Mux(merged & rows_is_2, Cat(rb_c, 0)[lgB - 1:], rb_c[lgB:])),
                     big_span.eq(merged & rows_gt_2),
                     hi0.eq(~big_span & (small_hi == 0)), hi1.eq(~big_span & (small_hi == 1)),
                     hi2.eq(~big_span & (small_hi == 2))]

        span = self.span
        m.d.comb += [
            span.go_span.eq(go_span), span.merged.eq(merged),
            span.span_now.eq(span_now), span.span_now_m1.eq(span_now_m1),
            span.span_bytes.eq(span_bytes), span.span_bytes_m1.eq(span_bytes_m1),
            span.block_spans.eq(block_spans), span.more_spans_0.eq(more_spans_0), span.rb_m1.eq(rb_m1),
            span.rows_m1.eq(rows_m1), span.blocks_m1.eq(blocks_m1),
            span.multi_rows.eq(multi_rows), span.multi_blocks.eq(multi_blocks),
            span.b_mrb.eq(b_mrb), span.stride_lane.eq(stride_lane), span.bstride_lane.eq(bstride_lane),
            span.prod_hi.eq(prod_hi), span.prod_hi_p1.eq(prod_hi_p1), span.prod_hi_p2.eq(prod_hi_p2),
            span.rb_hi_p1.eq(rb_hi_p1), span.rb_hi_p2.eq(rb_hi_p2),
            span.hi0.eq(hi0), span.hi1.eq(hi1), span.hi2.eq(hi2),
            self.rb_mask.eq(rb_mask),
        ]
        return m
