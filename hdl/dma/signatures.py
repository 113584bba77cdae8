"""The interfaces of the DMA and of its machines, each declared once.

`dma_command_signature` is the DMA's command port as the sequencer sees it. The others join the machines
(hdl/dma/top.py); each is driven by one machine (Out) and read by the others (In):

  transfer   arguments.Arguments      -> span set-up, burst generator, lane sequencer, LOAD, STORE, bus
  status     bus.BusStateMachine      -> arguments
  span       span.SpanSetup           -> burst generator, lane sequencer
  burst      bursts.BurstGenerator    -> bus state machine (the AR/AW payload: top.py)
  beat       lanes.LaneSequencer      -> LOAD, STORE
  w_fifo     store.StoreProducer      -> lane sequencer, bus state machine
  bus_state  bus.BusStateMachine      -> burst generator, lane sequencer, LOAD, STORE

A flag `x_n` beside `x` is x's next value (combinational): `x` is a flip-flop the machine that drives it
registers from `x_n`, and a reader registers copies of it from `x_n` too.
"""
from __future__ import annotations

from amaranth.hdl import Shape, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from emu.contract import timing
from emu.contract.config import EXT_ADDR_BITS, PARAM_BYTES
from emu.contract.isa import FIELDS, INSTR_BYTES, Opcode

__all__ = ["dma_command_signature", "ARGUMENTS", "TARGET_INSTR", "transfer_signature", "status_signature",
           "span_signature", "burst_signature", "beat_signature", "w_fifo_signature", "bus_state_signature",
           "BOUNDARY_BITS", "LIM_BITS", "LEN_BITS", "SPAN_BITS", "entry_words"]


