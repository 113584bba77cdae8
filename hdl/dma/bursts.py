"""The DMA's burst address generator: the spans of a transfer cut into AXI INCR bursts.

A block's rows form one span when ext_stride == row_bytes >= bus_bytes, otherwise each row is its own span;
blocks are never merged (emu.contract.timing.dma_spans). Each span is cut into INCR bursts of at most 256
beats that never cross a 4 KiB boundary (emu.contract.timing.bursts). The first span is loaded at
`go_span`. The burst geometry (4 KiB / 256-beat limits, beats - 1, where a cut leaves the address and the
span's bytes, what an accepted address does next as one-hot flags) is worked out in two register stages
behind the current address; a burst lasts at least 3 cycles, so the next burst's address, length and step
are ready when the bus state machine returns to ADDR, and moving to a new row or block costs no cycle.
LOAD's first address goes out 3 cycles after the span set-up.
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from emu.contract import timing
from emu.contract.config import EXT_ADDR_BITS

from hdl.axi import BURST_INCR
from hdl.dma.signatures import (BOUNDARY_BITS, LEN_BITS, LIM_BITS, SPAN_BITS, burst_signature, bus_state_signature,
                                span_signature, transfer_signature)
from hdl.fpga import family_of

__all__ = ["BurstGenerator"]


class BurstGenerator(wiring.Component):
    """`xfer` (transfer_signature) and `span` (span_signature): the transfer; `bus_state`
    (bus_state_signature; `in_addr_n` only): the bus state machine enters or stays in ADDR, where an address
    is accepted on `awready` (STORE) or `arready` (LOAD). `burst` (burst_signature): the next burst, stepped
    by each accepted address; `final` is set two cycles after the acceptance of the last burst."""

    def __init__(self, *, bus_bytes: int):
        self._B = bus_bytes
        super().__init__({"xfer": In(transfer_signature()), "span": In(span_signature(bus_bytes)),
                          "bus_state": In(bus_state_signature()), "awready": In(1), "arready": In(1),
                          "burst": Out(burst_signature())})

    def elaborate(self, platform):
        m = Module()
        B = self._B
        lgB = exact_log2(B)
        family = family_of(platform)

        def copies(value, count, name):
            return family.copies(m, value, count, name=name)

        xfer, span = self.xfer, self.span
        store, rb, ext_addr, stride, block_stride = (xfer.store, xfer.row_bytes, xfer.ext_addr, xfer.ext_stride,
                                                     xfer.block_stride)
        go_span, merged, span_now, span_now_m1 = span.go_span, span.merged, span.span_now, span.span_now_m1
        span_bytes, span_bytes_m1, rb_m1 = span.span_bytes, span.span_bytes_m1, span.rb_m1
        block_spans, more_spans_0 = span.block_spans, span.more_spans_0
        rows_m1, blocks_m1, multi_rows, multi_blocks = span.rows_m1, span.blocks_m1, span.multi_rows, span.multi_blocks

        block_base, row_base, cur = Signal(EXT_ADDR_BITS), Signal(EXT_ADDR_BITS), Signal(EXT_ADDR_BITS)
        nxt_row, nxt_block = Signal(EXT_ADDR_BITS), Signal(EXT_ADDR_BITS)  # row_base + stride, block_base + its stride
        span_rem, spans_left, blocks_left = Signal(SPAN_BITS), Signal(17), Signal(10)
        span_rem_m1 = Signal(LIM_BITS)                     # (span_rem - 1) % 2**LIM_BITS, stepped alongside span_rem
        final = Signal()
        more_spans, more_blocks = Signal(), Signal()       # spans_left != 0, blocks_left != 0, registered
        m.d.sync += [nxt_row.eq(row_base + stride), nxt_block.eq(block_base + block_stride)]
        with m.If(go_span):
            m.d.sync += [block_base.eq(ext_addr), row_base.eq(ext_addr), cur.eq(ext_addr),
                         span_rem.eq(span_now), span_rem_m1.eq(span_now_m1), spans_left.eq(Mux(merged, 0, rows_m1)),
                         blocks_left.eq(blocks_m1), final.eq(0),
                         more_spans.eq(~merged & multi_rows), more_blocks.eq(multi_blocks)]
        # geometry, two register stages behind cur / span_rem (a burst lasts >= 3 cycles)
        # (AXI lengths are beats - 1; only their low 8 bits are kept, each computed with one short adder)
        lane0 = cur[:lgB]
        boundary, max_beats = timing.AXI_BOUNDARY, timing.AXI_MAX_BURST_BEATS   # 4 KiB, 256
        lim_nb, lim_len = Signal(LIM_BITS), Signal(LEN_BITS)  # the 4 KiB / 256-beat limit: bytes, beats - 1
        lim_cur = Signal(EXT_ADDR_BITS)                               # cur + lim_nb: where a cut burst leaves cur
        span_len = Signal(LEN_BITS)                               # beats of the rest of the span - 1
        g_rem_short, g_addr = Signal(name="g_rem_short"), Signal(EXT_ADDR_BITS, name="g_addr")
        # span_rem <= lim_nb when span_rem < 2**LIM_BITS, for each limit: 4 KiB away (fits_4k) or 256 beats (fits_256)
        g_fits_4k, g_fits_256, g_near_4k = Signal(name="g_fits_4k"), Signal(name="g_fits_256"), Signal()
        beats_4k_min = (boundary >> lgB) - max_beats       # 4 KiB boundary 256 beats away or less from here on
        near_4k = cur[lgB:BOUNDARY_BITS] >= beats_4k_min if beats_4k_min > 0 else Const(1)
        # beats of the span = span_rem // B + (lane0 + span_rem % B + B - 1) // B, the second term 0..2
        lo_beats = Array(Const((i % B + (i >> lgB) + B - 1) >> lgB, 2)
                         for i in range(B * B))[Cat(lane0, span_rem[:lgB])]
        rem_beats = span_rem[lgB:lgB + LEN_BITS]
        m.d.sync += [
            lim_nb.eq(Mux(near_4k, boundary - cur[:BOUNDARY_BITS], max_beats * B - lane0)),
            lim_len.eq(Mux(near_4k, (boundary >> lgB) - 1 - cur[lgB:BOUNDARY_BITS], max_beats - 1)),
            # the next 4 KiB boundary, or the bus word 256 beats on: each an incrementer of cur's high bits
            lim_cur.eq(Mux(near_4k, Cat(Const(0, BOUNDARY_BITS), cur[BOUNDARY_BITS:] + 1),
                           Cat(Const(0, lgB), cur[lgB:] + max_beats))),
            # three short sums from registers, picked by the low-bit table (no adder behind an adder)
            span_len.eq(Array([rem_beats - 1, rem_beats, rem_beats + 1, rem_beats])[lo_beats]),
            g_rem_short.eq(span_rem[LIM_BITS:] == 0),
            # the rest of the span fits before the limit, span_rem <= lim_nb, worked out beside lim_nb rather
            # than from it: span_rem - 1 <= lim_nb - 1, whose right side is the complement of cur's low bits
            # (4095 - cur[:12]; 256 * B - 1 - lane0), so that it is one carry chain between registers; both
            # are registered and picked a stage later, so that no wide LUT merges the two behind the chain
            g_fits_4k.eq(span_rem_m1 <= ~cur[:BOUNDARY_BITS]),
            g_fits_256.eq(span_rem_m1 <= Cat(~lane0, Const(max_beats - 1, LEN_BITS))),
            g_near_4k.eq(near_4k),
            g_addr.eq(Cat(Const(0, lgB), cur[lgB:])),
        ]
        d_addr, d_len = Signal(EXT_ADDR_BITS), Signal(LEN_BITS)
        d_cur, d_rem = Signal(EXT_ADDR_BITS), Signal(SPAN_BITS)       # cur and span_rem after a burst cut at the limit
        # what an accepted address does next, one-hot: cut the span at the limit, move to the next row,
        # to the next block, or finish
        # (a copy for each group of registers an accepted address steps: cur; the bases; the counts)
        take_all = g_rem_short & Mux(g_near_4k, g_fits_4k, g_fits_256)
        d_rem_m1 = Signal(LIM_BITS)
        m.d.sync += [d_addr.eq(g_addr), d_cur.eq(lim_cur), d_rem.eq(span_rem - lim_nb),
                     d_rem_m1.eq(span_rem_m1 - lim_nb),
                     d_len.eq(Mux(take_all, span_len, lim_len))]
        d_step = copies(Cat(~take_all, take_all & more_spans, take_all & ~more_spans & more_blocks,
                            take_all & ~more_spans & ~more_blocks), 3, "burst_step")
        m.d.comb += [self.burst.addr.eq(d_addr), self.burst.len.eq(d_len), self.burst.size.eq(lgB),
                     self.burst.burst.eq(BURST_INCR), self.burst.final.eq(final)]

        # An address is accepted (the bus state is ADDR). The bus state machine's ADDR flag has a copy here
        # for each group of registers the acceptance steps, besides the one of the state machine, split by
        # direction so that each acceptance is one LUT of a copy and the two ready inputs.
        in_addr_n = self.bus_state.in_addr_n
        in_addr_c = copies(Cat(in_addr_n & store, in_addr_n & ~store), 3, "in_addr")
        accept_c = [(c[0] & self.awready) | (c[1] & self.arready) for c in in_addr_c]

        def pick(step, cut, row, block):
            """The value the one-hot step selects, as an AND-OR (the step flags are exclusive)."""
            return (Mux(step[0], cut, 0) | Mux(step[1], row, 0) | Mux(step[2], block, 0))

        step = d_step[0]
        with m.If(accept_c[0] & ~step[3]):
            m.d.sync += cur.eq(pick(step, d_cur, nxt_row, nxt_block))
        step = d_step[1]
        with m.If(accept_c[1] & (step[1] | step[2])):
            m.d.sync += row_base.eq(Mux(step[1], nxt_row, nxt_block))
        with m.If(accept_c[1] & step[2]):
            m.d.sync += block_base.eq(nxt_block)
        step = d_step[2]
        with m.If(accept_c[2] & ~step[3]):
            m.d.sync += [span_rem.eq(pick(step, d_rem, rb, span_bytes)),
                         span_rem_m1.eq(pick(step, d_rem_m1, rb_m1, span_bytes_m1))]
        # The span counts and `final` are next read by the d stage two cycles after an acceptance and at
        # the burst's end: they step in the cycle after it, from registers.
        count_step = Signal(3)                              # next row, next block, end
        m.d.sync += count_step.eq(Mux(accept_c[2], step[1:], 0))
        with m.If(count_step[0]):
            m.d.sync += [spans_left.eq(spans_left - 1), more_spans.eq(spans_left != 1)]
        with m.If(count_step[1]):
            # block_spans == spans_left at go_span, so the block's first span has more_spans' value then
            m.d.sync += [blocks_left.eq(blocks_left - 1), more_blocks.eq(blocks_left != 1),
                         more_spans.eq(more_spans_0), spans_left.eq(block_spans)]
        with m.If(count_step[2]):
            m.d.sync += final.eq(1)
        return m
