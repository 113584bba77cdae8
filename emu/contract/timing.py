"""The cycle model: how many clock cycles each instruction takes. The RTL matches it cycle for cycle
against the fixed-latency external memory model (sim/), and the golden emulator counts with it.

Execution: instructions issue in program order, one per cycle at most. LOAD/STORE go to the DMA unit,
MATMUL to the array, POST to the post-processing unit; an instruction waits until its unit is idle (plus
BUSY_LATENCY), so a DMA transfer or a POST overlaps the instructions before it on the other units. SYNC and
END wait until all three units are idle. Hazards between units are the program's to order with SYNC.

The array is idle again once a MATMUL's operands are read (`matmul_accept_cycles`), while its last result
rows are still on their way through the array into ACC (`matmul_cycles`): the next MATMUL's weights and
vectors follow them in, so consecutive MATMULs overlap their fill and drain. END, and a SYNC with drain=1,
also wait for that drain; a SYNC with drain=0 does not (what it orders, the DMA's reuse of ACT and WGT
entries, needs the operands read), so a POST must follow a draining SYNC. A MATMUL that accumulates into
ACC entries the one before it is still writing sees them when it reads each at the same position (the same
acc_addr: it starts at least MATMUL_MIN_ACCEPT + BUSY_LATENCY cycles later, the read-add-write's depth,
hdl/compute.py); at another position it is a hazard, the program's to order with a draining SYNC.

Constants that describe the gateware's latencies live here and nowhere else.
"""
from __future__ import annotations

import numpy as np

from emu.contract.config import AccelConfig, ELEMENT_BYTES, PARAM_BYTES
from emu.contract.isa import INSTR_BYTES, Buffer, Instr, Opcode

__all__ = ["ISSUE_LATENCY", "BUSY_LATENCY", "AXI_MAX_BURST_BEATS", "AXI_BOUNDARY", "DMA_LOAD_SETUP", "DMA_STORE_SETUP",
           "DMA_LOAD_DRAIN", "DMA_READ_LATENCY", "DMA_WRITE_LATENCY", "MATMUL_LATENCY", "POST_LATENCY",
           "FETCH_LATENCY", "MATMUL_MIN_ACCEPT", "element_bytes", "bursts", "dma_spans", "dma_extent", "dma_cycles",
           "matmul_cycles", "matmul_accept_cycles", "instr_cycles",
           "preload_cycles", "Timer"]

ISSUE_LATENCY = 1           # cycles from an instruction's issue to its unit seeing it: the sequencer registers
                            # the start strobes and arguments (hdl/sequencer.py); part of DMA_LOAD_SETUP,
                            # DMA_STORE_SETUP, MATMUL_LATENCY and POST_LATENCY below
BUSY_LATENCY = 1            # cycles from a unit going idle to the sequencer seeing it: each unit's busy flag
                            # crosses the chip into a register beside the issue logic (hdl/sequencer.py), so
                            # a unit takes its next instruction one cycle after it goes idle
AXI_MAX_BURST_BEATS = 256   # AXI4 INCR
AXI_BOUNDARY = 4096         # a burst never crosses a 4 KiB boundary
DMA_LOAD_SETUP = 10         # cycles from a LOAD's issue to its first address: issue, arguments registered, the
                            # span product rows * row_bytes (a registered adder tree), span set-up, two burst
                            # geometry stages (hdl/dma.py LOAD_SETUP_MIN)
DMA_STORE_SETUP = 15        # the same for a STORE, whose first beat must reach the W FIFO first: the lane
                            # sequencer's set-up, the buffer read, word select and lane funnel
                            # (hdl/dma.py STORE_SETUP_MIN)
DMA_LOAD_DRAIN = 4          # cycles from a LOAD's last data beat to its last buffer write (beat register, two
                            # rotation registers, write register): the unit stays busy until that write is done
DMA_READ_LATENCY = 2        # cycles from a read burst's address to its first data beat accepted
DMA_WRITE_LATENCY = 2       # cycles from a write burst's last beat to its response accepted, plus address
MATMUL_LATENCY = 14         # registers around the array beyond the R + C + T - 1 of a fold: issue (2),
                            # buffer read (2), the array's input register, the PE multiplier (4), the four
                            # stages of the ACC read-add-write, the ACC write (hdl/compute.py)
