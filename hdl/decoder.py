"""Instruction decode: field views built from emu.isa.field_layout, and the decode-time fault checks.

The checks are emu.golden.check_fields in hardware, same order: ILLEGAL_OPCODE, then ILLEGAL_FIELD, then
BUFFER_RANGE. All sums of 16-bit fields are formed at 17 bits, so they never wrap. A LOAD/STORE's entry
count rows * blocks (16 x 10 bits, unsigned) is a 26-bit product and buf_addr + rows * blocks a 27-bit sum,
so it cannot wrap either. The product is combinational, on the instruction memory -> issue path; should
that path limit Fmax, the check can move into a registered decode stage.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from emu.config import AccelConfig
from emu.faults import FaultCode
from emu.isa import INSTR_BITS, OPCODE_BITS, Buffer, Opcode, field_layout

__all__ = ["instr_layout", "Decoder"]


def instr_layout(op: Opcode) -> data.FlexibleLayout:
    """The 128-bit word of `op` as a layout: every field at the lsb emu.isa.field_layout gives it."""
    fields = {"opcode": data.Field(unsigned(OPCODE_BITS), 0)}
    for f, lsb in field_layout(op):
        fields[f.name] = data.Field(signed(f.width) if f.signed else unsigned(f.width), lsb)
    return data.FlexibleLayout(INSTR_BITS, fields)


class Decoder(wiring.Component):
    """Combinational: `word` in, opcode, per-opcode field views and `fault` (a FaultCode, 0 if legal) out."""

    def __init__(self, cfg: AccelConfig):
        self._cfg = cfg
        super().__init__({"word": In(INSTR_BITS), "opcode": Out(OPCODE_BITS), "fault": Out(4)})
        self.views = {op: data.View(instr_layout(op), self.word) for op in Opcode}

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.d.comb += self.opcode.eq(self.word[:OPCODE_BITS])
        illegal_field, out_of_range = Signal(), Signal()
        legal = Signal()
        with m.Switch(self.opcode):
            for op in (Opcode.LOAD, Opcode.STORE):
                with m.Case(op):
                    v = self.views[op]
                    m.d.comb += legal.eq(1)
                    allowed = (v.buf != Buffer.OUT) if op == Opcode.LOAD else (v.buf == Buffer.OUT)
                    width = Mux(v.buf == Buffer.ACT, cfg.rows, cfg.cols)
                    depth = Signal(17, name=f"{op.name.lower()}_depth")
                    with m.Switch(v.buf):
                        for buf, d in ((Buffer.ACT, cfg.act_depth), (Buffer.WGT, cfg.wgt_depth),
                                       (Buffer.PARAM, cfg.param_depth), (Buffer.OUT, cfg.out_depth)):
                            with m.Case(buf):
                                m.d.comb += depth.eq(d)
                    m.d.comb += [
                        illegal_field.eq(~allowed | (v.rows == 0) | (v.blocks == 0) | (v.row_len == 0)
                                         | (v.row_len > width)),
                        out_of_range.eq(v.buf_addr + v.rows * v.blocks > depth),
                    ]
            with m.Case(Opcode.MATMUL):
                v = self.views[Opcode.MATMUL]
                m.d.comb += [
                    legal.eq(1),
                    illegal_field.eq((v.rows == 0) | (v.k_valid == 0) | (v.k_valid > cfg.rows)
                                     | (v.n_valid == 0) | (v.n_valid > cfg.cols)),
                    out_of_range.eq((v.act_addr + v.rows > cfg.act_depth)
                                    | (v.wgt_addr + cfg.rows > cfg.wgt_depth)
                                    | (v.acc_addr + v.rows > cfg.acc_depth)),
                ]
            with m.Case(Opcode.POST):
                v = self.views[Opcode.POST]
                m.d.comb += [
                    legal.eq(1),
                    illegal_field.eq(v.rows == 0),
                    out_of_range.eq((v.acc_addr + v.rows > cfg.acc_depth)
                                    | (v.out_addr + v.rows > cfg.out_depth)
                                    | (v.param_addr >= cfg.param_depth)),
                ]
            with m.Case(Opcode.SYNC, Opcode.END):
                m.d.comb += legal.eq(1)
        with m.If(~legal):
            m.d.comb += self.fault.eq(FaultCode.ILLEGAL_OPCODE)
        with m.Elif(illegal_field):
            m.d.comb += self.fault.eq(FaultCode.ILLEGAL_FIELD)
        with m.Elif(out_of_range):
            m.d.comb += self.fault.eq(FaultCode.BUFFER_RANGE)
        return m
