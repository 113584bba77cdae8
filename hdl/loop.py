"""Hardware loops in the fetch: where the next fetch goes, and the address offsets of each fetched word.

emu/contract/loops.py defines the loops; this is that walk at fetch time. Two levels, 0 the outer and 1 the
inner. A LOOP word is copied when it comes out of the instruction memory (`arrive`, its pc and word),
BlockRAM.LATENCY cycles after its fetch, and arms a level from that copy a cycle later, while the fetch runs
on into the body: the fetch of the body's fifth word is the first to see the level, so a body is at least
LOOP_MIN_BODY = 5 words, and the level is known before the fetch reaches its end. A fetch at a level's
end goes back to its start while iterations are left (`jump`, `target`); the innermost level decides
first. `offsets` (one register per LOOP increment, as wide as the field it steps) is what the word
fetched the cycle before runs with: the inner iteration's, stepped by the inner increments on an inner jump,
reset to the outer iteration's when the inner loop ends, and the outer iteration's stepped on an outer
jump.

Everything the fetch path reads is a flip-flop: `at_end` (the fetch pc is a level's end) is formed a fetch
ahead from fetch_pc + 1 and cleared by a jump (a body's start is never its end), `last` (no iteration left) at
each jump; the compares behind them (fetch_pc + 1 == end, left == 1) are flip-flops too, formed a fetch
earlier still, so the decision in front of `fetch_to` is a few gates deep. `jump_next` and `target_next`
are what `jump` and `target` will be next cycle, from the registers' next values, so the sequencer can
register where a fetch goes a cycle ahead and its far instruction-memory address copies are one gate from
flip-flops. `loop_bad` is the arrived LOOP's fault the cycle after it arrives
(nested deeper than two, or an inner body ending past the outer body's end), when the offset stage hands the
same word to the decoder.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from emu.contract.isa import FIELDS, INSTR_BITS, Opcode
from emu.contract.loops import INCREMENTS, LOOP_MIN_BODY, TARGETS

from hdl.bram import BlockRAM
from hdl.decoder import instr_layout

__all__ = ["LoopControl", "offset_widths"]

LEVELS = 2


def offset_widths() -> dict[str, int]:
    """Bits of each loop offset: the width of the field it steps."""
    return {inc: next(f.width for f in FIELDS[op] if f.name == field) for op, _, field, inc in TARGETS}


class LoopControl(wiring.Component):
    """In: `fetch` (a word is fetched at `pc` this cycle), `pc_inc` (pc + 1, a register), `arrive` with
    `arrive_word` and `arrive_pc` (a legal-opcode LOOP at the instruction memory's output), `flush`.
    Out: `jump` (a fetch this cycle goes to `target`, with `target_inc` = target + 1), and the two as they
    will be next cycle (`jump_next`, `target_next`); `offsets` of the word fetched the cycle before;
    `loop_bad` for the LOOP that arrived last cycle."""

    def __init__(self, pc_bits: int):
        self._pc_bits = pc_bits
        widths = offset_widths()
        self._offsets = data.StructLayout({inc: widths[inc] for inc in INCREMENTS})
        super().__init__({
            "fetch": In(1), "pc_inc": In(pc_bits), "flush": In(1),
            "arrive": In(1), "arrive_word": In(INSTR_BITS), "arrive_pc": In(pc_bits),
            "jump": Out(1), "target": Out(pc_bits), "target_inc": Out(pc_bits),
            "jump_next": Out(1), "target_next": Out(pc_bits),
            "offsets": Out(self._offsets), "loop_bad": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        pcb = self._pc_bits
        widths = {f.name: f.width for f in FIELDS[Opcode.LOOP]}
        count_bits = widths["count"]
        active = [Signal(name=f"active{l}") for l in range(LEVELS)]
        at_end = [Signal(name=f"at_end{l}") for l in range(LEVELS)]
        last = [Signal(name=f"last{l}") for l in range(LEVELS)]
        left = [Signal(count_bits, name=f"left{l}") for l in range(LEVELS)]
        start = [Signal(pcb, name=f"start{l}") for l in range(LEVELS)]
        start_inc = [Signal(pcb, name=f"start_inc{l}") for l in range(LEVELS)]
        end = [Signal(pcb + 1, name=f"end{l}") for l in range(LEVELS)]
        end_m1 = [Signal(pcb + 1, name=f"end_m1_{l}") for l in range(LEVELS)]
        # the compares the jump decision needs, kept as flip-flops a fetch ahead: `inc_at_end` is
        # pc_inc == end (the next fetch, if it does not jump, is at the end), `one_left` is left == 1
        inc_at_end = [Signal(name=f"inc_at_end{l}") for l in range(LEVELS)]
        one_left = [Signal(name=f"one_left{l}") for l in range(LEVELS)]
        inc = [{name: Signal(signed(widths[name]), name=f"{name}{l}") for name in INCREMENTS}
               for l in range(LEVELS)]
        outer = Signal(self._offsets, name="outer_offsets")     # offsets of the outer iteration
        cur = self.offsets                                        # a register: see below

        def stepped(base, l):
            return [getattr(base, name).eq(getattr(base, name) + inc[l][name]) for name in INCREMENTS]

        # the registers the jump decision reads, each with its next value: they are assigned below through
        # `nxt`, and `jump_next` / `target_next` are the decision on those next values
        decided = {"active": active, "at_end": at_end, "last": last, "start": start}
        upcoming = {name: [Signal.like(r, name=f"{r.name}_next") for r in regs] for name, regs in decided.items()}
        for name, regs in decided.items():
            m.d.comb += [n.eq(r) for n, r in zip(upcoming[name], regs)]
            m.d.sync += [r.eq(n) for n, r in zip(upcoming[name], regs)]
        active_n, at_end_n, last_n, start_n = upcoming.values()

        def decide(active, at_end, last, start):
            """(hit per level, take the inner jump, take the outer jump, the jump's target)."""
            hit = [active[l] & at_end[l] for l in range(LEVELS)]
            take_inner = hit[1] & ~last[1]
            return hit, take_inner, hit[0] & ~last[0] & ~take_inner, Mux(take_inner, start[1], start[0])

        hit, take_inner, take_outer, target = decide(active, at_end, last, start)
        _, inner_n, outer_n, target_n = decide(active_n, at_end_n, last_n, start_n)
        # `jump` holds no `fetch` term, so the fetch address mux is selected from flip-flops
        m.d.comb += [self.jump.eq(take_inner | take_outer), self.target.eq(target),
                     self.target_inc.eq(Mux(take_inner, start_inc[1], start_inc[0])),
                     self.jump_next.eq(inner_n | outer_n), self.target_next.eq(target_n)]
        with m.If(self.fetch):
            m.d.comb += [at_end_n[l].eq(~self.jump & inc_at_end[l]) for l in range(LEVELS)]
            # after a jump pc_inc is a body's second word, which is no active level's end (a body is at
            # least LOOP_MIN_BODY words, and an inner body lies within the outer one)
            m.d.sync += [inc_at_end[l].eq(~self.jump & (self.pc_inc == end_m1[l])) for l in range(LEVELS)]
            with m.If(take_inner):
                m.d.sync += [left[1].eq(left[1] - 1), one_left[1].eq(left[1] == 2)]
                m.d.comb += last_n[1].eq(one_left[1])
            with m.Elif(hit[1]):
                m.d.comb += active_n[1].eq(0)
            with m.If(take_outer):
                m.d.sync += [left[0].eq(left[0] - 1), one_left[0].eq(left[0] == 2)]
                m.d.comb += last_n[0].eq(one_left[0])
            with m.Elif(hit[0] & ~take_inner):
                m.d.comb += active_n[0].eq(0)

        # The offsets are stepped a cycle after the fetch that jumps, from registered events, so `fetch` does
        # not fan out into their few hundred enables; the words fetched meanwhile get theirs from the
        # fetch pipeline a cycle later too (`offsets` is one cycle behind the fetch: see the sequencer).
        events = Signal(4)
        m.d.sync += events.eq(Cat(self.fetch & take_inner, self.fetch & hit[1] & last[1],
                                  self.fetch & take_outer, self.fetch & hit[0] & last[0] & ~take_inner))
        jump_inner, exit_inner, jump_outer, exit_outer = events
        with m.If(jump_inner):
            m.d.sync += stepped(cur, 1)
        with m.If(exit_inner):
            m.d.sync += cur.eq(outer)
        with m.If(jump_outer):
            m.d.sync += stepped(outer, 0)
            m.d.sync += [getattr(cur, name).eq(getattr(outer, name) + inc[0][name]) for name in INCREMENTS]
        with m.If(exit_outer):
            m.d.sync += [outer.eq(0), cur.eq(0)]

        # The LOOP word is copied first, as it leaves the instruction memory, and the level is armed from the
        # copy a cycle later: the memory's output then drives flip-flops only, which the placer can put beside
        # it, instead of the adds and enables of the loop registers spread over the fetch.
        got = Signal(name="loop_arrived")
        got_pc = Signal(pcb, name="loop_pc")
        got_word = Signal(INSTR_BITS, name="loop_word")
        # the body's end is added up as the word arrives, so the copy's fault check below compares
        # flip-flops rather than an adder's output
        got_end = Signal(pcb + 1, name="loop_end")
        layout = instr_layout(Opcode.LOOP)
        m.d.sync += [got.eq(self.arrive), got_pc.eq(self.arrive_pc), got_word.eq(self.arrive_word),
                     got_end.eq(self.arrive_pc + data.View(layout, self.arrive_word).body)]
        lp = data.View(layout, got_word)
        # A level arms BlockRAM.LATENCY + 1 cycles after its LOOP's fetch, and no level jumps in between (the
        # LOOP is no level's end): pc_inc after the arming cycle is the LOOP's pc + 1 + the fetches since,
        # at most LATENCY + 2. So it is the body's end only for a body of LATENCY + 3 words fetched in every
        # one of those cycles, which `recent` (the fetches of the last LATENCY cycles) tells without a compare.
        assert LOOP_MIN_BODY >= BlockRAM.LATENCY + 3, "a body ends after its level arms"
        recent = Signal(BlockRAM.LATENCY)
        m.d.sync += recent.eq(Cat(self.fetch, recent[:-1]))
        reaches_end = self.fetch & recent.all() & (lp.body == BlockRAM.LATENCY + 3)
        # a LOOP arms the outer level when none is active, else the inner; a third is armed nowhere (bad). The
        # fault goes to the decoder now, beside the word it belongs to (the offset stage's output).
        level = [~active[0], active[0] & ~active[1]]
        m.d.comb += self.loop_bad.eq(got & ((active[0] & active[1]) | (level[1] & (got_end > end[0]))))
        for l in range(LEVELS):
            with m.If(got & level[l]):
                m.d.comb += [active_n[l].eq(1), at_end_n[l].eq(0), start_n[l].eq(got_pc + 1),
                             last_n[l].eq(lp.count <= 1)]
                m.d.sync += [start_inc[l].eq(got_pc + 2), end[l].eq(got_end), end_m1[l].eq(got_end - 1),
                             left[l].eq(lp.count - 1), one_left[l].eq(lp.count == 2),
                             inc_at_end[l].eq(reaches_end)]
                m.d.sync += [inc[l][name].eq(getattr(lp, name)) for name in INCREMENTS]
        # the clear comes a cycle after the flush, from a flip-flop beside these registers: the flush is a
        # long, loaded net, and nothing is fetched for many cycles after it (a start begins with the preload)
        flush_q = Signal()
        m.d.sync += flush_q.eq(self.flush)
        with m.If(flush_q):
            m.d.comb += [a.eq(0) for a in active_n]
            m.d.sync += [outer.eq(0), cur.eq(0)]
        return m