def entry_words(entry_bytes: int, bus_bytes: int) -> int:
    """Bus words of one buffer entry: ceil(entry_bytes / bus_bytes), the last word padded with zeros."""
    return -(-entry_bytes // bus_bytes)


#: AccelConfig's limits: every buffer depth (instr_depth included) is at most 2**16 entries, and an entry at
#: most 64 lanes (rows, cols <= 64).
_DEPTH_MAX = 1 << 16
_LANES_MAX = 64

#: AXI4's burst limits, from the contract: the address bits below the boundary a burst never crosses, the
#: compare window of the burst-fit flags (one bit more), and the width of an AXI length (beats - 1).
BOUNDARY_BITS = exact_log2(timing.AXI_BOUNDARY)
LIM_BITS = BOUNDARY_BITS + 1
LEN_BITS = exact_log2(timing.AXI_MAX_BURST_BEATS)


#: The write target of the program preload: the instruction memory (beside LOAD's buffers in `target`).
TARGET_INSTR = 3


def dma_command_signature() -> wiring.Signature:
    """The DMA's command interface as the sequencer sees it (hdl/sequencer.py `dma`; the DMA's `cmd` is its
    flip): Out `start` (a one-cycle strobe), `store` (1: STORE, 0: LOAD), `target` and the transfer
    arguments, all unsigned; `preload` (1: a start is the program preload, `prog_len` 16-byte rows from
    `prog_addr` into instruction memory, TARGET_INSTR, and the other arguments are not read); In `busy` and
    `error` (flip-flops). The widths are the LOAD/STORE fields' (emu.contract.isa.FIELDS) but for `rows`
    and `row_bytes`, which are not fields."""
    ld = {f.name: f.width for f in FIELDS[Opcode.LOAD]}
    assert ld == {f.name: f.width for f in FIELDS[Opcode.STORE]} and ld["ext_addr"] == EXT_ADDR_BITS
    assert TARGET_INSTR.bit_length() <= ld["buf"]
    # one bit over the field: the program preload moves prog_len rows, up to instr_depth <= 2**16, through
    # the same argument register
    rows_bits = max(ld["rows"], _DEPTH_MAX.bit_length())
    return wiring.Signature({
        "start": Out(1), "store": Out(1),
        # LOAD's `buf` (ACT, WGT, PARAM, TABLE), or TARGET_INSTR for the program preload
        "target": Out(ld["buf"]),
        "preload": Out(1), "prog_addr": Out(EXT_ADDR_BITS), "prog_len": Out(rows_bits),
        "rows": Out(rows_bits),
        "blocks": Out(ld["blocks"]),
        # bytes of one row, from the decoder (row_len * element bytes) or INSTR_BYTES for the preload: a legal
        # row_len is at most an entry's lanes, so a PARAM row (the longest) is at most 64 * PARAM_BYTES bytes
        "row_bytes": Out(max(_LANES_MAX * PARAM_BYTES, INSTR_BYTES).bit_length()),
        "buf_addr": Out(ld["buf_addr"]), "ext_addr": Out(EXT_ADDR_BITS),
        "ext_stride": Out(ld["ext_stride"]), "block_stride": Out(ld["block_stride"]),
        "busy": In(1), "error": In(1),
    })


def _width(name: str) -> int:
    return Shape.cast(dma_command_signature().members[name].shape).width


#: bytes of a merged span, rows * row_bytes (the span product's width)
SPAN_BITS = _width("rows") + _width("row_bytes")

#: the command members the argument registers hold for a transfer
ARGUMENTS = ("store", "target", "rows", "blocks", "row_bytes", "buf_addr", "ext_addr", "ext_stride",
             "block_stride")


def transfer_signature() -> wiring.Signature:
    """The argument registers (ARGUMENTS, the command's widths), loaded in every cycle the unit is idle
    and held while it is busy, and `go`, a one-cycle strobe in cycle 1 of a transfer."""
    cmd = dma_command_signature().members
    return wiring.Signature({"go": Out(1), **{name: Out(cmd[name].shape) for name in ARGUMENTS}})


def status_signature() -> wiring.Signature:
    """`busy`: a flip-flop, the bus state machine is not in IDLE; `error`: a flip-flop of its own, a response
    other than OKAY since the transfer's `start`."""
    return wiring.Signature({"busy": Out(1), "error": Out(1)})


def span_signature(bus_bytes: int) -> wiring.Signature:
    """The transfer constants and the span set-up, held from `go_span` (cycle SPAN_CYCLE) to the end of the
    transfer but for `go_span` and the two `span_now` values, which are valid in the go_span cycle only.
    Byte counts are unsigned; `b_mrb` is signed."""
    lg_b = exact_log2(bus_bytes)
    rb_hi = _width("row_bytes") - lg_b
    return wiring.Signature({
        "go_span": Out(1),                      # the cycle the span product is ready: the spans are set up
        "merged": Out(1),                       # ext_stride == row_bytes >= B: a block's rows are one span
        "span_now": Out(SPAN_BITS),             # a span's bytes (rows * row_bytes or row_bytes), at go_span
        "span_now_m1": Out(LIM_BITS),           # the same - 1, modulo 2**LIM_BITS, at go_span
        "span_bytes": Out(SPAN_BITS),           # span_now registered: the bytes of every block's spans
        "span_bytes_m1": Out(LIM_BITS),         # span_now_m1 registered
        "block_spans": Out(17),                 # the spans of a block after its first
        "more_spans_0": Out(1),                 # block_spans != 0, from go_span
        "rb_m1": Out(LIM_BITS),                 # row_bytes - 1, modulo 2**LIM_BITS
        "rows_m1": Out(_width("rows")), "blocks_m1": Out(_width("blocks")),
        "multi_rows": Out(1), "multi_blocks": Out(1),       # rows != 1, blocks != 1
        "b_mrb": Out(signed(12)),               # B - row_bytes
        "stride_lane": Out(lg_b), "bstride_lane": Out(lg_b),    # ext_stride % B, block_stride % B
        # span_bytes // B + 0, 1, 2 for a merged span (the product) and for a row (row_bytes)
        "prod_hi": Out(SPAN_BITS - lg_b), "prod_hi_p1": Out(SPAN_BITS - lg_b), "prod_hi_p2": Out(SPAN_BITS - lg_b),
        "rb_hi_p1": Out(rb_hi), "rb_hi_p2": Out(rb_hi),
        "hi0": Out(1), "hi1": Out(1), "hi2": Out(1),      # span_bytes // B is 0, 1, 2
    })


def burst_signature() -> wiring.Signature:
    """The next burst, ready whenever the bus state machine is in ADDR: its aligned address, AXI length
    (beats - 1), size and burst type (INCR) for AR or AW; `final`: no burst follows it."""
    return wiring.Signature({"addr": Out(EXT_ADDR_BITS), "len": Out(LEN_BITS), "size": Out(3), "burst": Out(2),
                             "final": Out(1)})


def beat_signature(bus_bytes: int) -> wiring.Signature:
    """The beat the lane sequencer describes (LOAD: the next R beat; STORE: the next beat to produce):
    `in_beat` (a flip-flop: the lane state is BEAT), the bus `lanes` it carries ([skip, skip + n), one bit a
    lane), `pos` (the entry byte it starts at) in `entry` (and `entry_p1` = entry + 1), `s` (signed: the
    bytes past the entry's end, pos + n - row_bytes), `complete` (s >= 0: the beat completes the entry), and
    `skip_rb` = (skip + row_bytes) % B."""
    lg_b = exact_log2(bus_bytes)
    return wiring.Signature({
        "in_beat": Out(1), "lanes": Out(bus_bytes), "complete": Out(1), "s": Out(signed(12)),
        "n": Out(lg_b + 1), "pos": Out(10), "skip": Out(lg_b), "skip_rb": Out(lg_b),
        "entry": Out(16), "entry_p1": Out(16),
    })


def w_fifo_signature() -> wiring.Signature:
    """The STORE W FIFO's side: `credit_ok` (a flip-flop, and `credit_ok_n` its next value: a STORE whose
    producer may take a beat), `w_ready` (a flip-flop: the FIFO is not empty) and `pop` (a W beat leaves)."""
    return wiring.Signature({"credit_ok": Out(1), "credit_ok_n": Out(1), "w_ready": Out(1), "pop": Out(1)})


def bus_state_signature() -> wiring.Signature:
    """The bus state machine's state flags, flip-flops of their own: `in_rdata` (a LOAD's DATA) and
    `in_wdata` (a STORE's DATA), and the next values `in_addr_n` (of ADDR) and `in_rdata_n`."""
    return wiring.Signature({"in_addr_n": Out(1), "in_rdata": Out(1), "in_rdata_n": Out(1), "in_wdata": Out(1)})
