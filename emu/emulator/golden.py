"""The golden emulator: executes a program image from external memory with the hardware's exact integer
semantics and its cycle model (emu/contract/timing.py). The RTL must agree with it on every byte written to
external memory, on the cycle count, on the useful-MAC count and on every fault.

Integer products go through float64 matrix multiplies: every partial sum is below 2**31 (proven by the
compiler) and float64 holds integers exactly up to 2**53.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Iterator

import numpy as np

from emu.contract import numerics
from emu.contract.config import AccelConfig, PARAM_DTYPE
from emu.contract.faults import FaultCode, HardwareFault
from emu.contract.isa import FIELDS, INSTR_BYTES, Buffer, Instr, Opcode, decode, opcode_of
from emu.contract.loops import walk
from emu.contract.timing import AXI_BOUNDARY, Timer, dma_extent, element_bytes, instr_cycles, preload_cycles

__all__ = ["Golden", "RunResult", "check_fields", "program_fault", "program_blob", "sum_segments", "trace"]


@dataclasses.dataclass
class RunResult:
    cycles: int
    macs: int
    instructions: int

    def utilization(self, cfg: AccelConfig) -> float:
        return self.macs / max(1, self.cycles * cfg.macs)


def program_fault(segments: list[tuple[int, int]], index: int, fault: HardwareFault) -> HardwareFault:
    """A fault raised in segment `index` of a program of several (emu.compiler.program.Program.starts),
    with its pc counted from the program's first instruction: golden and RTL report it the same way."""
    first = (segments[index][0] - segments[0][0]) // INSTR_BYTES
    return HardwareFault(fault.code, first + fault.pc, fault.detail)


def sum_segments(results: list[RunResult]) -> RunResult:
    """The result of a program of several segments: cycles, MACs and instructions summed."""
    return RunResult(cycles=sum(r.cycles for r in results), macs=sum(r.macs for r in results),
                     instructions=sum(r.instructions for r in results))


def _entry_width(cfg: AccelConfig, buf: Buffer) -> int:
    return cfg.buffer_geometry()[buf.name.lower()][0]


def _depth(cfg: AccelConfig, buf: Buffer) -> int:
    return cfg.buffer_geometry()[buf.name.lower()][1]


def check_fields(instr: Instr, cfg: AccelConfig) -> tuple[FaultCode, str] | None:
    """Decode-time checks, in the order the hardware makes them: ILLEGAL_FIELD, then BUFFER_RANGE."""
    op = instr.op
    if op in (Opcode.LOAD, Opcode.STORE):
        allowed = (Buffer.ACT, Buffer.WGT, Buffer.PARAM, Buffer.TABLE) if op == Opcode.LOAD else (Buffer.OUT,)
        if instr.buf not in allowed:
            return FaultCode.ILLEGAL_FIELD, f"buf={instr.buf} not allowed for {op.name}"
        buf = Buffer(instr.buf)
        if instr.rows == 0 or instr.blocks == 0:
            return FaultCode.ILLEGAL_FIELD, f"rows={instr.rows} blocks={instr.blocks}"
        if not 1 <= instr.row_len <= _entry_width(cfg, buf):
            return FaultCode.ILLEGAL_FIELD, f"row_len={instr.row_len} outside 1..{_entry_width(cfg, buf)}"
        entries = instr.rows * instr.blocks
        if instr.buf_addr + entries > _depth(cfg, buf):
            return FaultCode.BUFFER_RANGE, f"{buf.name}[{instr.buf_addr}:+{entries}] > {_depth(cfg, buf)}"
    elif op == Opcode.MATMUL:
        if instr.rows == 0:
            return FaultCode.ILLEGAL_FIELD, "rows=0"
        if not 1 <= instr.k_valid <= cfg.rows or not 1 <= instr.n_valid <= cfg.cols:
            return FaultCode.ILLEGAL_FIELD, f"k_valid={instr.k_valid} n_valid={instr.n_valid}"
        if (instr.act_addr + instr.rows > cfg.act_depth or instr.wgt_addr + cfg.rows > cfg.wgt_depth
                or instr.acc_addr + instr.rows > cfg.acc_depth):
            return FaultCode.BUFFER_RANGE, "MATMUL operand past a buffer's end"
    elif op == Opcode.POST:
        if instr.rows == 0:
            return FaultCode.ILLEGAL_FIELD, "rows=0"
        if (instr.acc_addr + instr.rows > cfg.acc_depth or instr.out_addr + instr.rows > cfg.out_depth
                or instr.param_addr >= cfg.param_depth):
            return FaultCode.BUFFER_RANGE, "POST operand past a buffer's end"
    return None


