"""The DMA unit: an AXI4 master moving 3-D strided byte regions between external memory and a buffer.

A transfer (LOAD: memory -> buffer entries; STORE: OUT entries -> memory) is `blocks` blocks of `rows`
rows of `row_bytes` bytes; row r of block b is at byte address ext_addr + b * block_stride + r * ext_stride
(any alignment, any strides, 32-bit wrapping) and is buffer entry buf_addr + b * rows + r: entries count on
across blocks. A block's rows form one contiguous span when ext_stride == row_bytes >= bus_bytes,
otherwise each row is its own span; blocks are never merged (emu.contract.timing.dma_spans). Each span is cut
into INCR bursts of at most 256 beats that never cross a 4 KiB boundary (emu.contract.timing.bursts); bursts run
strictly one after another, so with a slave that answers after a fixed latency a burst costs exactly
DMA_READ_LATENCY (LOAD) or DMA_WRITE_LATENCY (STORE) + beats cycles. The first address goes out
emu.contract.timing.DMA_LOAD_SETUP (or DMA_STORE_SETUP) - ISSUE_LATENCY cycles after `start` (once per transfer;
the sequencer's start register is the rest), and a LOAD stays busy DMA_LOAD_DRAIN cycles after its last R
beat, until its last entry write is done:

  LOAD  burst: AR (cycle a) ... first R beat at a + 2 (memory latency) ... last beat, next AR.
  STORE burst: AW (cycle a), W beats a+1 .. a+beats, B accepted at a+beats+1, next AW.

`busy` and `error` are flip-flops. The arguments are registered in every cycle the unit is idle, so `start`
(from a far-away sequencer flip-flop) reaches no argument enable: only the bus state machine's IDLE exit,
`busy`, `error` and `go`. A `start` while busy is ignored.

Pipeline (aimed at 150 MHz for the whole accelerator on an LFE5U-85F-6, so at more than that standalone):
  cycle 0  `start`: the arguments are registered;
  cycle 1  `go`; rows * row_bytes enters a registered shift-add tree (pipeline.product), the per-transfer
           constants (merge test, row mask, B - row_bytes, the span's beat count when it is below 3) take
           a register stage or two each;
  cycle SPAN_CYCLE (6)  span set-up: the product is ready, the burst address generator and the lane
           sequencer load their first span;
  then     burst geometry (4 KiB / 256-beat limits, beats - 1, where a cut leaves the address and the
           span's bytes, what an accepted address does next as one-hot flags) in two register stages behind
           the current address; a burst lasts at least 3 cycles, so the next burst's address, length and step
           are ready when the state machine returns to ADDR and moving to a new row or block costs no cycle.
           LOAD's first address goes out 3 cycles after the span set-up.
The lane sequencer walks the same spans a beat at a time (first lane, bytes, the entry byte the beat
starts at), independent of the burst cuts, which are bus-aligned inside a span. Per span it takes two
set-up states: S1 counts the span's beats and works out the first beat's bytes both for a one-beat span and
for a longer one, S2 picks one. Its beat bookkeeping (bytes past the entry's end `s`, entry + 1, the next
step of `s` chosen with the registered "last beat next" flag) is kept in registers next to the values it
derives from, so each beat's step is an adder or a mux behind flip-flops; the states are one-hot
flip-flops, and each group of registers a beat steps has its own copy of the beat condition. The span
counts step in the cycle after a span's end (they are read again 3 cycles later at the earliest).

Back-pressure is honoured on AR/AW/W (ready from the slave) and R/B are accepted whenever valid in the
matching state. Unaligned first/last beats are handled with per-lane byte selection (WSTRB on writes).
A response other than OKAY sets `error`; the transfer stops after that burst and `busy` drops.

LOAD: each accepted R beat is registered (stage 0) with what it covers (the entry word it starts in,
one-hot; its lane window; the bytes that spill into the next entry). It is rotated twice (the bytes of the
current entry, the bytes of the next) in two stages: stage 1 by the rotation's low two bits (with a copy of
them per bus lane), stage 2 by the rest, into a copy per group of entry words, while it decodes the
per-byte write enables; stage 3 merges it into the assembly register and writes the completed entry
(wr_en/wr_addr/wr_data are registers), zero beyond row_bytes. At most one entry completes per beat (a
span's rows are >= bus_bytes long), so the write comes 4 cycles after the beat that completes it.

STORE: a beat producer runs ahead of the W channel with credits for an 8-beat W FIFO: P0 registers the
beat, C1 presents the entry holding its last byte on `rd_addr` (a register), and `rd_latency` cycles later
(the 1-cycle source is registered once more) two bus words of it are picked and funnelled onto the lanes;
the word offsets are worked out while the read is under way, the word indices with a copy per bus lane.
A beat that straddles two entries takes its first bytes from a carry register filled from the previous
beat's entry. W beats go out of the FIFO back to back once the burst's AW is accepted. The first P0 comes
3 cycles after the span set-up (S1, S2), and its beat can leave the FIFO 6 cycles after P0, so STORE's first
address goes out 8 cycles after the span set-up.

The copies are `Family.copies` (hdl/fpga/family.py): on ECP5 flip-flops Yosys keeps; elsewhere one
register stands for them all, which is the same cycle for cycle.
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from emu.contract import timing
from emu.contract.config import EXT_ADDR_BITS, PARAM_BYTES
from emu.contract.isa import FIELDS, INSTR_BYTES, Opcode

from hdl.axi import axi4_signature
from hdl.fpga import family_of
from hdl.pipeline import delay, product, product_latency

__all__ = ["DMA", "dma_command_signature", "LOAD_SETUP_MIN", "STORE_SETUP_MIN", "LOAD_DRAIN_MIN"]

#: The cycle of a transfer (the arguments are registered in cycle 1) in which rows * row_bytes, the bytes
#: of a merged span, leaves its registered shift-add tree and the spans are set up.
SPAN_CYCLE = 1 + product_latency(10)
#: Cycles from `start` to the first address that the pipeline needs. LOAD: the span set-up, then the two
#: burst geometry stages. STORE: the span set-up, the lane sequencer's two set-up states, the producer's
#: first beat (P0) through the rd_addr register, 2 cycles of read latency, the word indices, the word select
#: and lane funnel, and the W FIFO.
LOAD_SETUP_MIN = SPAN_CYCLE + 3
STORE_SETUP_MIN = SPAN_CYCLE + 8
#: Cycles a LOAD's last entry write comes after its last R beat: the beat register, the two rotation
#: registers (byte enables with the second), then the write register.
LOAD_DRAIN_MIN = 4
W_FIFO_DEPTH = 8                  # a power of two: the W FIFO pointers wrap
#: AXI4's burst limits, from the contract: the address bits below the boundary a burst never crosses, the
#: compare window of the burst-fit flags (one bit more), and the width of an AXI length (beats - 1).
BOUNDARY_BITS = exact_log2(timing.AXI_BOUNDARY)
LIM_BITS = BOUNDARY_BITS + 1
LEN_BITS = exact_log2(timing.AXI_MAX_BURST_BEATS)

LOAD_SETUP = timing.DMA_LOAD_SETUP - timing.ISSUE_LATENCY    # the sequencer's start register is the rest
STORE_SETUP = timing.DMA_STORE_SETUP - timing.ISSUE_LATENCY
LOAD_DRAIN = timing.DMA_LOAD_DRAIN


#: AccelConfig's limits: every buffer depth (instr_depth included) is at most 2**16 entries, and an entry at
#: most 64 lanes (rows, cols <= 64).
_DEPTH_MAX = 1 << 16
_LANES_MAX = 64


def dma_command_signature() -> wiring.Signature:
    """The DMA's command interface as the sequencer sees it (hdl/sequencer.py `dma`; the DMA's `cmd` is its
    flip): Out `start` (a one-cycle strobe), `store` (1: STORE, 0: LOAD), `target` and the transfer
    arguments, all unsigned; In `busy` and `error` (flip-flops). The widths are the LOAD/STORE fields'
    (emu.contract.isa.FIELDS) but for `rows` and `row_bytes`, which are not fields."""
    ld = {f.name: f.width for f in FIELDS[Opcode.LOAD]}
    assert ld == {f.name: f.width for f in FIELDS[Opcode.STORE]} and ld["ext_addr"] == EXT_ADDR_BITS
    return wiring.Signature({
        "start": Out(1), "store": Out(1),
        # LOAD's `buf` (ACT, WGT, PARAM), or the sequencer's TARGET_INSTR for the program preload
        "target": Out(ld["buf"]),
        # one bit over the field: the program preload moves prog_len rows, up to instr_depth <= 2**16
        "rows": Out(max(ld["rows"], _DEPTH_MAX.bit_length())),
        "blocks": Out(ld["blocks"]),
        # bytes of one row, from the decoder (row_len * element bytes) or INSTR_BYTES for the preload: a legal
        # row_len is at most an entry's lanes, so a PARAM row (the longest) is at most 64 * PARAM_BYTES bytes
        "row_bytes": Out(max(_LANES_MAX * PARAM_BYTES, INSTR_BYTES).bit_length()),
        "buf_addr": Out(ld["buf_addr"]), "ext_addr": Out(EXT_ADDR_BITS),
        "ext_stride": Out(ld["ext_stride"]), "block_stride": Out(ld["block_stride"]),
        "busy": In(1), "error": In(1),
    })


def _therm(n, width):
    """Bits j < n, j in [0, width)."""
    return Cat(*(n > j for j in range(width)))


class DMA(wiring.Component):
    """`cmd` (dma_command_signature, flipped): the transfer arguments, sampled on `cmd.start`: `rows` rows per
    block, `blocks` blocks, `row_bytes` bytes a row, `buf_addr` (first entry), `ext_addr`, `ext_stride` and
    `block_stride` (bytes); `cmd.busy` and `cmd.error` back.

    `rd_latency` (1 or 2): cycles from `rd_addr` to `rd_data` of the STORE source (2: a block RAM with an
    output register)."""

    def __init__(self, *, bus_bytes: int, entry_bytes: int, id_bits: int = 1, rd_latency: int = 1):
        if rd_latency not in (1, 2):
            self._MustUse__silence = True   # never elaborated: no "created but never used" warning
            raise ValueError(f"rd_latency must be 1 or 2 (cycles from rd_addr to rd_data), not {rd_latency!r}")
        if LOAD_SETUP < LOAD_SETUP_MIN or STORE_SETUP < STORE_SETUP_MIN or LOAD_DRAIN != LOAD_DRAIN_MIN:
            raise ValueError(f"emu.contract.timing DMA_LOAD_SETUP={timing.DMA_LOAD_SETUP} / DMA_STORE_SETUP="
                             f"{timing.DMA_STORE_SETUP} / DMA_LOAD_DRAIN={timing.DMA_LOAD_DRAIN} do not match the "
                             f"DMA pipeline (DMA_LOAD_SETUP - ISSUE_LATENCY >= {LOAD_SETUP_MIN}, DMA_STORE_SETUP - "
                             f"ISSUE_LATENCY >= {STORE_SETUP_MIN}, DMA_LOAD_DRAIN = {LOAD_DRAIN_MIN})")
        self._B, self._EB, self._rd_latency = bus_bytes, entry_bytes, rd_latency
        cmd = dma_command_signature()
        super().__init__({
            "cmd": In(cmd),
            "wr_en": Out(1), "wr_target": Out(cmd.members["target"].shape), "wr_addr": Out(16),
            "wr_data": Out(8 * entry_bytes),
            "rd_addr": Out(16), "rd_data": In(8 * entry_bytes),
            "bus": Out(axi4_signature(addr_bits=EXT_ADDR_BITS, data_bits=8 * bus_bytes, id_bits=id_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        B, EB = self._B, self._EB
        lgB = exact_log2(B)
        NW = -(-EB // B)             # entry words of B bytes (the last one padded with zeros)
        bus, cmd = self.bus, self.cmd
        family = family_of(platform)

        def copies(value, count, name):
            return family.copies(m, value, count, name=name)

        # ---- arguments: registered every cycle while idle, so the far `start` reaches no enable ----
        busy = Signal()                                 # a flip-flop: the bus state machine is not in IDLE
        # the bus states ADDR and a LOAD's DATA have flip-flops of their own, so that an accepted address (which
        # steps ~150 address-generator flip-flops) and an R beat are one LUT from registers and the inputs
        in_addr, in_rdata, in_wdata = Signal(), Signal(), Signal()   # ADDR; DATA of a LOAD; of a STORE
        # flags with copies are assigned through their next values (`_n`), which the copies register too
        in_addr_n, in_rdata_n = Signal(), Signal()
        m.d.comb += [in_addr_n.eq(in_addr), in_rdata_n.eq(in_rdata)]
        m.d.sync += [in_addr.eq(in_addr_n), in_rdata.eq(in_rdata_n)]
        credit_ok, credit_ok_n = Signal(), Signal()        # a STORE with credits != 0, registered with them
        m.d.comb += credit_ok_n.eq(credit_ok)
        m.d.sync += credit_ok.eq(credit_ok_n)
        store, target = Signal(), Signal(cmd.target.shape())
        rows, blocks, rb, buf_addr = (Signal(cmd.rows.shape()), Signal(cmd.blocks.shape()),
                                      Signal(cmd.row_bytes.shape()), Signal(cmd.buf_addr.shape()))
        ext_addr, stride, block_stride = (Signal(cmd.ext_addr.shape()), Signal(cmd.ext_stride.shape()),
                                          Signal(cmd.block_stride.shape()))
        go = Signal()                                   # cycle 1 of a transfer
        # `error` is assigned through its next value, which a flip-flop of its own registers for the output:
        # the sequencer's register of it is across the chip, and the bus state machine reads this one
        error, error_n = Signal(), Signal()
        m.d.comb += error_n.eq(error)
        m.d.sync += error.eq(error_n)
        with m.If(~busy):
            m.d.sync += [store.eq(cmd.store), target.eq(cmd.target), rows.eq(cmd.rows),
                         blocks.eq(cmd.blocks), rb.eq(cmd.row_bytes), buf_addr.eq(cmd.buf_addr),
                         ext_addr.eq(cmd.ext_addr), stride.eq(cmd.ext_stride),
                         block_stride.eq(cmd.block_stride)]
        m.d.sync += go.eq(cmd.start & ~busy)
        with m.If(cmd.start & ~busy):
            m.d.comb += error_n.eq(0)
        m.d.comb += [self.wr_target.eq(target), cmd.busy.eq(busy),
                     cmd.error.eq(copies(error_n, 1, "error_out")[0])]

        # ---- transfer constants (cycles 2-5), the span product (cycle SPAN_CYCLE), span set-up ----
        # Nothing reads these before the span set-up, so each is given the register stages it needs.
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
                     rb_word_end.eq(Cat(*(rb_c[lgB:] == w for w in range(NW)))), rb_lanes.eq(_therm(rb_c[:lgB], B)),
                     rb_mask.eq(Cat(*(rb_word_full[k // B] | (rb_word_end[k // B] & rb_lanes[k % B])
                                      for k in range(NW * B))))]
        # rows * row_bytes through a registered shift-add tree: the bytes of a merged span
        prod = product(m, rows, rb, name="span_product")
        go_span = delay(m, go, SPAN_CYCLE - 1, "go_span")  # the cycle the product is ready
        span_now = Mux(merged, prod, rb)
        # every block: bytes of a span, the spans after its first
        span_bytes, block_spans = Signal(27), Signal(17)
        m.d.sync += [span_bytes.eq(span_now), block_spans.eq(Mux(merged, 0, rows_m1))]
        # the same bytes - 1, modulo 2**13, for the burst fit compare (spans are >= 1 byte: row_len >= 1);
        # row_bytes - 1 is a register long before, so that only the product's decrement sits before the pick
        span_bytes_m1, rb_m1 = Signal(LIM_BITS), Signal(LIM_BITS)
        span_now_m1 = Mux(merged, prod[:LIM_BITS] - 1, rb_m1)
        m.d.sync += [span_bytes_m1.eq(span_now_m1), rb_m1.eq(rb_c - 1)]
        # The span's beats are span_bytes // B plus 0, 1 or 2 (from the low bits); the three sums are kept
        # for the product and for row_bytes, each a short adder from a register, and the lane sequencer
        # picks one. Whether span_bytes // B is 0, 1 or 2 needs no product: a merged span of 3 rows or
        # more is at least 3 * B bytes, one of 1 or 2 rows is row_bytes or 2 * row_bytes (cycles 2-3).
        prod_hi, rb_hi = prod[lgB:], rb[lgB:]
        prod_hi_p1, prod_hi_p2 = Signal(27 - lgB), Signal(27 - lgB)
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

        # ---- burst address generator ----
        block_base, row_base, cur = Signal(EXT_ADDR_BITS), Signal(EXT_ADDR_BITS), Signal(EXT_ADDR_BITS)
        nxt_row, nxt_block = Signal(EXT_ADDR_BITS), Signal(EXT_ADDR_BITS)  # row_base + stride, block_base + its stride
        span_rem, spans_left, blocks_left = Signal(27), Signal(17), Signal(10)
        span_rem_m1 = Signal(LIM_BITS)                     # (span_rem - 1) % 2**LIM_BITS, stepped alongside span_rem
        final = Signal()
        more_spans, more_blocks = Signal(), Signal()       # spans_left != 0, blocks_left != 0, registered
        more_spans_0 = Signal()                            # block_spans != 0
        m.d.sync += [nxt_row.eq(row_base + stride), nxt_block.eq(block_base + block_stride)]
        with m.If(go_span):
            m.d.sync += [block_base.eq(ext_addr), row_base.eq(ext_addr), cur.eq(ext_addr),
                         span_rem.eq(span_now), span_rem_m1.eq(span_now_m1), spans_left.eq(Mux(merged, 0, rows_m1)),
                         blocks_left.eq(blocks_m1), final.eq(0),
                         more_spans.eq(~merged & multi_rows), more_blocks.eq(multi_blocks),
                         more_spans_0.eq(~merged & multi_rows)]
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
        d_cur, d_rem = Signal(EXT_ADDR_BITS), Signal(27)              # cur and span_rem after a burst cut at the limit
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
        m.d.comb += [
            bus.awsize.eq(lgB), bus.arsize.eq(lgB), bus.awburst.eq(1), bus.arburst.eq(1),
            bus.awaddr.eq(d_addr), bus.araddr.eq(d_addr), bus.awlen.eq(d_len), bus.arlen.eq(d_len),
        ]

        # ---- lane sequencer: which bytes each beat carries, span by span (LOAD: R beats; STORE: producer) ----
        advance = Signal()                                  # the beat described below moves this cycle
        in_beat, in_beat_n = Signal(), Signal()             # the lane state is BEAT
        m.d.comb += in_beat_n.eq(in_beat)
        m.d.sync += in_beat.eq(in_beat_n)
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
                         lanes_many.eq(~_therm(row_lane, B)),
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
        advance_c = [c[0] & (c[1] | (c[2] & bus.rvalid)) for c in beat_go]
        with m.If(advance_c[0]):
            m.d.sync += [entry.eq(Mux(complete, entry_p1, entry)),
                         entry_p1.eq(Mux(complete, entry_p1 + 1, entry_p1))]
        with m.If(advance_c[1]):
            # s' = pos' + n' - row_bytes: s + n' - row_bytes once the entry completes (pos' = s), else s + n'
            # (pos' = pos + n = s + row_bytes)
            m.d.sync += [pos.eq(Mux(complete, s, fill)), s.eq(Mux(complete, s + step_done, s + step_fill))]
        with m.If(advance_c[2]):
            m.d.sync += [skip.eq(0), skip_rb.eq(rb[:lgB]), n.eq(step_fill), lanes.eq(_therm(step_fill, B))]
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
        # window of the beat in entry space: bytes [pos, pos + n) within two B-byte words
        # (a table of n and pos % B: one wide LUT per lane rather than a thermometer code behind a shifter)
        lane_win = Signal(2 * B)                            # lanes of words pos // B and pos // B + 1
        m.d.comb += lane_win.eq(Array(Const(((1 << (i >> lgB)) - 1) << (i % B), 2 * B)
                                      for i in range((B + 1) << lgB))[Cat(pos[:lgB], n)])
        word = pos[lgB:]

        # ---- LOAD: stage 0 registers the beat and what it covers; stages 1 and 2 rotate it (by the rotation's
        # two low bits, then by the rest) and stage 2 decodes the byte enables; stage 3 merges it into the
        # assembly register and writes a completed entry ----
        load_beat, issue = Signal(), Signal()
        m.d.comb += [load_beat.eq(in_rdata & bus.rvalid),
                     advance.eq(in_beat & (credit_ok | load_beat))]  # credit_ok is 0 for a LOAD
        beat_q, v_q, complete_q, entry_q = Signal(8 * B), Signal(), Signal(), Signal(16)
        word_q = Signal(NW + 1)                             # one-hot: the entry word the beat starts in
        win_q, spill_q = Signal(2 * B), Signal(B)
        m.d.sync += [
            beat_q.eq(bus.rdata), v_q.eq(load_beat), complete_q.eq(load_beat & complete), entry_q.eq(entry),
            word_q.eq(Cat(*(word == w for w in range(NW + 1)))), win_q.eq(lane_win),
            spill_q.eq(Mux(complete, _therm(s[:lgB + 1], B), 0)),
        ]
        # stage 1: what the beat covers, one cycle on
        complete_1, entry_1 = Signal(), Signal(16)
        word_1, win_1, spill_1 = Signal(NW + 1), Signal(2 * B), Signal(B)
        m.d.sync += [complete_1.eq(complete_q), entry_1.eq(entry_q), word_1.eq(word_q), win_1.eq(win_q),
                     spill_1.eq(Mux(v_q, spill_q, 0))]
        v_c = copies(v_q, NW, "beat_valid")                 # stage 1 too, one copy per entry word
        # The two lane rotations (bytes of this entry; bytes spilling into the next): lane j takes beat byte
        # (rotation + j) % B. One B:1 byte mux behind the beat register is three LUT levels, too slow for one
        # stage, so it is split: stage 1 rotates by the low two bits (a 4:1 mux, one slice per bit), stage 2
        # by the rest into a copy of the result per group of entry words.
        groups = min(2, NW)                                 # copies of the rotated beat (rbeat)
        lo = min(2, lgB)
        rot, rot2 = (skip - pos[:lgB])[:lgB], (skip_rb - pos[:lgB])[:lgB]
        rot_q, rot2_q = copies(rot[:lo], B, "rot"), copies(rot2[:lo], B, "rot2")
        hi_q, hi2_q = Signal(max(1, lgB - lo)), Signal(max(1, lgB - lo))     # 0 at a 4-byte bus
        m.d.sync += [hi_q.eq(rot[lo:]), hi2_q.eq(rot2[lo:])]
        hi_c, hi2_c = copies(hi_q, groups, "rot_hi"), copies(hi2_q, 1, "rot2_hi")

        def rotate(src, amount, step, j):
            """Lane j of the B bytes `src` rotated by `amount` * `step` bytes."""
            return Array(src[(r * step + j) % B] for r in range(1 << len(amount)))[amount]

        def bytes_of(value):
            return [value[8 * i:8 * i + 8] for i in range(B)]
        rq, rq2 = Signal(8 * B), Signal(8 * B)
        for j in range(B):
            m.d.sync += [rq[8 * j:8 * j + 8].eq(rotate(bytes_of(beat_q), rot_q[j], 1, j)),
                         rq2[8 * j:8 * j + 8].eq(rotate(bytes_of(beat_q), rot2_q[j], 1, j))]
        rbeat = [Signal(8 * B, name=f"rbeat_{g}") for g in range(groups)]
        rbeat2 = Signal(8 * B)                              # only the first entry word takes a spill
        for j in range(B):
            for g in range(groups):
                m.d.sync += rbeat[g][8 * j:8 * j + 8].eq(rotate(bytes_of(rq), hi_c[g], 1 << lo, j))
            m.d.sync += rbeat2[8 * j:8 * j + 8].eq(rotate(bytes_of(rq2), hi2_c[0], 1 << lo, j))
        en2, spill2, complete2, entry2 = Signal(NW * B), Signal(B), Signal(), Signal(16)
        # word + 1 == k // B is word_1[k // B - 1]: the one-hot word, no incrementer
        m.d.sync += [
            en2.eq(Cat(*(v_c[k // B] & rb_mask[k]
                         & ((word_1[k // B] & win_1[k % B])
                            | ((word_1[k // B - 1] if k >= B else 0) & win_1[B + k % B]))
                         for k in range(NW * B)))),
            spill2.eq(spill_1), complete2.eq(complete_1), entry2.eq(entry_1),
        ]
        # no reset: `clear` empties it before a transfer's first beat, and as the flip-flops' only set/reset
        # it drives their LSR straight from a copy (with the domain's reset too, a LUT ORs the two in front)
        asm = Signal(NW * 8 * B, reset_less=True)
        wr_data = Signal(NW * 8 * B)
        clear = copies(go, NW, "clear")                     # cycle 2 of a transfer, long before its first beat
        for k in range(NW * B):
            byte, lane = slice(8 * k, 8 * k + 8), slice(8 * (k % B), 8 * (k % B) + 8)
            new = Mux(en2[k], rbeat[(k // B) * groups // NW][lane], asm[byte])
            m.d.sync += wr_data[byte].eq(new)
            if k < B:
                new = Mux(spill2[k], rbeat2[lane], new)
            m.d.sync += asm[byte].eq(Mux(clear[k // B], 0, new))
        wr_en, wr_addr = Signal(), Signal(16)
        m.d.sync += [wr_en.eq(complete2), wr_addr.eq(entry2)]
        m.d.comb += [self.wr_en.eq(wr_en), self.wr_addr.eq(wr_addr), self.wr_data.eq(wr_data[:8 * EB])]

        # ---- STORE: producer P0 (read address), buffer read (2 cycles), X1 word select, X2 funnel -> W FIFO ----
        # The W FIFO (beat and strobes; LUT RAM read asynchronously at the read pointer). The credits keep it
        # from overflowing, so a write needs no check, and "not empty" is a register, so that a pop is one
        # LUT of registers and wready.
        m.submodules.wfifo = w_mem = Memory(shape=9 * B, depth=W_FIFO_DEPTH, init=[])
        w_wr, w_rd = w_mem.write_port(), w_mem.read_port(domain="comb")
        w_put, w_take = Signal(range(W_FIFO_DEPTH)), Signal(range(W_FIFO_DEPTH))
        w_level, w_ready = Signal(range(W_FIFO_DEPTH + 1)), Signal()     # w_ready: w_level != 0
        credits = Signal(range(W_FIFO_DEPTH + 1))
        credit_one = Signal()                               # credits == 1, registered with them
        pop = Signal()
        m.d.comb += [issue.eq(in_beat & credit_ok), pop.eq(in_wdata & w_ready & bus.wready)]
        # credits +1, -1 or the same: one of two increments, and credit_one from compares of the register,
        # picked by the pop and the issue (a sum of both would be two carry chains behind the pop)
        up, down = pop & ~issue, issue & ~pop
        with m.If(go):
            m.d.sync += [credits.eq(W_FIFO_DEPTH), credit_one.eq(0)]
            m.d.comb += credit_ok_n.eq(store)
        with m.Else():
            m.d.sync += [credits.eq(Mux(up, credits + 1, Mux(down, credits - 1, credits))),
                         credit_one.eq(Mux(up, credits == 0, Mux(down, credits == 2, credit_one)))]
            # credits' != 0 without the sum: a pop leaves at least one, else the last one may go
            m.d.comb += credit_ok_n.eq(store & (pop | (credit_ok & ~(credit_one & issue))))
        # P0 registers the beat (q0); C1 presents the entry holding the beat's last byte on rd_addr. The word
        # select needs, rd_latency (+1) cycles after that, the beat's offsets + B into the padded entry (a zero
        # word in front: lane j <- byte main_off - B + j), the offset of the next beat's start for the carry,
        # and the lanes taken from the carry; they are worked out while the read is under way: C1 the sums
        # (q1), C2 the offsets (ctl2), C3 the word indices, one copy per bus lane (the selects fan out wide).
        main_off = Signal(range((NW + 2) * B))
        carry_off = Signal(range((NW + 2) * B))
        q0_v, q0_lanes, q0_complete = Signal(), Signal(B), Signal()
        q0_s, q0_n, q0_pos, q0_skip = Signal(signed(12)), Signal(lgB + 1), Signal(10), Signal(lgB)
        q0_entry, q0_entry_p1 = Signal(16), Signal(16)
        m.d.sync += [q0_v.eq(issue), q0_lanes.eq(lanes), q0_complete.eq(complete),
                     q0_s.eq(s), q0_n.eq(n), q0_pos.eq(pos), q0_skip.eq(skip),
                     q0_entry.eq(entry), q0_entry_p1.eq(entry_p1)]
        q0_straddle = q0_complete & (q0_s != 0)             # the beat also carries bytes of entry + 1
        rd_addr = Signal(16)
        m.d.sync += rd_addr.eq(Mux(q0_straddle, q0_entry_p1, q0_entry))
        m.d.comb += self.rd_addr.eq(rd_addr)
        q1_v, q1_lanes, q1_straddle = Signal(), Signal(B), Signal()
        q1_main_s, q1_main_pos = Signal(len(main_off)), Signal(len(main_off))   # the two main_off candidates
        q1_n_ms, q1_next = Signal(signed(14)), Signal(len(carry_off))          # n - s; the next beat's start
        m.d.sync += [q1_v.eq(q0_v), q1_lanes.eq(q0_lanes), q1_straddle.eq(q0_straddle),
                     q1_main_s.eq(q0_s - q0_n + B), q1_main_pos.eq(q0_pos - q0_skip + B),
                     q1_n_ms.eq(q0_n - q0_s), q1_next.eq(Mux(q0_complete, q0_s, q0_pos + q0_n))]
        m.d.comb += [main_off.eq(Mux(q1_straddle, q1_main_s, q1_main_pos)),
                     carry_off.eq(q1_next + B)]             # the next beat's start, in the port entry
        from_carry = Mux(q1_straddle, _therm(q1_n_ms, B), 0)
        ctl2 = Signal(1 + B + B + len(main_off) + len(carry_off))
        m.d.sync += ctl2.eq(Cat(q1_v, q1_lanes, from_carry, main_off, carry_off))
        if self._rd_latency == 1:
            src = Signal(8 * EB)
            m.d.sync += src.eq(self.rd_data)
        else:
            src = self.rd_data
        padded = Cat(Const(0, 8 * B), src, Const(0, 8 * (NW * B - EB) + 16 * B))
        c2 = ctl2
        mo2 = c2[1 + 2 * B:1 + 2 * B + len(main_off)]
        co2 = c2[1 + 2 * B + len(main_off):]
        wb = ceil_log2(NW + 3)                              # bits of a word index of `padded`, and of one past it
        words = Cat(*(Cat(w, Const(0, wb))[:wb] for w in (mo2[lgB:], mo2[lgB:] + 1, co2[lgB:], co2[lgB:] + 1)))
        word_c = copies(words, B, "word")                   # C3: per bus lane, the four word indices
        ctl3 = delay(m, Cat(c2[:1 + 2 * B], mo2[:lgB], co2[:lgB]), 1, "ctl3")
        win_m, win_c = Signal(16 * B), Signal(16 * B)
        x1 = Signal(1 + 2 * B + 2 * lgB)
        for j in range(B):   # lane j of each of the four words
            wc = word_c[j]
            for w, win in enumerate((win_m, win_m, win_c, win_c)):
                word_index = wc[w * wb:(w + 1) * wb]
                lane_bits = Array(padded[8 * (B * i + j):8 * (B * i + j) + 8] for i in range(NW + 3))
                m.d.sync += win[8 * (B * (w % 2) + j):8 * (B * (w % 2) + j) + 8].eq(lane_bits[word_index])
        m.d.sync += x1.eq(ctl3)
        v3, lanes3, fc3 = x1[0], x1[1:1 + B], x1[1 + B:1 + 2 * B]
        r_m, r_c = x1[1 + 2 * B:1 + 2 * B + lgB], x1[1 + 2 * B + lgB:]
        main = win_m.bit_select(Cat(Const(0, 3), r_m), 8 * B)
        carry_next = win_c.bit_select(Cat(Const(0, 3), r_c), 8 * B)
        carry = Signal(8 * B)
        with m.If(v3):
            m.d.sync += carry.eq(carry_next)
        wbeat = Cat(*(Mux(fc3[j], carry[8 * j:8 * j + 8], main[8 * j:8 * j + 8]) for j in range(B)))
        m.d.comb += [w_wr.en.eq(v3), w_wr.addr.eq(w_put), w_wr.data.eq(Cat(wbeat, lanes3)), w_rd.addr.eq(w_take),
                     bus.wdata.eq(w_rd.data[:8 * B]), bus.wstrb.eq(w_rd.data[8 * B:])]
        with m.If(go):
            m.d.sync += [w_put.eq(0), w_take.eq(0), w_level.eq(0), w_ready.eq(0)]
        with m.Else():
            m.d.sync += [w_put.eq(w_put + v3), w_take.eq(w_take + pop), w_level.eq(w_level + v3 - pop),
                         w_ready.eq(v3 | (w_level > 1) | (w_ready & ~pop))]

        # ---- bus state machine ----
        beat_cnt, last_b = Signal(LEN_BITS), Signal()
        setup_cnt, setup_end = Signal(range(max(STORE_SETUP, LOAD_SETUP) + 1)), Signal(name="setup_end")
        drain_cnt = Signal(range(LOAD_DRAIN + 1))
        m.d.comb += bus.wlast.eq(last_b)

        def next_burst(failed):
            with m.If(failed | final):
                with m.If(store):
                    m.d.sync += busy.eq(0)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += drain_cnt.eq(LOAD_DRAIN - 1)
                    m.next = "DRAIN"
            with m.Else():
                m.d.comb += in_addr_n.eq(1)
                m.next = "ADDR"

        def beat_done():
            m.d.sync += [beat_cnt.eq(beat_cnt - 1), last_b.eq(beat_cnt == 1)]

        # an address is accepted (the bus state is ADDR); in_addr has a copy for each group of registers
        # the acceptance steps, besides the one of the state machine, split by direction so that each
        # acceptance is one LUT of a copy and the two ready inputs
        accept = Signal()
        m.d.comb += accept.eq(in_addr & Mux(store, bus.awready, bus.arready))
        in_addr_c = copies(Cat(in_addr_n & store, in_addr_n & ~store), 3, "in_addr")
        accept_c = [(c[0] & bus.awready) | (c[1] & bus.arready) for c in in_addr_c]
        with m.If(accept):
            m.d.comb += in_addr_n.eq(0)
            m.d.sync += in_wdata.eq(store)
            m.d.comb += in_rdata_n.eq(~store)
            m.d.sync += [beat_cnt.eq(d_len), last_b.eq(d_len == 0)]

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

        with m.FSM(name="bus"):
            with m.State("IDLE"):
                with m.If(cmd.start):
                    m.d.sync += [setup_cnt.eq(1), setup_end.eq(0), busy.eq(1)]
                    m.next = "SETUP"
            with m.State("SETUP"):
                # setup_end: setup_cnt == SETUP - 1, registered a cycle ahead (both SETUPs are >= 3)
                m.d.sync += [setup_cnt.eq(setup_cnt + 1),
                             setup_end.eq(setup_cnt == Mux(store, STORE_SETUP - 2, LOAD_SETUP - 2))]
                with m.If(setup_end):
                    m.d.comb += in_addr_n.eq(1)
                    m.next = "ADDR"
            with m.State("ADDR"):
                m.d.comb += [bus.awvalid.eq(store), bus.arvalid.eq(~store)]
                with m.If(accept):
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(~store):
                    m.d.comb += bus.rready.eq(1)
                    with m.If(bus.rvalid):
                        bad = bus.rresp != 0
                        with m.If(bad):
                            m.d.comb += error_n.eq(1)
                        beat_done()
                        with m.If(last_b):
                            m.d.comb += in_rdata_n.eq(0)
                            next_burst(error | bad)
                with m.Else():
                    m.d.comb += bus.wvalid.eq(w_ready)
                    with m.If(pop):
                        beat_done()
                        with m.If(last_b):
                            m.d.sync += in_wdata.eq(0)
                            m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += bus.bready.eq(1)
                with m.If(bus.bvalid):
                    bad = bus.bresp != 0
                    with m.If(bad):
                        m.d.comb += error_n.eq(1)
                    next_burst(error | bad)
            with m.State("DRAIN"):
                m.d.sync += drain_cnt.eq(drain_cnt - 1)
                with m.If(drain_cnt == 0):
                    m.d.sync += busy.eq(0)
                    m.next = "IDLE"
        return m
