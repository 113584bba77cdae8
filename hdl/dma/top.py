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
beat, until its last entry write is done. `busy` and `error` are flip-flops. Unaligned first/last beats are
handled with per-lane byte selection (WSTRB on writes).

The unit is seven machines, one module each, joined here (their interfaces: hdl/dma/signatures.py):

  arguments.Arguments       the argument registers (loaded while idle) and `go`; `busy` / `error` back
  span.SpanSetup            the transfer constants and the span product rows * row_bytes
  bursts.BurstGenerator     the spans cut into bursts: the AR/AW address and length
  lanes.LaneSequencer       the spans a beat at a time: which lanes each beat carries, for which entry bytes
  load.LoadAssembly         LOAD: R beats rotated onto entry bytes, merged, written
  store.StoreProducer       STORE: beats read from OUT entries ahead of the W channel into the W FIFO
  bus.BusStateMachine       the bus handshakes, burst after burst

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
The lane sequencer's two set-up states per span, the LOAD rotation stages and the STORE producer's read
are described in their modules.

The copies are `Family.copies` (hdl/fpga/family.py): on ECP5 flip-flops Yosys keeps; elsewhere one
register stands for them all, which is the same cycle for cycle.
"""
from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from emu.contract import timing
from emu.contract.config import EXT_ADDR_BITS

from hdl.axi import axi4_signature
from hdl.dma.arguments import Arguments
from hdl.dma.bursts import BurstGenerator
from hdl.dma.bus import BusStateMachine
from hdl.dma.cycles import LOAD_DRAIN, LOAD_DRAIN_MIN, LOAD_SETUP, LOAD_SETUP_MIN, STORE_SETUP, STORE_SETUP_MIN
from hdl.dma.lanes import LaneSequencer
from hdl.dma.load import LoadAssembly
from hdl.dma.signatures import dma_command_signature
from hdl.dma.span import SpanSetup
from hdl.dma.store import StoreProducer

__all__ = ["DMA"]


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
        bus = self.bus
        m.submodules.arguments = args = Arguments()
        m.submodules.span_setup = span = SpanSetup(bus_bytes=B, entry_bytes=EB)
        m.submodules.bursts = bursts = BurstGenerator(bus_bytes=B)
        m.submodules.lane_seq = lanes = LaneSequencer(bus_bytes=B)
        m.submodules.load = load = LoadAssembly(bus_bytes=B, entry_bytes=EB)
        m.submodules.store = store = StoreProducer(bus_bytes=B, entry_bytes=EB, rd_latency=self._rd_latency)
        m.submodules.bus_fsm = fsm = BusStateMachine()

        wiring.connect(m, wiring.flipped(self.cmd), args.cmd)
        wiring.connect(m, args=args.xfer, span=span.xfer, bursts=bursts.xfer, lanes=lanes.xfer, load=load.xfer,
                       store=store.xfer, fsm=fsm.xfer)
        wiring.connect(m, fsm=fsm.status, args=args.status)
        wiring.connect(m, span=span.span, bursts=bursts.span, lanes=lanes.span)
        wiring.connect(m, bursts=bursts.burst, fsm=fsm.burst)
        wiring.connect(m, lanes=lanes.beat, load=load.beat, store=store.beat)
        wiring.connect(m, store=store.w_fifo, lanes=lanes.w_fifo, fsm=fsm.w_fifo)
        wiring.connect(m, fsm=fsm.bus_state, bursts=bursts.bus_state, lanes=lanes.bus_state, load=load.bus_state,
                       store=store.bus_state)
        m.d.comb += [
            load.rb_mask.eq(span.rb_mask), fsm.start.eq(self.cmd.start),
            # the AXI channels: AW and AR carry the same burst
            bus.awaddr.eq(bursts.burst.addr), bus.awlen.eq(bursts.burst.len), bus.awsize.eq(bursts.burst.size),
            bus.awburst.eq(bursts.burst.burst),
            bus.araddr.eq(bursts.burst.addr), bus.arlen.eq(bursts.burst.len), bus.arsize.eq(bursts.burst.size),
            bus.arburst.eq(bursts.burst.burst),
            bursts.awready.eq(bus.awready), bursts.arready.eq(bus.arready),
            fsm.awready.eq(bus.awready), fsm.arready.eq(bus.arready),
            bus.awvalid.eq(fsm.awvalid), bus.arvalid.eq(fsm.arvalid),
            bus.wdata.eq(store.wdata), bus.wstrb.eq(store.wstrb), bus.wlast.eq(fsm.wlast), bus.wvalid.eq(fsm.wvalid),
            store.wready.eq(bus.wready),
            fsm.bvalid.eq(bus.bvalid), fsm.bresp.eq(bus.bresp), bus.bready.eq(fsm.bready),
            lanes.rvalid.eq(bus.rvalid), load.rvalid.eq(bus.rvalid), load.rdata.eq(bus.rdata),
            fsm.rvalid.eq(bus.rvalid), fsm.rresp.eq(bus.rresp), bus.rready.eq(fsm.rready),
            # the buffers: LOAD's entry writes, STORE's entry reads
            self.wr_en.eq(load.wr_en), self.wr_target.eq(args.xfer.target), self.wr_addr.eq(load.wr_addr),
            self.wr_data.eq(load.wr_data),
            self.rd_addr.eq(store.rd_addr), store.rd_data.eq(self.rd_data),
        ]
        return m
