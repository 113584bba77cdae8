"""Instruction decode, pipelined: field views built from emu.contract.isa.field_layout, the decode-time fault checks,
and the values the units need that take arithmetic (a PARAM row's bytes, a LOAD/STORE's entry count, a
MATMUL's MACs per row).

The checks are emu.emulator.golden.check_fields in hardware, same order: ILLEGAL_OPCODE, then ILLEGAL_FIELD, then
BUFFER_RANGE; a word fetched from past the program's end (`past_end`) is PROGRAM_RANGE before all of them.
Sums of 16-bit fields are formed at 17 bits, so they never wrap. A LOAD/STORE's entry count rows * blocks
(16 x 10 bits, unsigned, 26 bits) is compared with the room depth - buf_addr by one signed 28-bit sum,
rows * blocks - room - 1, which is non-negative exactly when the count is over; nothing wraps either.

Pipeline: a word presented with `valid` in cycle c comes out with its results in cycle c + LATENCY. The
word is registered first (it comes from a block RAM and fans out widely), and with it the operands of the
product `count` (rows and blocks, or k_valid and n_valid for a MATMUL); the next stage makes one flag per
opcode and per single-field check, forms every opcode's operand ends side by side and starts the product in
hdl.pipeline.product's adder tree, with -(room + 1) as one more term for a LOAD/STORE (zero otherwise); the
stage after combines the flags of the word's opcode and compares each operand end with its buffer's
depth, and the next combines those comparisons with the opcode; the stage before the last forms the fault
code but for the DMA's range check, which the last stage adds from the sign bit of the product tree's sum,
a flip-flop, one gate before the fault register. No stage holds more than one carry chain or more than
about two LUT levels. `flush` drops what is in flight.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from emu.contract.config import AccelConfig, PARAM_BYTES
from emu.contract.faults import FaultCode
from emu.contract.isa import INSTR_BITS, OPCODE_BITS, Buffer, Opcode, field_layout
from emu.contract.loops import LOOP_MIN_BODY

from hdl.pipeline import delay, product, product_latency

__all__ = ["instr_layout", "Decoder"]

COUNT_BITS = 26


def instr_layout(op: Opcode) -> data.FlexibleLayout:
    """The 128-bit word of `op` as a layout: every field at the lsb emu.contract.isa.field_layout gives it."""
    fields = {"opcode": data.Field(unsigned(OPCODE_BITS), 0)}
    for f, lsb in field_layout(op):
        fields[f.name] = data.Field(signed(f.width) if f.signed else unsigned(f.width), lsb)
    return data.FlexibleLayout(INSTR_BITS, fields)


def views(word) -> dict[Opcode, data.View]:
    """Per-opcode field views of a 128-bit `word`."""
    return {op: data.View(instr_layout(op), word) for op in Opcode}


class Decoder(wiring.Component):
    """In: `word`, `valid`, `past_end`, `loop_bad` (a LOOP the fetch found nested too deep or past its
    enclosing body, emu.contract.loops.loop_fault), `flush`. Out, LATENCY cycles later: `out_word`, `out_valid`, `fault`
    (a FaultCode, 0 if legal), `row_bytes` (LOAD/STORE: bytes per row, 10 bits), `count` (MATMUL: k_valid *
    n_valid, 26 bits, unsigned; for other opcodes not meaningful: a LOAD/STORE's entry count is only
    compared with the room in its buffer, inside the decoder)."""

    PRODUCT_LATENCY = product_latency(10, plus=True)
    LATENCY = 1 + PRODUCT_LATENCY + 1

    def __init__(self, cfg: AccelConfig):
        self._cfg = cfg
        super().__init__({
            "word": In(INSTR_BITS), "valid": In(1), "past_end": In(1), "loop_bad": In(1), "flush": In(1),
            "out_word": Out(INSTR_BITS), "out_valid": Out(1), "fault": Out(4), "row_bytes": Out(10),
            "count": Out(COUNT_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        # ---- stage 0: the word from the instruction memory, registered before it fans out, and beside it the
        # product's operands (a LOAD/STORE's rows and blocks, else a MATMUL's k_valid and n_valid), so the
        # opcode's choice between them does not fan out into every partial product ----
        word = Signal(INSTR_BITS)
        loop_bad = Signal()
        m.d.sync += [word.eq(self.word), loop_bad.eq(self.loop_bad)]
        v = views(word)
        ld, mm, po, lp = v[Opcode.LOAD], v[Opcode.MATMUL], v[Opcode.POST], v[Opcode.LOOP]
        opcode = word[:OPCODE_BITS]
        dma_op = (opcode == Opcode.LOAD) | (opcode == Opcode.STORE)
        v_in = views(self.word)
        dma_op_in = (self.word[:OPCODE_BITS] == Opcode.LOAD) | (self.word[:OPCODE_BITS] == Opcode.STORE)
        count_a, count_b, count_dma = Signal(16), Signal(10), Signal()
        m.d.sync += [count_a.eq(Mux(dma_op_in, v_in[Opcode.LOAD].rows, v_in[Opcode.MATMUL].k_valid)),
                     count_b.eq(Mux(dma_op_in, v_in[Opcode.LOAD].blocks, v_in[Opcode.MATMUL].n_valid)),
                     count_dma.eq(dma_op_in)]

        # ---- stage 1: one flag per single-field check and per opcode, operand ends (sums) for stage 2; every
        # opcode's values are formed side by side from the word, the opcode only selects among them later ----
        is_op = {op: Signal(name=f"is_{op.name.lower()}") for op in Opcode}
        f = {name: Signal(name=name) for name in (
            "ld_rows0", "ld_blocks0", "ld_row_len0", "ld_over_rows", "ld_over_cols", "buf_act", "buf_out",
            "buf_unknown",
            "mm_zero", "mm_over", "mm_wgt_past", "po_rows0", "po_param_past", "lp_bad")}
        row_bytes = Signal(10)
        mm_end_act, mm_end_acc, po_end_acc, po_end_out = (Signal(17, name=n) for n in (
            "mm_end_act", "mm_end_acc", "po_end_acc", "po_end_out"))
        depth_plus_1 = Signal(18)
        with m.Switch(ld.buf):
            for buf, d in ((Buffer.ACT, cfg.act_depth), (Buffer.WGT, cfg.wgt_depth),
                           (Buffer.PARAM, cfg.param_depth), (Buffer.OUT, cfg.out_depth),
                           (Buffer.TABLE, cfg.table_depth)):
                with m.Case(buf):
                    m.d.comb += depth_plus_1.eq(d + 1)
        # LOAD/STORE: -(room + 1) = buf_addr - depth - 1 (signed, 18 bits: room is at most 2**16), added into
        # the product tree so that the sum rows * blocks - room - 1 is negative exactly when the count fits;
        # zero for the other opcodes, whose count is then the plain product
        not_room = (Mux(count_dma, ld.buf_addr, 0) - Mux(count_dma, depth_plus_1, 0)).as_signed()
        m.d.sync += [is_op[op].eq(opcode == op) for op in Opcode]
        m.d.sync += [
            # row_len * PARAM_BYTES as shifted adds: a `*` by a constant becomes a DSP block, slower than logic
            row_bytes.eq(Mux(ld.buf == Buffer.PARAM,
                             sum(ld.row_len << i for i in range(PARAM_BYTES.bit_length()) if PARAM_BYTES >> i & 1),
                             ld.row_len)),
            f["ld_rows0"].eq(ld.rows == 0), f["ld_blocks0"].eq(ld.blocks == 0), f["ld_row_len0"].eq(ld.row_len == 0),
            f["ld_over_rows"].eq(ld.row_len > cfg.rows), f["ld_over_cols"].eq(ld.row_len > cfg.cols),
            f["buf_act"].eq(ld.buf == Buffer.ACT), f["buf_out"].eq(ld.buf == Buffer.OUT),
            f["buf_unknown"].eq(ld.buf > max(Buffer)),
            f["mm_zero"].eq((mm.rows == 0) | (mm.k_valid == 0) | (mm.n_valid == 0)),
            f["mm_over"].eq((mm.k_valid > cfg.rows) | (mm.n_valid > cfg.cols)),
            f["mm_wgt_past"].eq(mm.wgt_addr > cfg.wgt_depth - cfg.rows),
            f["po_rows0"].eq(po.rows == 0), f["po_param_past"].eq(po.param_addr >= cfg.param_depth),
            f["lp_bad"].eq((lp.count == 0) | (lp.body < LOOP_MIN_BODY) | loop_bad),
            mm_end_act.eq(mm.act_addr + mm.rows), mm_end_acc.eq(mm.acc_addr + mm.rows),
            po_end_acc.eq(po.acc_addr + po.rows), po_end_out.eq(po.out_addr + po.rows),
        ]

        # ---- stage 2: the opcode's field checks combined; the MATMUL/POST operand ends against the depths, one
        # flag each; stage 3 combines those with the opcode ----
        legal, illegal_field = Signal(), Signal()
        past = {name: Signal(name=name) for name in (
            "mm_act_past", "mm_acc_past", "mm_wgt_past_q", "po_acc_past", "po_out_past", "po_param_past_q",
            "is_mm_q", "is_po_q")}
        dma_flags = f["ld_rows0"] | f["ld_blocks0"] | f["ld_row_len0"] | Mux(f["buf_act"], f["ld_over_rows"],
                                                                                 f["ld_over_cols"])
        m.d.sync += [
            legal.eq(Cat(*is_op.values()).any()),
            illegal_field.eq((is_op[Opcode.LOAD] & (f["buf_out"] | f["buf_unknown"] | dma_flags))
                             | (is_op[Opcode.STORE] & (~f["buf_out"] | dma_flags))
                             | (is_op[Opcode.MATMUL] & (f["mm_zero"] | f["mm_over"]))
                             | (is_op[Opcode.POST] & f["po_rows0"])
                             | (is_op[Opcode.LOOP] & f["lp_bad"])),
            past["mm_act_past"].eq(mm_end_act > cfg.act_depth), past["mm_acc_past"].eq(mm_end_acc > cfg.acc_depth),
            past["mm_wgt_past_q"].eq(f["mm_wgt_past"]),
            past["po_acc_past"].eq(po_end_acc > cfg.acc_depth), past["po_out_past"].eq(po_end_out > cfg.out_depth),
            past["po_param_past_q"].eq(f["po_param_past"]),
            past["is_mm_q"].eq(is_op[Opcode.MATMUL]), past["is_po_q"].eq(is_op[Opcode.POST]),
        ]
        # ---- stage 3: a MATMUL / POST operand past a buffer's end ----
        range_past = Signal()
        m.d.sync += range_past.eq(
            (past["is_mm_q"] & (past["mm_act_past"] | past["mm_acc_past"] | past["mm_wgt_past_q"]))
            | (past["is_po_q"] & (past["po_acc_past"] | past["po_out_past"] | past["po_param_past_q"])))

        count = product(m, count_a, count_b, plus=not_room, name="count")

        # ---- carried alongside the product; the stage before the last forms every fault but the DMA's range
        # check, which the last stage adds from the count ----
        P = self.PRODUCT_LATENCY
        valids, prev = [], self.valid
        for i in range(1 + P):
            valids.append(Signal(name=f"valid_d{i}"))
            m.d.sync += valids[-1].eq(prev)
            prev = valids[-1]
        with m.If(self.flush):
            m.d.sync += [s.eq(0) for s in valids]
        word = delay(m, word, P, "word")
        dma_op = delay(m, dma_op, P - 1, "dma_op")      # aligned with fault_pre's inputs
        row_bytes = delay(m, row_bytes, P - 1, "row_bytes")
        past_end = delay(m, self.past_end, P, "past_end")
        legal, illegal_field = (delay(m, s, P - 3, n) for s, n in ((legal, "legal"), (illegal_field, "illegal_field")))
        assert P >= 4, "range_past is formed in stage 3, so the product must take at least four cycles"
        range_past = delay(m, range_past, P - 4, "range_past")
        fault_pre = Signal(4)                           # all but the DMA's BUFFER_RANGE, in check order
        m.d.sync += fault_pre.eq(Mux(past_end, FaultCode.PROGRAM_RANGE,
                                     Mux(~legal, FaultCode.ILLEGAL_OPCODE,
                                         Mux(illegal_field, FaultCode.ILLEGAL_FIELD,
                                             Mux(range_past, FaultCode.BUFFER_RANGE, 0)))))
        # a LOAD/STORE with no other fault, registered with fault_pre, so the range check's compare meets one
        # gate before the fault register
        dma_checked = Signal()
        m.d.sync += dma_checked.eq(dma_op & ~past_end & legal & ~illegal_field & ~range_past)
        # rows * blocks > room: the tree's sum rows * blocks - room - 1 is not negative
        over = ~count[-1]
        fault = fault_pre | Mux(dma_checked & over, FaultCode.BUFFER_RANGE, 0)
        m.d.sync += [self.out_word.eq(word), self.out_valid.eq(valids[-1] & ~self.flush), self.fault.eq(fault),
                     self.row_bytes.eq(row_bytes), self.count.eq(count[:COUNT_BITS])]
        return m
