"""hdl.pipeline's building blocks (product, Queue, accumulate) in Amaranth's simulator."""
import numpy as np
import pytest
from amaranth.sim import Simulator


def test_product_with_addend():
    """hdl.pipeline.product with `plus`: a * b + plus, signed, for unsigned 6 x 3-bit operands and a signed
    8-bit addend at both ends of their ranges and at random, one set a cycle, product_latency cycles later."""
    from amaranth.hdl import Module, Signal, signed
    from hdl.pipeline import product, product_latency
    m = Module()
    a, b, plus = Signal(6), Signal(3), Signal(signed(8))
    result = product(m, a, b, plus=plus, name="p")
    rng = np.random.default_rng(11)
    cases = [(63, 7, 127), (63, 7, -128), (0, 0, -128), (0, 7, 127), (1, 1, -2)]
    cases += [(int(rng.integers(0, 64)), int(rng.integers(0, 8)), int(rng.integers(-128, 128))) for _ in range(100)]
    latency = product_latency(3, plus=True)

    async def tb(ctx):
        seen = []
        for cycle in range(len(cases) + latency):
            if cycle < len(cases):
                ctx.set(a, cases[cycle][0])
                ctx.set(b, cases[cycle][1])
                ctx.set(plus, cases[cycle][2])
            await ctx.tick()
            if cycle + 1 >= latency:
                seen.append(ctx.get(result))
        assert seen[:len(cases)] == [x * y + z for x, y, z in cases]

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("depth", [2, 3, 12])
def test_queue_matches_a_fifo(depth):
    """hdl.pipeline.Queue against a Python list: random pushes (never more than `depth` entries after the
    cycle), random pops of a ready head and a few flushes; every cycle the registered head is the oldest
    entry (zero and not ready when empty)."""
    from hdl.pipeline import Queue
    dut = Queue(width=8, depth=depth)
    rng = np.random.default_rng(depth)

    async def tb(ctx):
        model, serial = [], 0
        for cycle in range(600):
            assert ctx.get(dut.r_rdy) == bool(model), cycle
            assert ctx.get(dut.r_data) == (model[0] if model else 0), cycle
            pop = bool(model) and rng.random() < 0.5
            push = len(model) - pop < depth and rng.random() < 0.6
            flush = rng.random() < 0.01
            serial = serial % 255 + 1
            ctx.set(dut.r_en, pop)
            ctx.set(dut.w_en, push)
            ctx.set(dut.w_data, serial)
            ctx.set(dut.flush, flush)
            await ctx.tick()
            if pop:
                model.pop(0)
            if push:
                model.append(serial)
            if flush:
                model = []

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_accumulate_carries_into_the_high_half():
    """hdl.pipeline.accumulate: a 12-bit total in 6-bit halves, terms that carry out of the low half on most
    adds, random enables and a clear: the total equals the running sum mod 2**12 two cycles after each add."""
    from amaranth.hdl import Module, Signal
    from hdl.pipeline import accumulate
    m = Module()
    total, term, en, clear = Signal(12), Signal(6), Signal(), Signal()
    accumulate(m, total, term, en=en, clear=clear, init=5, name="acc")
    rng = np.random.default_rng(7)
    steps = [(int(rng.integers(40, 64)), bool(rng.integers(0, 4)), i == 90) for i in range(200)]

    async def tb(ctx):
        want = 0
        for term_value, enable, restart in steps:
            ctx.set(term, term_value)
            ctx.set(en, enable)
            ctx.set(clear, restart)
            await ctx.tick()
            want = 5 if restart else (want + term_value * enable) % (1 << 12)
        ctx.set(en, 0)
        ctx.set(clear, 0)
        await ctx.tick().repeat(2)
        assert ctx.get(total) == want

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_accumulate_rejects_a_wide_term():
    from amaranth.hdl import Module, Signal
    from hdl.pipeline import accumulate
    m = Module()
    m._MustUse__silence = True     # never elaborated: no "created but never used" warning
    with pytest.raises(ValueError, match="a 12-bit total takes an even width and a term of at most 6 bits, not 7"):
        accumulate(m, Signal(12), Signal(7), en=1, clear=0, name="acc")
