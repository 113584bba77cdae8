"""hdl.dma.bus.BusStateMachine, the DMA's AXI handshakes, against a slave model: the cycles a transfer takes
(emu.contract.timing's DMA_* constants), the state flags it hands the other machines, bus errors."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from emu.contract import timing

from hdl.dma.cycles import LOAD_DRAIN, LOAD_SETUP, STORE_SETUP


def bus_run(beats, store, rng=None, bad=None, start_again=None, cycles=None):
    """One transfer of bursts of `beats` beats through BusStateMachine, in the role of the other machines and
    of the slave: a burst's length and `final` as the burst generator gives them, W beats as the STORE FIFO
    pops them, R beats and B responses as a slave. With `rng`, every ready, valid and FIFO flag is random;
    without, the slave answers after a fixed latency (sim/axi_mem.v) and the FIFO is never empty.

    `bad`: (burst, beat) whose response is SLVERR (STORE: the burst's B). `start_again`: a cycle in which
    `start` is raised again (ignored while busy). `cycles`: run that long, not until `busy` drops. Returns a
    trace: the cycle `busy` dropped in, the cycles an address was accepted in, those `error` was high in,
    whether wlast marked each burst's last W beat, and the beats addressed but not moved; every cycle's
    state flags are checked on the way."""
    from hdl.dma.bus import BusStateMachine
    dut = BusStateMachine()
    trace = {"addr_cycles": [], "error": [], "wlast_ok": True}

    def chance(p):
        return rng is None or rng.random() < p

    async def tb(ctx):
        ctx.set(dut.xfer.store, store)
        ctx.set(dut.burst.len, beats[0] - 1)
        accepted, r_queue, w_left, b_due, in_addr_n_before = 0, [], 0, None, 0
        for cycle in range(cycles or 10 * sum(beats) + 100):
            ctx.set(dut.start, int(cycle in (0, start_again)))
            if ctx.get(dut.status.error):
                trace["error"].append(cycle)
            if cycle and not ctx.get(dut.status.busy):
                trace.setdefault("busy", cycle)
            valid_addr = ctx.get(dut.awvalid) | ctx.get(dut.arvalid)
            assert valid_addr == in_addr_n_before, cycle            # in_addr_n is ADDR's next value
            assert ctx.get(dut.awvalid) == (valid_addr & store)
            assert ctx.get(dut.bus_state.in_rdata) == ctx.get(dut.rready), cycle   # a LOAD's DATA
            ready = int(chance(0.6))
            ctx.set(dut.awready if store else dut.arready, ready)
            ctx.set(dut.arready if store else dut.awready, int(chance(0.5)))    # the other direction's ready
            if valid_addr and ready:
                trace["addr_cycles"].append(cycle)
                if store:
                    w_left = beats[accepted]
                else:
                    r_queue += [(cycle + 2, accepted, j) for j in range(beats[accepted])]
                accepted += 1
            # R: the queued beats in order, none before its time (fixed: each at once)
            rvalid = bool(r_queue) and r_queue[0][0] <= cycle and chance(0.7)
            ctx.set(dut.rvalid, int(rvalid))
            ctx.set(dut.rresp, 2 if rvalid and r_queue[0][1:] == bad else 0)
            if rvalid and ctx.get(dut.rready):
                r_queue.pop(0)
            # W: the FIFO pops (in_wdata, w_ready, wready), the B response after the last beat
            w_ready = w_left > 0 and chance(0.7)
            ctx.set(dut.w_fifo.w_ready, int(w_ready))
            pop = ctx.get(dut.bus_state.in_wdata) and w_ready and chance(0.7)
            ctx.set(dut.w_fifo.pop, int(pop))
            if store and ctx.get(dut.bus_state.in_wdata):
                assert ctx.get(dut.wvalid) == w_ready, cycle
            if pop:
                w_left -= 1
                trace["wlast_ok"] &= ctx.get(dut.wlast) == (w_left == 0)
                if w_left == 0:
                    b_due = cycle + 1
            bvalid = b_due is not None and b_due <= cycle and chance(0.6)
            ctx.set(dut.bvalid, int(bvalid))
            ctx.set(dut.bresp, 2 if bvalid and bad is not None and bad[0] == accepted - 1 else 0)
            if bvalid and ctx.get(dut.bready):
                b_due = None
            in_addr_n_before = ctx.get(dut.bus_state.in_addr_n)
            await ctx.tick()
            # the burst generator: the next burst's length from the acceptance on, `final` after the last
            ctx.set(dut.burst.len, beats[min(accepted, len(beats) - 1)] - 1)
            ctx.set(dut.burst.final, int(accepted == len(beats)))
            if "busy" in trace and cycles is None:
                break
        trace["beats_left"] = len(r_queue) + w_left          # beats addressed but not moved

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return trace


BURSTS = [[1], [3], [256], [2, 1, 5], [1, 1, 1, 1], [17, 256, 3]]


@pytest.mark.parametrize("store", [0, 1])
@pytest.mark.parametrize("beats", BURSTS)
def test_cycles_with_a_fixed_latency_slave(beats, store):
    """The first address SETUP cycles after `start`; then each burst DMA_READ_LATENCY / DMA_WRITE_LATENCY +
    its beats; a LOAD busy LOAD_DRAIN cycles more. One address per burst, no error."""
    trace = bus_run(beats, store)
    latency = timing.DMA_WRITE_LATENCY if store else timing.DMA_READ_LATENCY
    setup = STORE_SETUP if store else LOAD_SETUP
    assert trace["addr_cycles"][0] == setup
    assert trace["busy"] == setup + sum(latency + b for b in beats) + (0 if store else LOAD_DRAIN)
    assert len(trace["addr_cycles"]) == len(beats) and trace["error"] == [] and trace["wlast_ok"]
    assert trace["beats_left"] == 0


@pytest.mark.parametrize("store", [0, 1])
def test_random_handshakes(store):
    """Random ready, valid and FIFO flags: every burst is addressed once and moves all its beats (wlast on
    each STORE burst's last), the state flags match the state, and a `start` while busy changes nothing."""
    rng = np.random.default_rng(store)
    for beats in BURSTS:
        seed = int(rng.integers(1 << 30))
        trace = bus_run(beats, store, np.random.default_rng(seed))
        again = bus_run(beats, store, np.random.default_rng(seed), start_again=trace["busy"] // 2)
        assert len(trace["addr_cycles"]) == len(beats) and trace["error"] == [] and trace["wlast_ok"]
        assert trace["beats_left"] == 0
        assert again["busy"] == trace["busy"] and again["addr_cycles"] == trace["addr_cycles"]


@pytest.mark.parametrize("store", [0, 1])
def test_bus_error_stops_after_the_burst(store):
    """A SLVERR response in burst 1 of 3: `error` rises the cycle after it and stays; no address follows that
    burst and `busy` drops as after a last burst; the next `start` clears `error` a cycle later."""
    beats = [2, 4, 3]
    bad = (1, 3) if not store else (1, 0)
    ok = bus_run(beats[:2], store)
    trace = bus_run(beats, store, bad=bad, start_again=200, cycles=203)
    assert len(trace["addr_cycles"]) == 2 and trace["busy"] == ok["busy"]
    last = ok["busy"] - (0 if store else LOAD_DRAIN) - 1        # the cycle of the bad burst's last response
    assert trace["error"] == list(range(last + 1, 201))