def _costs(instr: Instr, cfg: AccelConfig) -> tuple[tuple[FaultCode, str] | None, int, int]:
    """(decode-time fault, DMA end byte, cycles) of an instruction. Everything but the end byte depends on a
    LOAD/STORE's ext_addr only modulo AXI_BOUNDARY (bursts split there, and every bus width divides it), so
    the loop-stepped copies of one instruction mostly share one entry of the cache."""
    values = list(instr.fields.values())
    if instr.op not in (Opcode.LOAD, Opcode.STORE):
        return _costs_of(instr.op, tuple(values), cfg)
    ext = values[_EXT]
    values[_EXT] = ext % AXI_BOUNDARY
    bad, end, cycles = _costs_of(instr.op, tuple(values), cfg)
    return bad, end - values[_EXT] + ext if bad is None else 0, cycles


_EXT = [f.name for f in FIELDS[Opcode.LOAD]].index("ext_addr")     # STORE has the same fields


@functools.lru_cache(maxsize=1 << 16)
def _costs_of(op: Opcode, values: tuple, cfg: AccelConfig) -> tuple[tuple[FaultCode, str] | None, int, int]:
    instr = Instr(op, dict(zip((f.name for f in FIELDS[op]), values)))
    bad = check_fields(instr, cfg)
    if bad is not None:
        return bad, 0, 0
    return None, dma_extent(instr) if op in (Opcode.LOAD, Opcode.STORE) else 0, instr_cycles(instr, cfg)