POST_LATENCY = 21           # issue (2), PARAM/ACC read (2), the post-processing unit's 14 pipeline stages, the
                            # activation table's read (2) and choice (1)
MATMUL_MIN_ACCEPT = 6       # a MATMUL keeps the array at least this long: the next one's ACC reads then come
                            # after this one's writes of the same rows (hdl/compute.py MATMUL_MIN_ACCEPT_MIN)
FETCH_LATENCY = 12          # from the preload's end to the first instruction at the head of the issue queue:
                            # fetch enable, instruction memory read (2), loop offsets (1), decode (7), queue
                            # (hdl/sequencer.py)


def element_bytes(buf: Buffer) -> int:
    return PARAM_BYTES if buf == Buffer.PARAM else ELEMENT_BYTES


def bursts(addr: int, nbytes: int, bus_bytes: int) -> list[tuple[int, int]]:
    """AXI bursts (aligned start address, beats) covering bytes [addr, addr + nbytes)."""
    out = []
    start = addr - addr % bus_bytes
    end = addr + nbytes
    while start < end:
        limit = min(start - start % AXI_BOUNDARY + AXI_BOUNDARY, start + AXI_MAX_BURST_BEATS * bus_bytes)
        stop = min(limit, end + (-end) % bus_bytes)
        out.append((start, (stop - start) // bus_bytes))
        start = stop
    return out


def dma_spans(instr: Instr, bus_bytes: int = 1) -> list[tuple[int, int]]:
    """Contiguous byte spans (address, bytes) a LOAD/STORE moves, in order: block by block, row by row.

    A block's rows are one span when their stride equals their byte length and a row is at least one bus
    beat long (row_bytes >= bus_bytes): the DMA streams them as one transfer. Shorter rows are moved one
    span each, because a beat would then complete several buffer entries and a buffer takes one entry a
    cycle. Blocks are never merged. The byte extent does not depend on `bus_bytes`."""
    row_bytes = instr.row_len * element_bytes(Buffer(instr.buf))
    merged = instr.ext_stride == row_bytes and row_bytes >= bus_bytes
    out = []
    for b in range(instr.blocks):
        base = instr.ext_addr + b * instr.block_stride
        if merged:
            out.append((base, row_bytes * instr.rows))
        else:
            out += [(base + r * instr.ext_stride, row_bytes) for r in range(instr.rows)]
    return out


def dma_extent(instr: Instr) -> int:
    """One past the last byte a LOAD/STORE touches."""
    row_bytes = instr.row_len * element_bytes(Buffer(instr.buf))
    return (instr.ext_addr + (instr.blocks - 1) * instr.block_stride + (instr.rows - 1) * instr.ext_stride
            + row_bytes)


def dma_cycles(instr: Instr, cfg: AccelConfig) -> int:
    """Cycles a LOAD/STORE keeps the DMA busy: its set-up, then for each burst of its spans (`dma_spans`,
    `bursts`) the bus latency and the beats, one burst after the other.

    Rows moved one span each are counted all at once: a row is at most 64 x PARAM_BYTES = 768 bytes, under
    256 beats of any bus, so it is one burst, or two where it crosses a 4 KiB boundary."""
    load = instr.op == Opcode.LOAD
    latency = DMA_READ_LATENCY if load else DMA_WRITE_LATENCY
    total = DMA_LOAD_SETUP + DMA_LOAD_DRAIN if load else DMA_STORE_SETUP
    bus = cfg.bus_bytes
    row_bytes = instr.row_len * element_bytes(Buffer(instr.buf))
    if instr.ext_stride == row_bytes and row_bytes >= bus:
        for addr, nbytes in dma_spans(instr, bus):
            for _, beats in bursts(addr, nbytes, bus):
                total += latency + beats
        return total
    starts = (instr.ext_addr + np.arange(instr.blocks, dtype=np.int64)[:, None] * instr.block_stride
              + np.arange(instr.rows, dtype=np.int64)[None, :] * instr.ext_stride)
    first = starts - starts % bus
    last = starts + row_bytes - 1                      # the span's last byte
    beats = (last - last % bus - first) // bus + 1
    cuts = (last // AXI_BOUNDARY != first // AXI_BOUNDARY)
    return total + int(beats.sum()) + latency * (starts.size + int(cuts.sum()))


def matmul_cycles(cfg: AccelConfig, rows: int) -> int:
    """Cycles from a MATMUL of `rows` activation rows reaching the array to its last ACC write done (the
    drain a POST or END waits for): the weight-stationary fold, R + C + T - 1 (the T vectors follow the
    weight tile's first row in, a cycle apart, and the last leaves after the R + C - 2 of the skew), and the
    registers around the array (MATMUL_LATENCY)."""
    return cfg.rows + cfg.cols + rows - 1 + MATMUL_LATENCY


def matmul_accept_cycles(cfg: AccelConfig, rows: int) -> int:
    """Cycles a MATMUL of `rows` activation rows keeps the array from taking the next instruction: its T
    vectors are read one a cycle, its R weight rows too, and at least MATMUL_MIN_ACCEPT pass. The next
    MATMUL's weight rows enter behind the last vector (hdl/array.py), so its results are its own."""
    return max(rows, cfg.rows, MATMUL_MIN_ACCEPT)


def instr_cycles(instr: Instr, cfg: AccelConfig) -> int:
    """Cycles the instruction keeps its unit busy (a MATMUL: until the array takes the next)."""
    if instr.op in (Opcode.LOAD, Opcode.STORE):
        return dma_cycles(instr, cfg)
    if instr.op == Opcode.MATMUL:
        return matmul_accept_cycles(cfg, instr.rows)
    if instr.op == Opcode.POST:
        return instr.rows + POST_LATENCY
    return 0


def preload_cycles(prog_addr: int, prog_len: int, cfg: AccelConfig) -> int:
    """Cycles from start to the first cycle an instruction may issue: the DMA copies the program into the
    instruction memory, then the fetch pipeline brings the first instruction to the head of the queue."""
    total = DMA_LOAD_SETUP + DMA_LOAD_DRAIN + BUSY_LATENCY + FETCH_LATENCY
    for _, beats in bursts(prog_addr, prog_len * INSTR_BYTES, cfg.bus_bytes):
        total += DMA_READ_LATENCY + beats
    return total


class Timer:
    """Issue-order simulation of the units; `now` after END's `issue` is the run's cycle count."""

    def __init__(self, cfg: AccelConfig, start: int = 0):
        self.cfg = cfg
        self.now = start          # cycle the next instruction may issue
        # cycle each unit may take its next instruction: BUSY_LATENCY after it goes idle
        self.dma_free = start
        self.array_free = start
        self.post_free = start
        self.acc_free = start     # ... and the cycle a draining SYNC may: BUSY_LATENCY after ACC is written

    def issue(self, instr: Instr, cycles: int | None = None) -> None:
        """Issue `instr`; `cycles` is its `instr_cycles` when the caller has it already."""
        if cycles is None:
            cycles = instr_cycles(instr, self.cfg)
        if instr.op in (Opcode.SYNC, Opcode.END):
            t = max(self.now, self.dma_free, self.array_free, self.post_free)
            if instr.op == Opcode.END or instr.drain:
                t = max(t, self.acc_free)
        elif instr.op == Opcode.LOOP:      # no unit: the fetch has taken the loop in hand
            t = self.now
        elif instr.op in (Opcode.LOAD, Opcode.STORE):
            t = max(self.now, self.dma_free)
            self.dma_free = t + cycles + BUSY_LATENCY
        elif instr.op == Opcode.MATMUL:
            t = max(self.now, self.array_free)
            self.array_free = t + cycles + BUSY_LATENCY
            self.acc_free = t + matmul_cycles(self.cfg, instr.rows) + BUSY_LATENCY
        else:
            t = max(self.now, self.post_free)
            self.post_free = t + cycles + BUSY_LATENCY
        self.now = t + 1
