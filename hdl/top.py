"""The accelerator top level and its Verilog.

    s_axil_* (AXI4-Lite slave) ── CSR ── start/args ──> Sequencer ──> DMA ── m_axi_* (AXI4 master)
                                                          │   ^         │ writes ACT/WGT/PARAM/TABLE/instr memory
                                                          │   └ decode  │ reads OUT
                                                          v
                                               ComputeUnit: WGT,ACT -> SystolicArray -> ACC
                                                            ACC,PARAM -> PostProc -> TABLE -> OUT

Ports: clk, rst (synchronous, active high), m_axi_* and s_axil_* named as cocotbext-axi expects, `done`
(level: STATUS.done) and `irq` (same). `generate_verilog(cfg)` names the module `systola_accel`.
"""
from __future__ import annotations

from amaranth.back import verilog
from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from emu.contract import regs
from emu.contract.config import AccelConfig, BINARY_WEIGHT_BIT, ELEMENT_BYTES, EXT_ADDR_BITS, PARAM_BYTES
from emu.contract.isa import INSTR_BITS, Buffer as Buf

from hdl.axi import axi4_signature, axil_signature, connect_flat, flat_members
from hdl.bram import BlockRAM
from hdl.buffers import entry_bytes_max, entry_layouts, from_bytes, to_bytes
from hdl.compute import ComputeUnit
from hdl.csr import CSR
from hdl.dma import DMA, TARGET_INSTR
from hdl.sequencer import IMEM_ADDR_COPIES, IMEM_BITS, Sequencer, predecode

__all__ = ["Accelerator", "generate_verilog", "TOP_NAME", "AXI_ID_BITS"]

TOP_NAME = "systola_accel"
AXI_ID_BITS = 1


