"""The sequencer: program preload, in-order issue to the DMA and compute units, faults and counters.

Cycle 0 is the cycle `start` is seen: the program (prog_len 16-byte instructions at prog_addr) is copied
into instruction memory by the DMA. From the cycle the DMA goes idle, the instruction at `pc` is decoded
each cycle (instruction memory read port, address pc or pc + 1 when issuing: one instruction a cycle) and
issued as soon as its unit is idle (LOAD/STORE: DMA; MATMUL: array; POST: post-processing; SYNC/END: all). `cycle` counts
cycles since start; END issued at cycle t ends the run with CYCLES = t + 1 (emu.timing.Timer).

Faults (emu.faults), checked each cycle in this order:
  BUS_ERROR       the DMA reported an error response: pc of that LOAD/STORE (0 for the preload)
  PROGRAM_RANGE   pc reached prog_len without END (prog_len 0 or > instr_depth: at start, pc 0)
  ILLEGAL_OPCODE / ILLEGAL_FIELD / BUFFER_RANGE   decode checks of the instruction at pc
  WATCHDOG        the instruction at pc would issue at cycle >= WATCHDOG (WATCHDOG != 0)
After a fault nothing more issues; the run ends once both units are idle. A bus error reported while
draining replaces the fault: it belongs to an earlier instruction.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from emu.config import AccelConfig, PARAM_BYTES
from emu.faults import FaultCode
from emu.isa import INSTR_BITS, INSTR_BYTES, Buffer, Opcode

from .decoder import Decoder

__all__ = ["Sequencer", "TARGET_INSTR"]

#: DMA write target of the program preload (LOAD targets are the Buffer values ACT, WGT, PARAM).
TARGET_INSTR = 3


class Sequencer(wiring.Component):
    def __init__(self, cfg: AccelConfig):
        self._cfg = cfg
        self._imem_abits = max(1, (cfg.instr_depth - 1).bit_length())
        super().__init__({
            "start": In(1), "prog_addr": In(32), "prog_len": In(32), "watchdog": In(32),
            "running": Out(1), "finished": Out(1), "error_code": Out(4), "error_pc": Out(32),
            "cycles": Out(64), "macs": Out(64),
            "imem_rd_addr": Out(self._imem_abits), "imem_rd_data": In(INSTR_BITS),
            "dma_start": Out(1), "dma_store": Out(1), "dma_target": Out(2), "dma_rows": Out(17),
            "dma_blocks": Out(10), "dma_row_bytes": Out(10), "dma_buf_addr": Out(16), "dma_ext_addr": Out(32),
            "dma_ext_stride": Out(20), "dma_block_stride": Out(20), "dma_busy": In(1), "dma_error": In(1),
            "cu_start": Out(1), "cu_post": Out(1), "cu_rows": Out(16), "cu_act_addr": Out(16),
            "cu_wgt_addr": Out(16), "cu_acc_addr": Out(16), "cu_accumulate": Out(1), "cu_reduce_max": Out(1),
            "cu_out_addr": Out(16),
            "cu_param_addr": Out(16), "cu_shift": Out(6), "cu_zero_point": Out(signed(8)),
            "cu_clamp_lo": Out(signed(8)), "cu_clamp_hi": Out(signed(8)), "cu_busy": In(1), "cu_post_busy": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.decoder = dec = Decoder(cfg)
        m.d.comb += dec.word.eq(self.imem_rd_data)
        ld, mm, po = dec.views[Opcode.LOAD], dec.views[Opcode.MATMUL], dec.views[Opcode.POST]

        pc, dma_pc = Signal(17), Signal(17)
        prog_len, watchdog = Signal(17), Signal(32)
        preloading = Signal()
        cycle = Signal(64)
        issue = Signal()

        m.d.comb += self.imem_rd_addr.eq(Mux(issue, pc + 1, pc))
        m.d.sync += self.finished.eq(0)  # a one-cycle pulse; the FSM below overrides it when a run ends

        # instruction fields to the units (they only look while their start is high)
        m.d.comb += [
            self.dma_store.eq(dec.opcode == Opcode.STORE), self.dma_target.eq(ld.buf),
            self.dma_rows.eq(ld.rows), self.dma_blocks.eq(ld.blocks),
            self.dma_row_bytes.eq(Mux(ld.buf == Buffer.PARAM, ld.row_len * PARAM_BYTES, ld.row_len)),
            self.dma_buf_addr.eq(ld.buf_addr), self.dma_ext_addr.eq(ld.ext_addr),
            self.dma_ext_stride.eq(ld.ext_stride), self.dma_block_stride.eq(ld.block_stride),
            self.cu_post.eq(dec.opcode == Opcode.POST),
            self.cu_rows.eq(Mux(dec.opcode == Opcode.POST, po.rows, mm.rows)),
            self.cu_act_addr.eq(mm.act_addr), self.cu_wgt_addr.eq(mm.wgt_addr),
            self.cu_acc_addr.eq(Mux(dec.opcode == Opcode.POST, po.acc_addr, mm.acc_addr)),
            self.cu_accumulate.eq(mm.accumulate), self.cu_reduce_max.eq(mm.reduce_max),
            self.cu_out_addr.eq(po.out_addr),
            self.cu_param_addr.eq(po.param_addr), self.cu_shift.eq(po.shift),
            self.cu_zero_point.eq(po.zero_point), self.cu_clamp_lo.eq(po.clamp_lo),
            self.cu_clamp_hi.eq(po.clamp_hi),
        ]

        # MACS += rows * k_valid * n_valid of each issued MATMUL, in three registered steps (the product
        # stays off the issue path); it lands 3 cycles after issue, before any run can end (a MATMUL
        # keeps the compute unit busy longer, and END/DRAIN wait for it)
        mac_count_go, mac_rows, mac_k, mac_n = Signal(), Signal(16), Signal(8), Signal(8)
        mac_kn, mac_rows_d, mac_kn_go = Signal(16), Signal(16), Signal()
        mac_term, mac_term_go = Signal(32), Signal()
        m.d.sync += [mac_count_go.eq(0), mac_kn.eq(mac_k * mac_n), mac_rows_d.eq(mac_rows),
                     mac_kn_go.eq(mac_count_go), mac_term.eq(mac_rows_d * mac_kn), mac_term_go.eq(mac_kn_go)]
        with m.If(mac_term_go):
            m.d.sync += self.macs.eq(self.macs + mac_term)

        def fault(code, at):
            m.d.sync += [self.error_code.eq(code), self.error_pc.eq(at), self.cycles.eq(cycle)]
            m.next = "DRAIN"

        all_idle = ~self.dma_busy & ~self.cu_busy & ~self.cu_post_busy

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.error_code.eq(0), self.error_pc.eq(0), pc.eq(0), cycle.eq(1),
                                 self.macs.eq(0), self.cycles.eq(0), prog_len.eq(self.prog_len),
                                 watchdog.eq(self.watchdog)]
                    with m.If((self.prog_len == 0) | (self.prog_len > cfg.instr_depth)):
                        m.d.sync += [self.error_code.eq(FaultCode.PROGRAM_RANGE), self.finished.eq(1)]
                    with m.Else():
                        # the preload is a LOAD of one block of prog_len 16-byte entries into instruction memory
                        m.d.comb += [
                            self.dma_start.eq(1), self.dma_target.eq(TARGET_INSTR), self.dma_store.eq(0),
                            self.dma_rows.eq(self.prog_len), self.dma_blocks.eq(1),
                            self.dma_row_bytes.eq(INSTR_BYTES), self.dma_buf_addr.eq(0),
                            self.dma_ext_addr.eq(self.prog_addr), self.dma_ext_stride.eq(INSTR_BYTES),
                            self.dma_block_stride.eq(0),
                        ]
                        m.d.sync += [preloading.eq(1), dma_pc.eq(0)]
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.running.eq(1)
                m.d.sync += cycle.eq(cycle + 1)
                op = dec.opcode
                dma_op = (op == Opcode.LOAD) | (op == Opcode.STORE)
                cu_op = (op == Opcode.MATMUL) | (op == Opcode.POST)
                free = Mux(dma_op, ~self.dma_busy,
                           Mux(op == Opcode.MATMUL, ~self.cu_busy,
                               Mux(op == Opcode.POST, ~self.cu_post_busy, all_idle)))
                with m.If(self.dma_error):
                    fault(FaultCode.BUS_ERROR, dma_pc)
                with m.Elif(~(preloading & self.dma_busy)):  # issue nothing while the preload runs
                    m.d.sync += preloading.eq(0)
                    with m.If(pc == prog_len):
                        fault(FaultCode.PROGRAM_RANGE, pc)
                    with m.Elif(dec.fault != 0):
                        fault(dec.fault, pc)
                    with m.Elif((watchdog != 0) & (cycle >= watchdog)):
                        fault(FaultCode.WATCHDOG, pc)
                    with m.Elif(free):
                        m.d.comb += issue.eq(1)
                        m.d.sync += pc.eq(pc + 1)
                        with m.If(dma_op):
                            m.d.comb += self.dma_start.eq(1)
                            m.d.sync += dma_pc.eq(pc)
                        with m.If(cu_op):
                            m.d.comb += self.cu_start.eq(1)
                        with m.If(op == Opcode.MATMUL):
                            m.d.sync += [mac_count_go.eq(1), mac_rows.eq(mm.rows),
                                         mac_k.eq(mm.k_valid), mac_n.eq(mm.n_valid)]
                        with m.If(op == Opcode.END):
                            m.d.sync += [self.cycles.eq(cycle + 1), self.finished.eq(1)]
                            m.next = "IDLE"
            with m.State("DRAIN"):
                m.d.comb += self.running.eq(1)
                with m.If(all_idle):
                    with m.If(self.dma_error):
                        m.d.sync += [self.error_code.eq(FaultCode.BUS_ERROR), self.error_pc.eq(dma_pc)]
                    m.d.sync += self.finished.eq(1)
                    m.next = "IDLE"
        return m
