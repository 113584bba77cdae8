"""The DMA's LOAD assembly: R beats rotated onto entry bytes and merged into buffer entries.

Each accepted R beat is registered (stage 0) with what it covers (its position and length, decoded in stage 1
into the entry word it starts in, one-hot, and its lane window; the bytes that spill into the next entry). It
is rotated twice (the bytes of the current entry, the bytes of the next) in two stages: stage 1 by the
rotation's low two bits (with a copy of them per bus lane), stage 2 by the rest, into a copy per group of
entry words, while it decodes the per-byte write enables; stage 3 merges it into the assembly register and
writes the completed entry (wr_en/wr_addr/wr_data are registers), zero beyond row_bytes. At most one entry
completes per beat (a span's rows are >= bus_bytes long), so the write comes 4 cycles (LOAD_DRAIN_MIN) after
the beat that completes it.
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from hdl.dma.lanes import therm
from hdl.dma.signatures import beat_signature, bus_state_signature, entry_words, transfer_signature
from hdl.fpga import family_of

__all__ = ["LoadAssembly"]


class LoadAssembly(wiring.Component):
    """`xfer` (transfer_signature; `go` only: the assembly register is cleared the cycle after it);
    `rb_mask` (SpanSetup's): the entry bytes below row_bytes. An R beat (`rdata`) is taken when
    `bus_state.in_rdata` and `rvalid`, as `beat` (beat_signature) describes it. `wr_en`, `wr_addr` and
    `wr_data` (`entry_bytes` bytes): the completed entry's write, registers."""

    def __init__(self, *, bus_bytes: int, entry_bytes: int):
        self._B, self._EB = bus_bytes, entry_bytes
        super().__init__({"xfer": In(transfer_signature()), "rb_mask": In(-(-entry_bytes // bus_bytes) * bus_bytes),
                          "beat": In(beat_signature(bus_bytes)), "bus_state": In(bus_state_signature()),
                          "rdata": In(8 * bus_bytes), "rvalid": In(1),
                          "wr_en": Out(1), "wr_addr": Out(16), "wr_data": Out(8 * entry_bytes)})

    def elaborate(self, platform):
        m = Module()
        B, EB = self._B, self._EB
        lgB = exact_log2(B)
        NW = entry_words(EB, B)
        family = family_of(platform)

        def copies(value, count, name):
            return family.copies(m, value, count, name=name)

        go, rb_mask, in_rdata = self.xfer.go, self.rb_mask, self.bus_state.in_rdata
        beat = self.beat
        complete, s, n, pos, skip, skip_rb, entry = (beat.complete, beat.s, beat.n, beat.pos, beat.skip,
                                                     beat.skip_rb, beat.entry)

        # stage 0 registers the beat and what it covers; stages 1 and 2 rotate it (by the rotation's two low
        # bits, then by the rest) and stage 2 decodes the byte enables; stage 3 merges it into the assembly
        # register and writes a completed entry
        load_beat = Signal()
        m.d.comb += load_beat.eq(in_rdata & self.rvalid)
        beat_q, v_q, complete_q, entry_q = Signal(8 * B), Signal(), Signal(), Signal(16)
        # the beat's window is registered as it comes (n, pos) and decoded in stage 1: the beat registers sit
        # in the lane sequencer, far from here, and the route from them left no time for the decode
        n_q, pos_q = Signal.like(n), Signal.like(pos)
        spill_q = Signal(B)
        m.d.sync += [
            beat_q.eq(self.rdata), v_q.eq(load_beat), complete_q.eq(load_beat & complete), entry_q.eq(entry),
            n_q.eq(n), pos_q.eq(pos), spill_q.eq(Mux(complete, therm(s[:lgB + 1], B), 0)),
        ]
        # stage 1: what the beat covers, one cycle on: the entry word it starts in (one-hot), and its window in
        # entry space, bytes [pos, pos + n) within two B-byte words: lanes of words pos // B and pos // B + 1 (a
        # table of n and pos % B: one wide LUT per lane rather than a thermometer code behind a shifter)
        complete_1, entry_1 = Signal(), Signal(16)
        word_1, win_1, spill_1 = Signal(NW + 1), Signal(2 * B), Signal(B)
        lane_win = Array(Const(((1 << (i >> lgB)) - 1) << (i % B), 2 * B) for i in range((B + 1) << lgB))
        m.d.sync += [complete_1.eq(complete_q), entry_1.eq(entry_q),
                     word_1.eq(Cat(*(pos_q[lgB:] == w for w in range(NW + 1)))),
                     win_1.eq(lane_win[Cat(pos_q[:lgB], n_q)]), spill_1.eq(Mux(v_q, spill_q, 0))]
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
        return m