class Accelerator(wiring.Component):
    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self._m_sig = axi4_signature(addr_bits=EXT_ADDR_BITS, data_bits=cfg.bus_bits, id_bits=AXI_ID_BITS)
        self._s_sig = axil_signature(addr_bits=regs.CSR_ADDR_BITS).flip()
        super().__init__({**flat_members("m_axi_", self._m_sig), **flat_members("s_axil_", self._s_sig),
                          "done": Out(1), "irq": Out(1)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        lay = entry_layouts(cfg)
        eb = entry_bytes_max(cfg)
        m.submodules.csr = csr = CSR(cfg)
        m.submodules.seq = seq = Sequencer(cfg)
        m.submodules.dma = dma = DMA(bus_bytes=cfg.bus_bytes, entry_bytes=eb, id_bits=AXI_ID_BITS,
                                     rd_latency=BlockRAM.LATENCY)
        m.submodules.cu = cu = ComputeUnit(cfg)
        # the compute unit reads ACT, WGT and PARAM in streams, through counters the buffers hold (hdl/bram.py);
        # the DMA's writes are registered in each buffer it loads, with an enable and address copy beside each
        # block (the target decode in front of the enable, routed across the chip to 22 PARAM blocks, was the
        # 8x8 build's critical path): a LOAD's last entry is written a cycle after its DMA goes idle, before
        # any instruction issued after it can read it (BUSY_LATENCY + ISSUE_LATENCY)
        loaded = dict(registered_write=True)
        m.submodules.act = act = BlockRAM(shape=lay["act"], depth=cfg.act_depth, counted_reads=True, **loaded)
        m.submodules.wgt = wgt = BlockRAM(shape=lay["wgt"], depth=cfg.wgt_depth, counted_reads=True, **loaded)
        m.submodules.param = param = BlockRAM(shape=lay["param"], depth=cfg.param_depth, counted_reads=True,
                                              **loaded)
        m.submodules.out = out = BlockRAM(shape=lay["out"], depth=cfg.out_depth)
        m.submodules.imem = imem = BlockRAM(shape=IMEM_BITS, depth=cfg.instr_depth, addr_copies=IMEM_ADDR_COPIES,
                                            **loaded)

        connect_flat(m, self, "m_axi_", dma.bus, self._m_sig)
        connect_flat(m, self, "s_axil_", csr.bus, self._s_sig)
        m.d.comb += [self.done.eq(csr.done), self.irq.eq(csr.done)]

        # CSR <-> sequencer
        m.d.comb += [
            seq.start.eq(csr.start), seq.prog_addr.eq(csr.prog_addr), seq.prog_len.eq(csr.prog_len),
            seq.watchdog.eq(csr.watchdog),
            csr.running.eq(seq.running), csr.finished.eq(seq.finished), csr.error_code.eq(seq.error_code),
            csr.error_pc.eq(seq.error_pc), csr.cycles.eq(seq.cycles), csr.macs.eq(seq.macs),
        ]
        # sequencer <-> units: one signature each side, so every member's width and direction is checked
        wiring.connect(m, seq.dma, dma.cmd)
        wiring.connect(m, seq.cu, cu.cmd)

        # DMA writes: the byte image of one entry goes to the buffer its target names
        wgt_bit = BINARY_WEIGHT_BIT if cfg.weight_bits == 1 else 0
        for buf, target, elem_bytes, first_bit in ((act, Buf.ACT, ELEMENT_BYTES, 0),
                                                   (wgt, Buf.WGT, ELEMENT_BYTES, wgt_bit),
                                                   (param, Buf.PARAM, PARAM_BYTES, 0)):
            m.d.comb += [
                buf.wr_en.eq(dma.wr_en & (dma.wr_target == target)),
                buf.wr_addr.eq(dma.wr_addr),
                buf.wr_data.eq(from_bytes(dma.wr_data, buf.wr_data.shape(), elem_bytes, first_bit)),
            ]
        instr_word = dma.wr_data[:INSTR_BITS]
        # the activation table's lanes sit in the compute unit, behind PostProc; a LOAD writes them all at once
        m.d.comb += [
            cu.table_wr_en.eq(dma.wr_en & (dma.wr_target == Buf.TABLE)), cu.table_wr_addr.eq(dma.wr_addr),
            cu.table_wr_data.eq(from_bytes(dma.wr_data, cu.table_wr_data.shape(), ELEMENT_BYTES)),
            imem.wr_en.eq(dma.wr_en & (dma.wr_target == TARGET_INSTR)),
            imem.wr_addr.eq(dma.wr_addr), imem.wr_data.eq(Cat(instr_word, predecode(instr_word))),
            imem.rd_addr[0].eq(seq.imem_rd_addr[0]), seq.imem_rd_data.eq(imem.rd_data[0]),
            *(imem.rd_addr_copy[0][j].eq(seq.imem_rd_addr[j + 1]) for j in range(IMEM_ADDR_COPIES - 1)),
        ]
        # DMA reads (STORE) come from OUT, each act_bits element sign-extended to a byte
        m.d.comb += [out.rd_addr[0].eq(dma.rd_addr), dma.rd_data.eq(to_bytes(out.rd_data[0], cfg.act_bits))]

        # compute unit <-> buffers
        m.d.comb += [
            cu.act_rd_data.eq(act.rd_data[0]), cu.wgt_rd_data.eq(wgt.rd_data[0]),
            cu.param_rd_data.eq(param.rd_data[0]),
            out.wr_en.eq(cu.out_wr_en), out.wr_addr.eq(cu.out_wr_addr), out.wr_data.eq(cu.out_wr_data),
        ]
        for buf, port in ((act, cu.act_rd), (wgt, cu.wgt_rd), (param, cu.param_rd)):
            wiring.connect(m, port, buf.rd_count[0])
        return m


def generate_verilog(cfg: AccelConfig) -> str:
    """Verilog text of `Accelerator(cfg)`, module `systola_accel`."""
    top = Accelerator(cfg)
    return verilog.convert(top, name=TOP_NAME, emit_src=False)
