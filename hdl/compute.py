"""The compute units: MATMUL (systolic array -> ACC) and POST (ACC -> requantize -> OUT), independent, so a
POST of one group of ACC rows overlaps the MATMULs filling the next.

It owns the accumulator buffer. An instruction accepted on `start` at cycle t keeps `busy` (MATMUL) or
`post_busy` (POST, `post` = 1) high until cycle t + emu.timing.instr_cycles(instr) (MATMUL
2R + C + T - 2 + MATMUL_LATENCY, POST T + POST_LATENCY), and the datapath below finishes every buffer write
by then. With s = cycle - (t + 1):

MATMUL  s = 0 .. R-1      WGT entry wgt_addr + s read; row s of the array loads it at s + 1
        s = R .. R+T-1    ACT entry act_addr + i (i = s - R) read; enters the array at s + 1
        s = 2R+C+2+i      result row i leaves the array (latency R + C + 1) and is written to ACC
                          (accumulate: ACC entry read the cycle before and added, acc_bits wrapping;
                          accumulate with reduce_max: the signed maximum of the two at acc_bits)
        last write at s = 2R + C + T + 1  ->  needs MATMUL_LATENCY >= 5 (the register after issue, the
        buffer read, the array's input register, the product register and the ACC write)
POST    s = 0 .. T-1      ACC entry acc_addr + s read (PARAM entry param_addr read throughout)
        s = i + 1 + L     requantized row i written to OUT (L = PostProc.LATENCY = 12)
                          ->  last at T + L, POST_LATENCY >= L + 2
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from emu import timing
from emu.config import AccelConfig

from .array import SystolicArray
from .buffers import entry_layouts
from .postproc import PostProc

__all__ = ["ComputeUnit", "MATMUL_LATENCY_MIN", "POST_LATENCY_MIN"]

MATMUL_LATENCY_MIN = 5
POST_LATENCY_MIN = 1 + PostProc.LATENCY + 1


class ComputeUnit(wiring.Component):
    def __init__(self, cfg: AccelConfig):
        if timing.MATMUL_LATENCY < MATMUL_LATENCY_MIN or timing.POST_LATENCY < POST_LATENCY_MIN:
            raise ValueError(f"emu.timing latencies MATMUL_LATENCY={timing.MATMUL_LATENCY}, "
                             f"POST_LATENCY={timing.POST_LATENCY} are below what the datapath needs "
                             f"({MATMUL_LATENCY_MIN}, {POST_LATENCY_MIN})")
        self._cfg = cfg
        lay = entry_layouts(cfg)
        super().__init__({
            "start": In(1), "post": In(1), "rows": In(16),
            "act_addr": In(16), "wgt_addr": In(16), "acc_addr": In(16), "accumulate": In(1), "reduce_max": In(1),
            "out_addr": In(16), "param_addr": In(16),
            "shift": In(6), "zero_point": In(signed(8)), "clamp_lo": In(signed(8)), "clamp_hi": In(signed(8)),
            "busy": Out(1), "post_busy": Out(1),
            "act_rd_addr": Out(16), "act_rd_data": In(lay["act"]),
            "wgt_rd_addr": Out(16), "wgt_rd_data": In(lay["wgt"]),
            "param_rd_addr": Out(16), "param_rd_data": In(lay["param"]),
            "out_wr_en": Out(1), "out_wr_addr": Out(16), "out_wr_data": Out(lay["out"]),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C = cfg.rows, cfg.cols
        m.submodules.array = arr = SystolicArray(rows=R, cols=C, act_bits=cfg.act_bits,
                                                 weight_bits=cfg.weight_bits, acc_bits=cfg.acc_bits)
        m.submodules.post_unit = pp = PostProc(lanes=C, acc_bits=cfg.acc_bits, act_bits=cfg.act_bits)
        # ACC: one write port and a read port for MATMUL's read-add-write, one read port for POST, so a POST
        # of some ACC rows runs while a MATMUL fills others (read-first: the program never lets the two
        # units touch one row at once; SYNC orders them)
        m.submodules.acc = acc_mem = Memory(shape=entry_layouts(cfg)["acc"], depth=cfg.acc_depth, init=[])
        acc_wr, acc_rd, post_rd = acc_mem.write_port(), acc_mem.read_port(), acc_mem.read_port()

        # MATMUL state
        rows, accumulate, reduce_max = Signal(16), Signal(), Signal()
        act_addr, wgt_addr, acc_addr = (Signal(16, name=n) for n in ("r_act", "r_wgt", "r_acc"))
        remaining = Signal(18)     # busy cycles left
        step = Signal(18)          # s in the docstring
        acc_row = Signal(16)       # result rows written to ACC so far
        m.d.comb += self.busy.eq(remaining != 0)
        with m.If(remaining != 0):
            m.d.sync += [remaining.eq(remaining - 1), step.eq(step + 1)]
        with m.If(self.start & ~self.post):
            matmul_cycles = 2 * R + C - 2 + timing.MATMUL_LATENCY
            m.d.sync += [
                rows.eq(self.rows), accumulate.eq(self.accumulate), reduce_max.eq(self.reduce_max),
                act_addr.eq(self.act_addr), wgt_addr.eq(self.wgt_addr), acc_addr.eq(self.acc_addr),
                remaining.eq(self.rows - 1 + matmul_cycles), step.eq(0), acc_row.eq(0),
            ]

        # POST state
        p_rows, p_acc_addr, out_addr, param_addr = (Signal(16, name=n) for n in ("p_rows", "p_acc", "r_out", "r_param"))
        shift, zp, lo, hi = Signal(6), Signal(signed(8)), Signal(signed(8)), Signal(signed(8))
        p_remaining, p_step, out_row = Signal(18), Signal(18), Signal(16)
        m.d.comb += self.post_busy.eq(p_remaining != 0)
        with m.If(p_remaining != 0):
            m.d.sync += [p_remaining.eq(p_remaining - 1), p_step.eq(p_step + 1)]
        with m.If(self.start & self.post):
            m.d.sync += [
                p_rows.eq(self.rows), p_acc_addr.eq(self.acc_addr), out_addr.eq(self.out_addr),
                param_addr.eq(self.param_addr), shift.eq(self.shift), zp.eq(self.zero_point),
                lo.eq(self.clamp_lo), hi.eq(self.clamp_hi),
                p_remaining.eq(self.rows - 1 + timing.POST_LATENCY), p_step.eq(0), out_row.eq(0),
            ]

        # ---- MATMUL ----
        w_phase = self.busy & (step < R)
        w_load = Signal()
        w_row = Signal(range(max(2, R)))
        m.d.sync += [w_load.eq(w_phase), w_row.eq(step)]
        a_phase = self.busy & (step >= R) & (step < R + rows)
        a_valid = Signal()
        m.d.sync += a_valid.eq(a_phase)
        m.d.comb += [
            self.wgt_rd_addr.eq(wgt_addr + step),
            self.act_rd_addr.eq(act_addr + step - R),
            arr.w_load.eq(w_load), arr.w_row.eq(w_row), arr.w_data.eq(self.wgt_rd_data),
            arr.a_valid.eq(a_valid), arr.a_in.eq(self.act_rd_data),
        ]
        with m.If(arr.y_valid):
            m.d.sync += acc_row.eq(acc_row + 1)
        m.d.comb += [
            acc_wr.en.eq(arr.y_valid),
            acc_wr.addr.eq(acc_addr + acc_row),
            acc_rd.addr.eq(acc_addr + acc_row + arr.y_valid),
        ]
        for n in range(C):
            # both operands are signed acc_bits values, so the comparison is the signed one at acc_bits
            old, new = acc_rd.data[n], arr.y_out[n]
            combined = Mux(reduce_max, Mux(old > new, old, new), old + new)
            m.d.comb += acc_wr.data[n].eq(Mux(accumulate, combined, new))

        # ---- POST ----
        p_valid = Signal()
        m.d.sync += p_valid.eq(self.post_busy & (p_step < p_rows))
        m.d.comb += [
            post_rd.addr.eq(p_acc_addr + p_step),
            self.param_rd_addr.eq(param_addr),
            pp.in_valid.eq(p_valid), pp.acc.eq(post_rd.data), pp.param.eq(self.param_rd_data),
            pp.shift.eq(shift), pp.zero_point.eq(zp), pp.clamp_lo.eq(lo), pp.clamp_hi.eq(hi),
        ]
        with m.If(pp.out_valid):
            m.d.sync += out_row.eq(out_row + 1)
        m.d.comb += [
            self.out_wr_en.eq(pp.out_valid), self.out_wr_addr.eq(out_addr + out_row),
            self.out_wr_data.eq(pp.out),
        ]
        return m
