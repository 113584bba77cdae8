"""The DMA's bus state machine: IDLE, SETUP, then per burst ADDR, DATA (and a STORE's RESP), a LOAD's DRAIN.

Bursts run strictly one after another, so with a slave that answers after a fixed latency a burst costs
exactly DMA_READ_LATENCY (LOAD) or DMA_WRITE_LATENCY (STORE) + beats cycles:

  LOAD  burst: AR (cycle a) ... first R beat at a + 2 (memory latency) ... last beat, next AR.
  STORE burst: AW (cycle a), W beats a+1 .. a+beats, B accepted at a+beats+1, next AW.

The first address goes out LOAD_SETUP (or STORE_SETUP) cycles after `start`, and a LOAD stays busy
LOAD_DRAIN cycles after its last R beat, until its last entry write is done. Back-pressure is honoured on
AR/AW/W (ready from the slave) and R/B are accepted whenever valid in the matching state. A response other
than OKAY sets `error`; the transfer stops after that burst and `busy` drops.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.dma.cycles import LOAD_DRAIN, LOAD_SETUP, STORE_SETUP
from hdl.dma.signatures import (LEN_BITS, burst_signature, bus_state_signature, status_signature,
                                transfer_signature, w_fifo_signature)
from hdl.fpga import family_of

__all__ = ["BusStateMachine"]


class BusStateMachine(wiring.Component):
    """`start` (the command's strobe) leaves IDLE; `xfer` (transfer_signature; `store` only), `burst`
    (burst_signature; `len` and `final`) and `w_fifo` (w_fifo_signature; `w_ready` and `pop`) steer it.
    `status` (status_signature): `busy` and `error`; `bus_state` (bus_state_signature): its state flags.
    The AXI handshakes are the bus members of the same names (the master's side)."""

    def __init__(self):
        super().__init__({
            "start": In(1), "xfer": In(transfer_signature()), "burst": In(burst_signature()),
            "w_fifo": In(w_fifo_signature()),
            "status": Out(status_signature()), "bus_state": Out(bus_state_signature()),
            "awvalid": Out(1), "awready": In(1), "arvalid": Out(1), "arready": In(1),
            "wvalid": Out(1), "wlast": Out(1), "rvalid": In(1), "rresp": In(2), "rready": Out(1),
            "bvalid": In(1), "bresp": In(2), "bready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        family = family_of(platform)

        def copies(value, count, name):
            return family.copies(m, value, count, name=name)

        store, d_len, final = self.xfer.store, self.burst.len, self.burst.final
        w_ready, pop = self.w_fifo.w_ready, self.w_fifo.pop

        busy = Signal()                                 # a flip-flop: the bus state machine is not in IDLE
        # the bus states ADDR and a LOAD's DATA have flip-flops of their own, so that an accepted address (which
        # steps ~150 address-generator flip-flops) and an R beat are one LUT from registers and the inputs
        in_addr, in_rdata, in_wdata = Signal(), Signal(), Signal()   # ADDR; DATA of a LOAD; of a STORE
        # flags with copies are assigned through their next values (`_n`), which the copies register too
        in_addr_n, in_rdata_n = Signal(), Signal()
        m.d.comb += [in_addr_n.eq(in_addr), in_rdata_n.eq(in_rdata)]
        m.d.sync += [in_addr.eq(in_addr_n), in_rdata.eq(in_rdata_n)]
        # `error` is assigned through its next value, which a flip-flop of its own registers for the output:
        # the sequencer's register of it is across the chip, and the bus state machine reads this one
        error, error_n = Signal(), Signal()
        m.d.comb += error_n.eq(error)
        m.d.sync += error.eq(error_n)
        with m.If(self.start & ~busy):
            m.d.comb += error_n.eq(0)
        m.d.comb += [self.status.busy.eq(busy), self.status.error.eq(copies(error_n, 1, "error_out")[0]),
                     self.bus_state.in_addr_n.eq(in_addr_n), self.bus_state.in_rdata.eq(in_rdata),
                     self.bus_state.in_rdata_n.eq(in_rdata_n), self.bus_state.in_wdata.eq(in_wdata)]

        beat_cnt, last_b = Signal(LEN_BITS), Signal()
        setup_cnt, setup_end = Signal(range(max(STORE_SETUP, LOAD_SETUP) + 1)), Signal(name="setup_end")
        drain_cnt = Signal(range(LOAD_DRAIN + 1))
        m.d.comb += self.wlast.eq(last_b)

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

        # an address is accepted (the bus state is ADDR); the burst address generator steps on copies of
        # in_addr of its own
        accept = Signal()
        m.d.comb += accept.eq(in_addr & Mux(store, self.awready, self.arready))
        with m.If(accept):
            m.d.comb += in_addr_n.eq(0)
            m.d.sync += in_wdata.eq(store)
            m.d.comb += in_rdata_n.eq(~store)
            m.d.sync += [beat_cnt.eq(d_len), last_b.eq(d_len == 0)]

        with m.FSM(name="bus"):
            with m.State("IDLE"):
                with m.If(self.start):
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
                m.d.comb += [self.awvalid.eq(store), self.arvalid.eq(~store)]
                with m.If(accept):
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(~store):
                    m.d.comb += self.rready.eq(1)
                    with m.If(self.rvalid):
                        bad = self.rresp != 0
                        with m.If(bad):
                            m.d.comb += error_n.eq(1)
                        beat_done()
                        with m.If(last_b):
                            m.d.comb += in_rdata_n.eq(0)
                            next_burst(error | bad)
                with m.Else():
                    m.d.comb += self.wvalid.eq(w_ready)
                    with m.If(pop):
                        beat_done()
                        with m.If(last_b):
                            m.d.sync += in_wdata.eq(0)
                            m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += self.bready.eq(1)
                with m.If(self.bvalid):
                    bad = self.bresp != 0
                    with m.If(bad):
                        m.d.comb += error_n.eq(1)
                    next_burst(error | bad)
            with m.State("DRAIN"):
                m.d.sync += drain_cnt.eq(drain_cnt - 1)
                with m.If(drain_cnt == 0):
                    m.d.sync += busy.eq(0)
                    m.next = "IDLE"
        return m
