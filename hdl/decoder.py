"""Instruction decode, pipelined: field views built from emu.isa.field_layout, the decode-time fault checks,
and the values the units need that take arithmetic (a PARAM row's bytes, a LOAD/STORE's entry count, a
MATMUL's MACs per row).

The checks are emu.golden.check_fields in hardware, same order: ILLEGAL_OPCODE, then ILLEGAL_FIELD, then
BUFFER_RANGE; a word fetched from past the program's end (`past_end`) is PROGRAM_RANGE before all of them.
Sums of 16-bit fields are formed at 17 bits, so they never wrap. A LOAD/STORE's entry count rows * blocks
(16 x 10 bits, unsigned) is a 26-bit product, compared with depth - buf_addr, so nothing wraps either.

Pipeline: a word presented with `valid` in cycle c comes out with its results in cycle c + LATENCY. The
word is registered first (it comes from a block RAM and fans out widely); the next stage decodes single
fields, forms operand ends and starts the product `count` (rows * blocks, or k_valid * n_valid for a
MATMUL) in hdl.pipeline.product's adder tree; the range checks follow, the last stage compares the count
with the room left in the buffer. No stage holds more than one carry chain. `flush` drops what is in
flight.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from emu.config import AccelConfig, PARAM_BYTES
from emu.faults import FaultCode
from emu.isa import INSTR_BITS, OPCODE_BITS, Buffer, Opcode, field_layout

from .pipeline import delay, product, product_latency

__all__ = ["instr_layout", "Decoder"]

COUNT_BITS = 26


def instr_layout(op: Opcode) -> data.FlexibleLayout:
    """The 128-bit word of `op` as a layout: every field at the lsb emu.isa.field_layout gives it."""
    fields = {"opcode": data.Field(unsigned(OPCODE_BITS), 0)}
    for f, lsb in field_layout(op):
        fields[f.name] = data.Field(signed(f.width) if f.signed else unsigned(f.width), lsb)
    return data.FlexibleLayout(INSTR_BITS, fields)


def views(word) -> dict[Opcode, data.View]:
    """Per-opcode field views of a 128-bit `word`."""
    return {op: data.View(instr_layout(op), word) for op in Opcode}


class Decoder(wiring.Component):
    """In: `word`, `valid`, `past_end`, `flush`. Out, LATENCY cycles later: `out_word`, `out_valid`, `fault`
    (a FaultCode, 0 if legal), `row_bytes` (LOAD/STORE: bytes per row, 10 bits), `count` (LOAD/STORE:
    entries moved, rows * blocks; MATMUL: k_valid * n_valid; 26 bits, unsigned)."""

    PRODUCT_LATENCY = product_latency(10)
    LATENCY = 1 + PRODUCT_LATENCY + 1

    def __init__(self, cfg: AccelConfig):
        self._cfg = cfg
        super().__init__({
            "word": In(INSTR_BITS), "valid": In(1), "past_end": In(1), "flush": In(1),
            "out_word": Out(INSTR_BITS), "out_valid": Out(1), "fault": Out(4), "row_bytes": Out(10),
            "count": Out(COUNT_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        # ---- stage 0: the word from the instruction memory, registered before it fans out ----
        word = Signal(INSTR_BITS)
        m.d.sync += word.eq(self.word)
        v = views(word)
        ld, mm, po = v[Opcode.LOAD], v[Opcode.MATMUL], v[Opcode.POST]
        opcode = word[:OPCODE_BITS]
        dma_op = (opcode == Opcode.LOAD) | (opcode == Opcode.STORE)

        # ---- stage 1: checks of single fields; operand ends (sums) for the range checks of stage 2 ----
        legal, illegal_field = Signal(), Signal()
        room = Signal(signed(18))                       # LOAD/STORE: depth - buf_addr
        row_bytes = Signal(10)
        end_a, end_b = Signal(17), Signal(17)           # MATMUL: act, acc ends; POST: acc, out ends
        limit_a, limit_b = Signal(17), Signal(17)       # ... and the depths they must not pass
        past_fixed = Signal()                           # MATMUL: the WGT tile; POST: the PARAM entry
        depth = Signal(17)
        with m.Switch(ld.buf):
            for buf, d in ((Buffer.ACT, cfg.act_depth), (Buffer.WGT, cfg.wgt_depth),
                           (Buffer.PARAM, cfg.param_depth), (Buffer.OUT, cfg.out_depth)):
                with m.Case(buf):
                    m.d.comb += depth.eq(d)
        m.d.sync += [
            room.eq(depth - ld.buf_addr),
            row_bytes.eq(Mux(ld.buf == Buffer.PARAM, ld.row_len * PARAM_BYTES, ld.row_len)),
            legal.eq(0), illegal_field.eq(0), end_a.eq(0), end_b.eq(0), past_fixed.eq(0),
        ]
        with m.Switch(opcode):
            for op in (Opcode.LOAD, Opcode.STORE):
                with m.Case(op):
                    allowed = (ld.buf != Buffer.OUT) if op == Opcode.LOAD else (ld.buf == Buffer.OUT)
                    width = Mux(ld.buf == Buffer.ACT, cfg.rows, cfg.cols)
                    m.d.sync += [
                        legal.eq(1),
                        illegal_field.eq(~allowed | (ld.rows == 0) | (ld.blocks == 0) | (ld.row_len == 0)
                                         | (ld.row_len > width)),
                    ]
            with m.Case(Opcode.MATMUL):
                m.d.sync += [
                    legal.eq(1),
                    illegal_field.eq((mm.rows == 0) | (mm.k_valid == 0) | (mm.k_valid > cfg.rows)
                                     | (mm.n_valid == 0) | (mm.n_valid > cfg.cols)),
                    end_a.eq(mm.act_addr + mm.rows), limit_a.eq(cfg.act_depth),
                    end_b.eq(mm.acc_addr + mm.rows), limit_b.eq(cfg.acc_depth),
                    past_fixed.eq(mm.wgt_addr > cfg.wgt_depth - cfg.rows),
                ]
            with m.Case(Opcode.POST):
                m.d.sync += [
                    legal.eq(1),
                    illegal_field.eq(po.rows == 0),
                    end_a.eq(po.acc_addr + po.rows), limit_a.eq(cfg.acc_depth),
                    end_b.eq(po.out_addr + po.rows), limit_b.eq(cfg.out_depth),
                    past_fixed.eq(po.param_addr >= cfg.param_depth),
                ]
            with m.Case(Opcode.SYNC, Opcode.END):
                m.d.sync += legal.eq(1)

        # ---- stage 2: MATMUL/POST range check ----
        out_of_range = Signal()
        m.d.sync += out_of_range.eq((end_a > limit_a) | (end_b > limit_b) | past_fixed)

        count = product(m, Mux(dma_op, ld.rows, mm.k_valid), Mux(dma_op, ld.blocks, mm.n_valid), name="count")

        # ---- carried alongside the product; the last stage makes the DMA range check and the fault ----
        P = self.PRODUCT_LATENCY
        valids, prev = [], self.valid
        for i in range(1 + P):
            valids.append(Signal(name=f"valid_d{i}"))
            m.d.sync += valids[-1].eq(prev)
            prev = valids[-1]
        with m.If(self.flush):
            m.d.sync += [s.eq(0) for s in valids]
        word = delay(m, word, P, "word")
        past_end = delay(m, self.past_end, 1 + P, "past_end")
        dma_now = delay(m, dma_op, P, "dma_op")
        legal, illegal_field, room, row_bytes = (
            delay(m, s, P - 1, n) for s, n in ((legal, "legal"), (illegal_field, "illegal_field"), (room, "room"),
                                               (row_bytes, "row_bytes")))
        out_of_range = delay(m, out_of_range, P - 2, "out_of_range")
        oor = Mux(dma_now, count > room, out_of_range)  # unsigned vs signed: compared exactly
        fault = Mux(past_end, FaultCode.PROGRAM_RANGE,
                    Mux(~legal, FaultCode.ILLEGAL_OPCODE,
                        Mux(illegal_field, FaultCode.ILLEGAL_FIELD,
                            Mux(oor, FaultCode.BUFFER_RANGE, 0))))
        m.d.sync += [self.out_word.eq(word), self.out_valid.eq(valids[-1] & ~self.flush), self.fault.eq(fault),
                     self.row_bytes.eq(row_bytes), self.count.eq(count)]
        return m
