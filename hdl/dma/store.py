"""The DMA's STORE path: a beat producer running ahead of the W channel, and the W FIFO.

The producer has credits for an 8-beat W FIFO: P0 registers the beat, C1 presents the entry holding its
last byte on `rd_addr` (a register), and `rd_latency` cycles later (the 1-cycle source is registered once
more) two bus words of it are picked and funnelled onto the lanes; the word offsets are worked out while
the read is under way, the word indices with a copy per bus lane. A beat that straddles two entries takes
its first bytes from a carry register filled from the previous beat's entry. W beats go out of the FIFO
back to back once the burst's AW is accepted. The first P0 comes 3 cycles after the span set-up (S1, S2),
and its beat can leave the FIFO 6 cycles after P0, so STORE's first address goes out 8 cycles after the
span set-up.
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from hdl.dma.lanes import therm
from hdl.dma.signatures import (beat_signature, bus_state_signature, entry_words, transfer_signature,
                                w_fifo_signature)
from hdl.fpga import family_of
from hdl.pipeline import delay

__all__ = ["StoreProducer", "W_FIFO_DEPTH"]

W_FIFO_DEPTH = 8                  # a power of two: the W FIFO pointers wrap


class StoreProducer(wiring.Component):
    """`xfer` (transfer_signature; `go` and `store`): the credits and the FIFO are reset at `go`. The
    producer takes the beat `beat` (beat_signature) describes whenever `beat.in_beat` and `credit_ok`
    (`issue`); `rd_addr` (a register) / `rd_data` (`entry_bytes` bytes, `rd_latency` cycles later, 1 or 2):
    the OUT entry read. `w_fifo` (w_fifo_signature): the credits and the FIFO's state; a W beat (`wdata`,
    `wstrb`, the FIFO's head) leaves when `bus_state.in_wdata`, `w_ready` and `wready`."""

    def __init__(self, *, bus_bytes: int, entry_bytes: int, rd_latency: int):
        self._B, self._EB, self._rd_latency = bus_bytes, entry_bytes, rd_latency
        super().__init__({"xfer": In(transfer_signature()), "beat": In(beat_signature(bus_bytes)),
                          "bus_state": In(bus_state_signature()),
                          "rd_addr": Out(16), "rd_data": In(8 * entry_bytes),
                          "wready": In(1), "wdata": Out(8 * bus_bytes), "wstrb": Out(bus_bytes),
                          "w_fifo": Out(w_fifo_signature())})

    def elaborate(self, platform):
        m = Module()
        B, EB = self._B, self._EB
        lgB = exact_log2(B)
        NW = entry_words(EB, B)
        family = family_of(platform)

        def copies(value, count, name):
            return family.copies(m, value, count, name=name)

        go, store, in_wdata = self.xfer.go, self.xfer.store, self.bus_state.in_wdata
        beat = self.beat
        in_beat, lanes, complete, s, n, pos, skip, entry, entry_p1 = (
            beat.in_beat, beat.lanes, beat.complete, beat.s, beat.n, beat.pos, beat.skip, beat.entry, beat.entry_p1)

        # producer P0 (read address), buffer read (rd_latency cycles), X1 word select, X2 funnel -> W FIFO
        credit_ok, credit_ok_n = Signal(), Signal()        # a STORE with credits != 0, registered with them
        m.d.comb += credit_ok_n.eq(credit_ok)
        m.d.sync += credit_ok.eq(credit_ok_n)
        issue = Signal()                                    # the producer takes the beat (P0)
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
        m.d.comb += [issue.eq(in_beat & credit_ok), pop.eq(in_wdata & w_ready & self.wready)]
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
        from_carry = Mux(q1_straddle, therm(q1_n_ms, B), 0)
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
                     self.wdata.eq(w_rd.data[:8 * B]), self.wstrb.eq(w_rd.data[8 * B:])]
        with m.If(go):
            m.d.sync += [w_put.eq(0), w_take.eq(0), w_level.eq(0), w_ready.eq(0)]
        with m.Else():
            m.d.sync += [w_put.eq(w_put + v3), w_take.eq(w_take + pop), w_level.eq(w_level + v3 - pop),
                         w_ready.eq(v3 | (w_level > 1) | (w_ready & ~pop))]

        m.d.comb += [self.w_fifo.credit_ok.eq(credit_ok), self.w_fifo.credit_ok_n.eq(credit_ok_n),
                     self.w_fifo.w_ready.eq(w_ready), self.w_fifo.pop.eq(pop)]
        return m
