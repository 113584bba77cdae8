"""Pipeline building blocks shared by the units: delay lines, a registered multiplier tree, a split-carry
accumulator, a small queue."""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["delay", "product", "product_latency", "accumulate", "Queue"]


def delay(m: Module, sig, cycles: int, name: str):
    """`sig` delayed by `cycles` registers in the sync domain (same shape), named `<name>_d<i>`."""
    for d in range(cycles):
        reg = Signal.like(sig, name=f"{name}_d{d}")
        m.d.sync += reg.eq(sig)
        sig = reg
    return sig


def product_latency(b_bits: int, *, plus: bool = False) -> int:
    """Cycles `product` takes for a `b_bits`-bit multiplier operand (and an addend, if `plus`)."""
    return 1 + max(0, b_bits + plus - 1).bit_length()


def product(m: Module, a, b, *, plus=None, name: str) -> Signal:
    """Unsigned a * b (len(a) + len(b) bits) in logic, `product_latency(len(b))` cycles after a and b: one
    register for the shifted partial products, then one per level of a pairwise adder tree, so no stage
    holds more than one carry chain. For the few narrow control products (entry counts, MAC counts) that
    must not sit on a single-cycle path; the MAC array's products use the DSP blocks.

    With `plus` (a signed or unsigned Value presented with a and b), the result is a * b + plus, signed,
    max(len(a) + len(b), len(plus)) + 2 bits (never wraps), `product_latency(len(b), plus=True)` cycles
    after: the addend is one more term of the tree, registered with the partial products."""
    width = len(a) + len(b)
    shape = unsigned(width)
    if plus is not None:
        plus = Value.cast(plus)
        shape = signed(max(width, len(plus)) + 2)
    terms = []
    for j in range(len(b)):
        # no reset: b[j] is then the flip-flops' only set/reset (a domain reset too would OR in a LUT)
        t = Signal(shape, name=f"{name}_t{j}", reset_less=True)
        m.d.sync += t.eq(Mux(b[j], a << j, 0))
        terms.append(t)
    if plus is not None:
        t = Signal(shape, name=f"{name}_plus")
        m.d.sync += t.eq(plus)
        terms.append(t)
    level = 0
    while len(terms) > 1:
        nxt = []
        for i in range(0, len(terms), 2):
            s = Signal(shape, name=f"{name}_l{level}_{i // 2}")
            m.d.sync += s.eq(terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i])
            nxt.append(s)
        terms, level = nxt, level + 1
    return terms[0]


def accumulate(m: Module, total: Signal, term, *, en, clear, init: int = 0, name: str) -> None:
    """`total` (unsigned, even width) += `term` (unsigned, at most half as wide) in each cycle `en` is high,
    modulo 2**len(total), in two halves so that no cycle holds a carry chain longer than half of `total`:
    the low half adds `term` and registers its carry-out, which the high half adds the cycle after. So
    `total` lags the sum by one cycle in its high half only, and is exact from the second cycle after the
    last `en`. `clear` (which wins over `en`) sets `total` to `init` and drops a pending carry."""
    half = len(total) // 2
    term = Value.cast(term)
    if len(total) % 2 or len(term) > half:
        raise ValueError(f"accumulate {name!r}: a {len(total)}-bit total takes an even width and a term of at "
                         f"most {half} bits, not {len(term)}")
    lo, hi = total[:half], total[half:]
    lo_sum = Signal(half + 1, name=f"{name}_lo_sum")
    carry = Signal(name=f"{name}_carry")
    m.d.comb += lo_sum.eq(lo + term)
    m.d.sync += [hi.eq(hi + carry), carry.eq(en & lo_sum[-1])]
    with m.If(en):
        m.d.sync += lo.eq(lo_sum[:half])
    with m.If(clear):
        m.d.sync += [total.eq(init), carry.eq(0)]


class Queue(wiring.Component):
    """A first-in first-out queue of `depth` entries of `width` bits whose head is a register.

    `w_en` pushes `w_data` (the writer keeps count of free entries: pushing into a full queue is not
    checked); `r_rdy`/`r_data` are registered, so a consumer's decision logic starts at a flip-flop, and
    `r_data` is zero while the queue is empty, so flags in an entry need no `r_rdy` beside them;
    `r_en` pops the head when `r_rdy`. An entry pushed in cycle c is at the head in cycle c + 1 at the
    earliest. `flush` empties the queue (it wins over a push in the same cycle).

    Every push is written to a small ring memory with an asynchronous read (LUT RAM on FPGAs) at `produce`,
    which advances on every push, so the write side never waits for the pop. `consume` is the ring index of
    the next entry the head takes and advances with every entry the head takes, from the ring or straight
    from a push (whose copy in the ring is then skipped). The entries waiting behind the head are counted
    as a thermometer code (`waiting[i]`: more than i wait), so each bit's next value is a mux of its
    neighbours that the pop selects last."""

    def __init__(self, *, width: int, depth: int):
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth={depth!r} is not accepted: expected an integer >= 2")
        self._width, self._depth = width, depth
        super().__init__({"w_en": In(1), "w_data": In(width), "r_en": In(1), "r_rdy": Out(1),
                          "r_data": Out(width), "flush": In(1)})

    def elaborate(self, platform):
        m = Module()
        inner = self._depth - 1               # entries that can wait behind the head
        # a ring of `depth` slots: the at most `inner` waiting entries and the head's own, already taken copy,
        # so a push never writes the slot a read of the same cycle takes
        ring = self._depth
        m.submodules.storage = storage = Memory(shape=self._width, depth=ring, init=[])
        wr, rd = storage.write_port(), storage.read_port(domain="comb")
        produce, consume = Signal(range(ring)), Signal(range(ring))
        waiting = Signal(inner)               # thermometer: waiting[i] while more than i entries wait

        def incr(ptr):
            return Mux(ptr == ring - 1, 0, ptr + 1)

        take = ~self.r_rdy | self.r_en        # the head register is free this cycle
        stored = waiting[0]
        m.d.comb += [wr.addr.eq(produce), wr.data.eq(self.w_data), wr.en.eq(self.w_en), rd.addr.eq(consume)]
        with m.If(self.w_en):
            m.d.sync += produce.eq(incr(produce))
        with m.If(take & (stored | self.w_en)):
            m.d.sync += consume.eq(incr(consume))
        with m.If(take):
            m.d.sync += [self.r_data.eq(Mux(stored, rd.data, Mux(self.w_en, self.w_data, 0))),
                         self.r_rdy.eq(stored | self.w_en)]
        # one more waits on a push the head does not take, one fewer on a take from the ring without a push;
        # with an empty ring a take with a push is the push straight into the head, so `take` only chooses
        # between two shifts worked out without it
        above = Cat(waiting[1:], 0)
        below = Cat(1, waiting[:-1])
        m.d.sync += waiting.eq(Mux(take, Mux(self.w_en, waiting, above), Mux(self.w_en, below, waiting)))
        with m.If(self.flush):
            m.d.sync += [self.r_rdy.eq(0), self.r_data.eq(0), waiting.eq(0), produce.eq(0), consume.eq(0)]
        return m
