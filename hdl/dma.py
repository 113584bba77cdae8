"""The DMA unit: an AXI4 master moving 3-D strided byte regions between external memory and a buffer.

A transfer (LOAD: memory -> buffer entries; STORE: OUT entries -> memory) is `blocks` blocks of `rows`
rows of `row_bytes` bytes; row r of block b is at byte address ext_addr + b * block_stride + r * ext_stride
(any alignment, any strides, 32-bit wrapping) and is buffer entry buf_addr + b * rows + r: entries count on
across blocks. A block's rows form one contiguous span when ext_stride == row_bytes >= bus_bytes,
otherwise each row is its own span; blocks are never merged (emu.timing.dma_spans). Each span is cut
into INCR bursts of at most 256 beats that never cross a 4 KiB boundary (emu.timing.bursts); bursts run
strictly one after another, so with a slave that answers after a fixed latency a burst costs exactly
DMA_READ_LATENCY (LOAD) or DMA_WRITE_LATENCY (STORE) + beats cycles, and the first address goes out
DMA_SETUP = 1 cycle after `start` (once per transfer, not per block):

  LOAD  burst: AR (cycle a) ... first R beat at a + 2 (memory latency) ... last beat, next AR.
  STORE burst: AW (cycle a), W beats a+1 .. a+beats, B accepted at a+beats+1, next AW.

The next row or block is chosen on a burst's last R beat (LOAD) or its B response (STORE), in the same
cycle that ends the burst, so moving to a new row or block costs no cycle beyond that formula: the address
of the next span is ready in a register when the state machine enters ADDR.

Back-pressure is honoured on AR/AW/W (ready from the slave) and R/B are accepted whenever valid in the
matching state. Unaligned first/last beats are handled with per-lane byte selection (WSTRB on writes).
A response other than OKAY sets `error`; the transfer stops after that burst and `busy` drops.

Entries: LOAD assembles the bytes of one entry (up to entry_bytes) and writes it, zero beyond row_bytes,
on the beat that completes it (at most one per beat: a span's rows are >= bus_bytes long). STORE keeps the
current entry in a register and the next one on the OUT buffer's read port, so a beat that straddles
two entries takes bytes from both.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .axi import axi4_signature

__all__ = ["DMA"]


class DMA(wiring.Component):
    """Transfer arguments, sampled on `start` (all unsigned): `rows` (17 bits: the program preload moves up
    to 65536 entries) rows per block, `blocks` (10 bits) blocks, `row_bytes` (10 bits), `buf_addr` (16 bits,
    first entry), `ext_addr` (32 bits), `ext_stride` and `block_stride` (20 bits each, bytes)."""

    def __init__(self, *, bus_bytes: int, entry_bytes: int, id_bits: int = 1):
        self._B, self._EB = bus_bytes, entry_bytes
        super().__init__({
            "start": In(1), "store": In(1), "target": In(2),
            "rows": In(17), "blocks": In(10), "row_bytes": In(10), "buf_addr": In(16),
            "ext_addr": In(32), "ext_stride": In(20), "block_stride": In(20),
            "busy": Out(1), "error": Out(1),
            "wr_en": Out(1), "wr_target": Out(2), "wr_addr": Out(16), "wr_data": Out(8 * entry_bytes),
            "rd_addr": Out(16), "rd_data": In(8 * entry_bytes),
            "bus": Out(axi4_signature(addr_bits=32, data_bits=8 * bus_bytes, id_bits=id_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        B, EB = self._B, self._EB
        lgB = exact_log2(B)
        bus = self.bus

        store, target = Signal(), Signal(2)
        rb, stride = Signal(10), Signal(20)          # bytes per row (entry), bytes between row starts
        block_stride = Signal(20)                    # bytes between block starts
        block_base = Signal(32)                      # start of the current block
        row_base, cur = Signal(32), Signal(32)       # start of the current row; next burst's first byte
        span_rem, spans_left = Signal(27), Signal(17)  # bytes left in this span; spans after it in this block
        span_bytes, block_spans = Signal(27), Signal(17)  # every block: bytes of a span, spans after the first
        blocks_left = Signal(10)                     # blocks after the current one
        entry, pos = Signal(16), Signal(10)          # LOAD: entry being assembled; bytes of it moved
        asm = Signal(8 * EB)                         # LOAD: bytes of `entry` received so far
        cur_entry, nxt_idx, primed = Signal(8 * EB), Signal(16), Signal()  # STORE: current entry, next index
        skip = Signal(range(B))                      # first useful lane of the next beat
        burst_rem = Signal(13)                       # useful bytes left in this burst
        error = Signal()

        m.d.comb += [
            bus.awsize.eq(lgB), bus.arsize.eq(lgB), bus.awburst.eq(1), bus.arburst.eq(1),
            self.error.eq(error), self.wr_target.eq(target), self.wr_addr.eq(entry),
            self.rd_addr.eq(nxt_idx),
        ]

        # ---- burst geometry from `cur` and `span_rem` ----
        lane0 = cur[:lgB]
        to_4k, to_max, limit, nb, beats = Signal(13), Signal(13), Signal(13), Signal(13), Signal(9)
        m.d.comb += [
            to_4k.eq(4096 - cur[:12]),
            to_max.eq(256 * B - lane0),
            limit.eq(Mux(to_4k < to_max, to_4k, to_max)),
            nb.eq(Mux(span_rem < limit, span_rem, limit)),
            beats.eq((lane0 + nb + (B - 1)) >> lgB),
        ]
        aligned = Cat(Const(0, lgB), cur[lgB:])
        m.d.comb += [bus.awaddr.eq(aligned), bus.araddr.eq(aligned),
                     bus.awlen.eq(beats - 1), bus.arlen.eq(beats - 1)]

        # ---- lanes of the current beat ----
        n_beat = Signal(range(B + 1))
        m.d.comb += n_beat.eq(Mux(burst_rem < B - skip, burst_rem, B - skip))
        last_beat = burst_rem == n_beat
        lane_ok = Cat(*((skip <= j) & (j < skip + n_beat) for j in range(B)))
        fill = Signal(11)
        m.d.comb += fill.eq(pos + n_beat)
        complete = fill >= rb
        rb_mask = Cat(*((j < rb).replicate(8) for j in range(EB)))

        # LOAD: lane j -> entry byte pos + j - skip; bytes past the entry spill into the next one
        beat = bus.rdata & Cat(*(lane_ok[j].replicate(8) for j in range(B)))
        z = Cat(Const(0, 8 * EB), beat, Const(0, 8 * (EB + B)))
        off = Signal(range(EB + B + 1))
        m.d.comb += off.eq(EB + skip - pos)
        placed = Signal(8 * (EB + B))
        m.d.comb += placed.eq(z.bit_select(Cat(Const(0, 3), off), 8 * (EB + B)))
        spill = Signal(8 * EB)
        m.d.comb += spill.eq(Cat(placed, Const(0, 8 * EB)).bit_select(Cat(Const(0, 3), rb), 8 * EB))
        m.d.comb += self.wr_data.eq((asm | placed[:8 * EB]) & rb_mask)

        # STORE: lane j <- byte pos + j - skip of (current entry, then the next entry on the read port)
        nxt_off = Signal(range(EB + 1))
        m.d.comb += nxt_off.eq(EB - rb)
        nxt_placed = Cat(Const(0, 8 * EB), self.rd_data, Const(0, 8 * EB)).bit_select(
            Cat(Const(0, 3), nxt_off), 16 * EB)
        pair = Signal(16 * EB)
        m.d.comb += pair.eq((cur_entry & rb_mask) | nxt_placed)
        w_off = Signal(range(2 * B + EB + 1))
        m.d.comb += w_off.eq(B + pos - skip)
        m.d.comb += [
            bus.wdata.eq(Cat(Const(0, 8 * B), pair, Const(0, 8 * B)).bit_select(Cat(Const(0, 3), w_off), 8 * B)),
            bus.wstrb.eq(lane_ok),
            bus.wlast.eq(last_beat),
        ]

        def next_burst(failed):
            with m.If(failed):
                m.next = "IDLE"
            with m.Elif(span_rem != 0):
                m.next = "ADDR"
            with m.Elif(spans_left != 0):
                m.d.sync += [spans_left.eq(spans_left - 1), row_base.eq(row_base + stride),
                             cur.eq(row_base + stride), span_rem.eq(rb)]
                m.next = "ADDR"
            with m.Elif(blocks_left != 0):
                next_block = block_base + block_stride
                m.d.sync += [blocks_left.eq(blocks_left - 1), block_base.eq(next_block),
                             row_base.eq(next_block), cur.eq(next_block),
                             span_rem.eq(span_bytes), spans_left.eq(block_spans)]
                m.next = "ADDR"
            with m.Else():
                m.next = "IDLE"

        def advance_lanes():
            m.d.sync += [skip.eq(0), burst_rem.eq(burst_rem - n_beat)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    merged = (self.ext_stride == self.row_bytes) & (self.row_bytes >= B)
                    first_span = Mux(merged, self.rows * self.row_bytes, self.row_bytes)
                    spans_after_first = Mux(merged, 0, self.rows - 1)
                    m.d.sync += [
                        store.eq(self.store), target.eq(self.target), rb.eq(self.row_bytes),
                        stride.eq(self.ext_stride), block_stride.eq(self.block_stride),
                        block_base.eq(self.ext_addr), row_base.eq(self.ext_addr), cur.eq(self.ext_addr),
                        span_rem.eq(first_span), spans_left.eq(spans_after_first),
                        span_bytes.eq(first_span), block_spans.eq(spans_after_first),
                        blocks_left.eq(self.blocks - 1),
                        entry.eq(self.buf_addr), pos.eq(0), asm.eq(0), error.eq(0), primed.eq(0),
                        nxt_idx.eq(self.buf_addr),
                    ]
                    m.d.comb += self.rd_addr.eq(self.buf_addr)
                    m.next = "ADDR"
            with m.State("ADDR"):
                m.d.comb += self.busy.eq(1)
                with m.If(store & ~primed):
                    # the read port now shows entry buf_addr; fetch buf_addr + 1 behind it
                    m.d.sync += [cur_entry.eq(self.rd_data), nxt_idx.eq(nxt_idx + 1), primed.eq(1)]
                    m.d.comb += self.rd_addr.eq(nxt_idx + 1)
                m.d.comb += [bus.awvalid.eq(store), bus.arvalid.eq(~store)]
                with m.If(Mux(store, bus.awready, bus.arready)):
                    m.d.sync += [burst_rem.eq(nb), skip.eq(lane0), cur.eq(cur + nb), span_rem.eq(span_rem - nb)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                with m.If(~store):
                    m.d.comb += bus.rready.eq(1)
                    with m.If(bus.rvalid):
                        bad = bus.rresp != 0
                        with m.If(bad):
                            m.d.sync += error.eq(1)
                        advance_lanes()
                        with m.If(complete):
                            m.d.comb += self.wr_en.eq(1)
                            m.d.sync += [asm.eq(spill), pos.eq(fill - rb), entry.eq(entry + 1)]
                        with m.Else():
                            m.d.sync += [asm.eq(asm | placed[:8 * EB]), pos.eq(fill)]
                        with m.If(last_beat):
                            next_burst(error | bad)
                with m.Else():
                    m.d.comb += bus.wvalid.eq(1)
                    with m.If(bus.wready):
                        advance_lanes()
                        with m.If(complete):
                            m.d.sync += [cur_entry.eq(self.rd_data), nxt_idx.eq(nxt_idx + 1), pos.eq(fill - rb)]
                            m.d.comb += self.rd_addr.eq(nxt_idx + 1)
                        with m.Else():
                            m.d.sync += pos.eq(fill)
                        with m.If(last_beat):
                            m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += [self.busy.eq(1), bus.bready.eq(1)]
                with m.If(bus.bvalid):
                    bad = bus.bresp != 0
                    with m.If(bad):
                        m.d.sync += error.eq(1)
                    next_burst(error | bad)
        return m