@functools.lru_cache(maxsize=256)   # a large network is ~200 segments, each decoded once per process
def _decoded(blob: bytes, cfg: AccelConfig) -> list[tuple[Instr | None, tuple[FaultCode, str] | None, int, int]]:
    """(instruction, decode-time fault, DMA end byte, cycles) per word; a program runs many times,
    it is decoded and timed once."""
    out = []
    for pc in range(len(blob) // INSTR_BYTES):
        word = int.from_bytes(blob[pc * INSTR_BYTES:(pc + 1) * INSTR_BYTES], "little")
        instr = decode(word)
        if instr is None:
            out.append((None, (FaultCode.ILLEGAL_OPCODE, f"opcode {opcode_of(word)}"), 0, 0))
            continue
        out.append((instr, *_costs(instr, cfg)))
    return out


class Golden:
    """One accelerator instance: on-chip buffers plus a view of external memory (uint8, little endian)."""

    def __init__(self, cfg: AccelConfig, memory: np.ndarray):
        if memory.dtype != np.uint8 or memory.ndim != 1:
            raise TypeError("external memory must be a 1-D uint8 array")
        self.cfg = cfg
        self.mem = memory
        c = cfg
        self.act = np.zeros((c.act_depth, c.rows), np.int64)
        # zero bits, as the block RAMs start: binary weights (weight_bits=1) read them as +1
        self.wgt = np.full((c.wgt_depth, c.cols), numerics.loaded(0, c.weight_bits, weight=True), np.int64)
        self.bias = np.zeros((c.param_depth, c.cols), np.int64)
        self.mult = np.zeros((c.param_depth, c.cols), np.int64)
        self.acc = np.zeros((c.acc_depth, c.cols), np.int64)
        self.out = np.zeros((c.out_depth, c.cols), np.int64)
        self.table = np.zeros((c.table_depth, c.cols), np.int64)

    # ---- one instruction each ----
    @staticmethod
    def _addresses(i: Instr) -> np.ndarray:
        """Byte addresses a LOAD/STORE moves, shaped [blocks * rows, row_len * element_bytes]: entry order."""
        row_bytes = i.row_len * element_bytes(Buffer(i.buf))
        starts = (i.ext_addr + np.arange(i.blocks, dtype=np.int64)[:, None] * i.block_stride
                  + np.arange(i.rows, dtype=np.int64)[None, :] * i.ext_stride).reshape(-1)
        return starts[:, None] + np.arange(row_bytes, dtype=np.int64)[None, :]

    def _load(self, i: Instr) -> None:
        buf = Buffer(i.buf)
        raw = self.mem[self._addresses(i)]
        n = i.rows * i.blocks
        rows = slice(i.buf_addr, i.buf_addr + n)
        if buf == Buffer.PARAM:
            rec = np.ascontiguousarray(raw).view(PARAM_DTYPE).reshape(n, i.row_len)
            self.bias[rows] = 0
            self.mult[rows] = 0
            self.bias[rows, :i.row_len] = rec["bias"]
            self.mult[rows, :i.row_len] = rec["mult"]
            return
        weight = buf == Buffer.WGT
        bits = self.cfg.weight_bits if weight else self.cfg.act_bits
        target = {Buffer.ACT: self.act, Buffer.WGT: self.wgt, Buffer.TABLE: self.table}[buf]
        target[rows] = numerics.loaded(0, bits, weight=weight)     # the lanes past row_len load zero bytes
        target[rows, :i.row_len] = numerics.loaded(raw.view(np.int8), bits, weight=weight)

    def _store(self, i: Instr) -> None:
        vals = self.out[i.buf_addr:i.buf_addr + i.rows * i.blocks, :i.row_len].astype(np.int8).view(np.uint8)
        self.mem[self._addresses(i)] = vals

    def _matmul(self, i: Instr) -> None:
        a = self.act[i.act_addr:i.act_addr + i.rows].astype(np.float64)
        w = self.wgt[i.wgt_addr:i.wgt_addr + self.cfg.rows].astype(np.float64)
        # the array's partial sums wrap at acc_bits, so reduce_max compares the wrapped result with ACC
        prod = numerics.wrap((a @ w).astype(np.int64), self.cfg.acc_bits)
        dst = slice(i.acc_addr, i.acc_addr + i.rows)
        if i.accumulate:
            prod = np.maximum(prod, self.acc[dst]) if i.reduce_max else prod + self.acc[dst]
        self.acc[dst] = numerics.wrap(prod, self.cfg.acc_bits)

    def _post(self, i: Instr) -> None:
        acc = self.acc[i.acc_addr:i.acc_addr + i.rows]
        y = numerics.requantize(acc, self.bias[i.param_addr], self.mult[i.param_addr], i.shift,
                                i.zero_point, i.clamp_lo, i.clamp_hi)
        y = numerics.wrap(y, self.cfg.act_bits)
        if i.table:
            y = numerics.look_up(y, self.table, self.cfg.act_bits)
        self.out[i.out_addr:i.out_addr + i.rows] = y

    # ---- a whole run ----
    def run_segments(self, segments: list[tuple[int, int]], *, watchdog: int = 0) -> RunResult:
        """Run a program of several segments [(prog_addr, prog_len)], each started after the previous one
        ends, as the host does on the hardware; `watchdog` bounds each. Raises HardwareFault."""
        results = []
        for index, (prog_addr, prog_len) in enumerate(segments):
            try:
                results.append(self.run(prog_addr, prog_len, watchdog=watchdog))
            except HardwareFault as fault:
                raise program_fault(segments, index, fault) from None
        return sum_segments(results)

    def run(self, prog_addr: int, prog_len: int, *, watchdog: int = 0) -> RunResult:
        """Run the program at `prog_addr` (`prog_len` instructions). Raises HardwareFault."""
        blob = program_blob(self.mem, prog_addr, prog_len, self.cfg)
        for item in trace(blob, prog_addr, self.cfg, self.mem.size, watchdog):
            if isinstance(item, tuple):
                self.execute(item[0])
            elif isinstance(item, HardwareFault):
                raise item
            else:
                return item
        raise AssertionError("a trace ends at END or a fault")

    def execute(self, instr: Instr) -> None:
        """One data instruction (LOAD, STORE, MATMUL or POST), already checked."""
        op = instr.op
        if op == Opcode.LOAD:
            self._load(instr)
        elif op == Opcode.STORE:
            self._store(instr)
        elif op == Opcode.MATMUL:
            self._matmul(instr)
        else:
            self._post(instr)


def program_blob(mem: np.ndarray, prog_addr: int, prog_len: int, cfg: AccelConfig) -> bytes:
    """The program's words as the preload copies them. Raises PROGRAM_RANGE or BUS_ERROR at pc 0."""
    if prog_len == 0 or prog_len > cfg.instr_depth:
        raise HardwareFault(FaultCode.PROGRAM_RANGE, 0, f"program length {prog_len} outside 1..{cfg.instr_depth}")
    if prog_addr + prog_len * INSTR_BYTES > mem.size:
        raise HardwareFault(FaultCode.BUS_ERROR, 0, "program lies past the end of external memory")
    return mem[prog_addr:prog_addr + prog_len * INSTR_BYTES].tobytes()


def trace(blob: bytes, prog_addr: int, cfg: AccelConfig, mem_size: int, watchdog: int = 0
          ) -> Iterator[tuple[Instr, int] | RunResult | HardwareFault]:
    """What a program does, known before any data moves (no decision depends on a value): yields each data
    instruction (LOAD, STORE, MATMUL, POST) in the order it runs, with its loop offsets applied and checked,
    as (instruction, one past the last byte it touches if a LOAD/STORE, else 0), then the RunResult at END
    or the HardwareFault the next instruction raises. Every fault depends only
    on the program, the configuration, the memory's size and the watchdog."""
    timer = Timer(cfg, preload_cycles(prog_addr, len(blob) // INSTR_BYTES, cfg))
    macs = 0
    decoded = _decoded(blob, cfg)
    for step in walk([d[0] for d in decoded]):
        pc, instr = step.pc, step.instr
        if step.fault is not None:      # an illegal word's detail names its opcode
            detail = decoded[pc][1][1] if instr is None and pc < len(decoded) else step.fault[1]
            yield HardwareFault(step.fault[0], pc, detail)
            return
        if instr is decoded[pc][0]:
            _, bad, end, cycles = decoded[pc]
        else:                       # stepped by a loop: its checks, extent and cycles are its own
            bad, end, cycles = _costs(instr, cfg)
        if bad is not None:
            yield HardwareFault(bad[0], pc, bad[1])
            return
        if end > mem_size:
            yield HardwareFault(FaultCode.BUS_ERROR, pc, f"access up to byte {end:#x} past the memory's "
                                f"{mem_size:#x} bytes")
            return
        timer.issue(instr, cycles)
        if watchdog and timer.now > watchdog:
            yield HardwareFault(FaultCode.WATCHDOG, pc, f"cycle limit {watchdog} reached")
            return
        op = instr.op
        if op == Opcode.END:
            yield RunResult(cycles=timer.now, macs=macs, instructions=pc + 1)
            return
        if op in _DATA_OPS:
            if op == Opcode.MATMUL:
                macs += instr.rows * instr.k_valid * instr.n_valid
            yield instr, end
    raise AssertionError("a walk ends at END or a fault")


_DATA_OPS = (Opcode.LOAD, Opcode.STORE, Opcode.MATMUL, Opcode.POST)
