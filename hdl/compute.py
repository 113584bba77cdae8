"""The compute units: MATMUL (systolic array -> ACC) and POST (ACC -> requantize -> OUT), independent, so a
POST of one group of ACC rows overlaps the MATMULs filling the next.

It owns the accumulator buffer. Its command interface is `cmd` (compute_command_signature, flipped). An
instruction accepted at cycle t, on `cmd.matmul_start` or `cmd.post_start` (each START_COPIES copies of one
strobe, all set together), keeps `cmd.busy` (MATMUL) or `cmd.post_busy` (POST) high until cycle
t + emu.contract.timing.instr_cycles(instr) (MATMUL max(T, R, MATMUL_MIN_ACCEPT): its operands are read;
POST T + POST_LATENCY), and a MATMUL keeps `cmd.drain` high until t + matmul_cycles (R + C + T - 1 +
MATMUL_LATENCY), by when the datapath below has finished its ACC writes; the unit sees the instruction
emu.contract.timing.ISSUE_LATENCY cycles after its issue, and `busy`, `drain` and `post_busy` are registers.
A MATMUL may start as soon as `busy` falls: the one before it is still in the array, and each stream's
ACC address and flags travel beside its rows (delay lines), so the two never meet.
Buffer read addresses are counters the buffers hold (hdl/bram.py `counted_reads`, one beside each block
RAM on ECP5): the unit presents `load`/`base`/`step` (`act_rd`, `wgt_rd`, `param_rd`, and the ACC's own) a
cycle before the read, as it would set an address register; the ACC's write inputs are registered in the ACC
(`registered_write`). Every buffer read takes B = hdl.bram.BlockRAM.LATENCY = 2 cycles. With t the cycle the
start is seen, s = cycle - (t + 1) and L = the array's latency R + C + 4 (times below are the unit's own; the
timing constants add ISSUE_LATENCY):

MATMUL  s = 0 .. R-1      WGT entry wgt_addr + s read; row s of the array is presented it at s + B
        s = 1 .. T        ACT entry act_addr + i (i = s - 1) read; presented to the array at s + B, so
                          vector 0 meets row k's weights in every column just after they are written
                          (hdl/array.py)
        s = 1+i+L         ACC entry acc_addr + i read (accumulate), so it arrives with the result row
        s = 3+i+L         result row i leaves the array; it and the ACC row are registered
        s = 4+i+L         ... and registered again, beside the adders
        s = 5+i+L         their sum (acc_bits wrapping) and signed comparison are registered
        s = 6+i+L         ACC value = result, or (accumulate) the sum, or (accumulate with reduce_max) the
                          signed maximum of the two, presented to ACC's write register; written at 7+i+L
        last write at s = L + T + 6, and `drain` is high through s = R + C + T - 4 + MATMUL_LATENCY
                          ->  MATMUL_LATENCY >= MULT_LATENCY + 10 = 14
        the next MATMUL starts d >= max(T, R, MATMUL_MIN_ACCEPT) + BUSY_LATENCY cycles later: its weight rows
                          enter behind vector T - 1 (d >= T), its WGT and ACT reads follow these, and its
                          read of ACC entry i at d + 1 + i + L sees the write at 7 + i + L when d >= 7
                          ->  MATMUL_MIN_ACCEPT >= 7 - BUSY_LATENCY = 6
POST    s = 0 .. T-1      ACC entry acc_addr + s read (PARAM entry param_addr read throughout)
        s = i + B + P     requantized row i leaves PostProc (P = PostProc.LATENCY) into the activation table
        s = i + B + P + A row i (looked up if `table`) written to OUT (A = ActivationTable.LATENCY)
                          ->  last at T - 1 + B + P + A, POST_LATENCY >= ISSUE_LATENCY + B + P + A + 1
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from emu.contract import timing
from emu.contract.config import AccelConfig
from emu.contract.isa import FIELDS, Field, Opcode

from hdl.array import MULT_LATENCY, SystolicArray
from hdl.bram import BlockRAM, counter_signature
from hdl.buffers import entry_layouts
from hdl.pipeline import delay
from hdl.postproc import PostProc
from hdl.table import ActivationTable

__all__ = ["ComputeUnit", "compute_command_signature", "MATMUL_LATENCY_MIN", "MATMUL_MIN_ACCEPT_MIN",
           "POST_LATENCY_MIN", "START_COPIES", "start_counts"]

#: the ACC read-add-write: a result row's ACC entry is read at s = 1+i+L and written, through ACC's write
#: register, at s = 1+i+L + _ACC_WRITTEN (B for the read, two register stages, the sum, the choice, the write)
_ACC_WRITTEN = BlockRAM.LATENCY + 4
MATMUL_LATENCY_MIN = MULT_LATENCY + _ACC_WRITTEN + 4
MATMUL_MIN_ACCEPT_MIN = _ACC_WRITTEN + 1 - timing.BUSY_LATENCY
POST_LATENCY_MIN = timing.ISSUE_LATENCY + BlockRAM.LATENCY + PostProc.LATENCY + ActivationTable.LATENCY + 1
#: Copies of each start strobe (`matmul_start`, `post_start`), one per group of registers it loads, each
#: from a flip-flop of its own in the sequencer (Family.copies, hdl/fpga/family.py): one start flip-flop
#: loading ~200 registers and 40 block-RAM address counters across the unit is too wide a fanout for one net.
START_COPIES = 5


def start_counts(cfg: AccelConfig, rows, *, post: bool) -> dict:
    """What the unit's counters load when a MATMUL (or, with `post`, a POST) of `rows` rows starts: `busy_left`,
    the busy cycles left - 2 (a MATMUL's T, >= -3: the unit counts its floor max(R, MATMUL_MIN_ACCEPT)
    beside it), `drain_left` (MATMUL) the same until its last ACC write, and `rows_left`, the ACT or ACC rows
    left to read - 2 (>= -2). `rows` is an int, or the instruction's 16-bit field, from which the sequencer
    adds them up as the instruction enters its queue: added here, on the unit's side, they would sit behind a
    cross-chip route from the argument register."""
    fixed = timing.ISSUE_LATENCY + 3
    if post:
        return {"busy_left": rows + (timing.POST_LATENCY - fixed), "rows_left": rows - 2}
    return {"busy_left": rows - fixed, "drain_left": rows + (timing.matmul_cycles(cfg, 0) - fixed),
            "rows_left": rows - 2}


def _shape(field: Field):
    return signed(field.width) if field.signed else unsigned(field.width)


def compute_command_signature() -> wiring.Signature:
    """The compute unit's command interface as the sequencer sees it (hdl/sequencer.py `cu`; the unit's `cmd`
    is its flip): Out the start strobes (START_COPIES copies each), the start_counts of the instruction and
    the MATMUL and POST fields; In `busy` (MATMUL) and `post_busy` (POST), flip-flops. Field members have the
    widths and signedness of emu.contract.isa.FIELDS; `acc_addr` is MATMUL's or POST's."""
    mm = {f.name: f for f in FIELDS[Opcode.MATMUL]}
    po = {f.name: f for f in FIELDS[Opcode.POST]}
    assert all(_shape(mm[name]) == _shape(po[name]) for name in ("rows", "acc_addr"))
    rows_bits = mm["rows"].width
    # start_counts of the instruction's rows, each counted down by the unit to a negative value whose sign bit
    # is the flag it needs: `rows_left` (rows - 2, >= -2) is the field and a sign bit; `busy_left` (rows plus
    # the unit's fixed cycles, below 2 * 2**16 for any array up to 64 x 64: checked below) one bit more for
    # that sum, a sign bit and one spare bit
    busy_left, rows_left = signed(rows_bits + 3), signed(rows_bits + 1)
    largest = AccelConfig(rows=64, cols=64)
    assert all(count < 1 << (busy_left.width - 2) for post in (False, True)
               for name, count in start_counts(largest, (1 << rows_bits) - 1, post=post).items() if name != "rows_left")
    return wiring.Signature({
        "matmul_start": Out(START_COPIES), "post_start": Out(START_COPIES),
        "busy_left": Out(busy_left), "drain_left": Out(busy_left), "rows_left": Out(rows_left),
        **{name: Out(_shape(mm[name])) for name in ("act_addr", "wgt_addr", "acc_addr", "accumulate", "reduce_max")},
        **{name: Out(_shape(po[name])) for name in ("out_addr", "param_addr", "shift", "zero_point", "clamp_lo",
                                                     "clamp_hi", "table")},
        "busy": In(1), "drain": In(1), "post_busy": In(1),
    })


class ComputeUnit(wiring.Component):
    def __init__(self, cfg: AccelConfig):
        if (timing.MATMUL_LATENCY < MATMUL_LATENCY_MIN or timing.POST_LATENCY < POST_LATENCY_MIN
                or timing.MATMUL_MIN_ACCEPT < MATMUL_MIN_ACCEPT_MIN):
            raise ValueError(f"emu.contract.timing latencies MATMUL_LATENCY={timing.MATMUL_LATENCY}, "
                             f"POST_LATENCY={timing.POST_LATENCY}, MATMUL_MIN_ACCEPT={timing.MATMUL_MIN_ACCEPT} "
                             f"are below what the datapath needs ({MATMUL_LATENCY_MIN}, {POST_LATENCY_MIN}, "
                             f"{MATMUL_MIN_ACCEPT_MIN})")
        self._cfg = cfg
        lay = entry_layouts(cfg)
        super().__init__({
            "cmd": In(compute_command_signature()),
            "act_rd": Out(counter_signature(BlockRAM.addr_bits(cfg.act_depth))), "act_rd_data": In(lay["act"]),
            "wgt_rd": Out(counter_signature(BlockRAM.addr_bits(cfg.wgt_depth))), "wgt_rd_data": In(lay["wgt"]),
            "param_rd": Out(counter_signature(BlockRAM.addr_bits(cfg.param_depth))),
            "param_rd_data": In(lay["param"]),
            "out_wr_en": Out(1), "out_wr_addr": Out(16), "out_wr_data": Out(lay["out"]),
            # the DMA's writes into the activation table (Buffer.TABLE), which sits behind PostProc
            "table_wr_en": In(1), "table_wr_addr": In(BlockRAM.addr_bits(cfg.table_depth)),
            "table_wr_data": In(lay["table"]),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, cmd = self._cfg, self.cmd
        R, C = cfg.rows, cfg.cols
        m.submodules.array = arr = SystolicArray(rows=R, cols=C, act_bits=cfg.act_bits,
                                                 weight_bits=cfg.weight_bits, acc_bits=cfg.acc_bits)
        m.submodules.post_unit = pp = PostProc(lanes=C, acc_bits=cfg.acc_bits, act_bits=cfg.act_bits)
        m.submodules.table = table = ActivationTable(lanes=C, act_bits=cfg.act_bits)
        # ACC: one write port, a read port for MATMUL's read-add-write and one for POST, so a POST of some ACC
        # rows runs while a MATMUL fills others (the program never lets the two units touch one row at once;
        # SYNC orders them). Its read addresses are counters and its write inputs registers that it holds
        # beside each of its block RAMs (hdl/bram.py).
        m.submodules.acc = acc = BlockRAM(shape=entry_layouts(cfg)["acc"], depth=cfg.acc_depth, read_ports=2,
                                          counted_reads=True, registered_write=True)
        acc_rd, post_rd = 0, 1
        B = BlockRAM.LATENCY
        # one copy of a start strobe per group of registers (START_COPIES): the busy counter; the phase
        # counters; the instruction's flags and base registers; and two groups of address counters
        mm_start, post_start = cmd.matmul_start, cmd.post_start

        # MATMUL state. Each counter runs down as a signed number whose sign bit is the flag the next cycle
        # needs, so the busy flags and the phase flags are registers loaded from a sign bit, not compares.
        # `busy` (the operands are read) is the larger of two counts: T from the instruction and the floor
        # max(R, MATMUL_MIN_ACCEPT), a constant; `drain` runs until the last ACC write.
        accumulate, reduce_max = Signal(name="accumulate"), Signal(name="reduce_max")
        mm_left = Signal(cmd.busy_left.shape())  # busy cycles left - 2 by T: busy next cycle while >= 0
        floor_left = Signal(cmd.busy_left.shape())  # ... and by the floor
        drain_left = Signal(cmd.drain_left.shape())  # drain cycles left - 2
        w_row = Signal(range(max(R, 2)))  # WGT entry (array row) read this cycle
        w_phase = Signal()                # WGT rows are read (s < R)
        a_go = Signal()                   # s = 0: the ACT phase starts next cycle
        a_phase = Signal()                # ACT entries are read (1 <= s <= T)
        act_left = Signal(cmd.rows_left.shape())  # ACT entries left to read - 2, in the ACT phase
        m.d.sync += [cmd.busy.eq(~mm_left[-1] | ~floor_left[-1] | mm_start[0]),
                     cmd.drain.eq(~drain_left[-1] | mm_start[0])]
        with m.If(cmd.busy):
            m.d.sync += [mm_left.eq(mm_left - 1), floor_left.eq(floor_left - 1)]
        with m.If(cmd.drain):
            m.d.sync += drain_left.eq(drain_left - 1)
        with m.If(w_phase):
            m.d.sync += w_row.eq(w_row + 1)
            with m.If(w_row == R - 1):
                m.d.sync += w_phase.eq(0)
        with m.If(a_phase):
            m.d.sync += act_left.eq(act_left - 1)
            with m.If(act_left[-1]):
                m.d.sync += a_phase.eq(0)
        m.d.sync += a_go.eq(mm_start[1])
        with m.If(a_go):
            m.d.sync += a_phase.eq(1)
        # the flags and ACC base are registers loaded at start; each is next needed L cycles later or more,
        # when the next MATMUL may have loaded them again, so the datapath takes them through delay lines
        # from s = 0 (they hold for the whole stream: the next start is T + 1 cycles away at least), and no
        # path runs from the sequencer to the ACC's block RAMs
        acc_base = Signal(len(acc.wr_addr), name="acc_base")
        acc_go = Signal(name="acc_go")    # s = 0
        floor = max(R, timing.MATMUL_MIN_ACCEPT) - timing.ISSUE_LATENCY - 3
        with m.If(mm_start[0]):
            m.d.sync += [mm_left.eq(cmd.busy_left), floor_left.eq(floor), drain_left.eq(cmd.drain_left)]
        with m.If(mm_start[1]):
            m.d.sync += [w_row.eq(0), w_phase.eq(1), act_left.eq(cmd.rows_left)]
        m.d.sync += acc_go.eq(mm_start[2])
        with m.If(mm_start[2]):
            m.d.sync += [accumulate.eq(cmd.accumulate), reduce_max.eq(cmd.reduce_max), acc_base.eq(cmd.acc_addr)]
        m.d.comb += [
            self.wgt_rd.load.eq(mm_start[3]), self.wgt_rd.base.eq(cmd.wgt_addr), self.wgt_rd.step.eq(w_phase),
            self.act_rd.load.eq(mm_start[4]), self.act_rd.base.eq(cmd.act_addr), self.act_rd.step.eq(a_phase),
        ]

        # POST state, counted down the same way
        shift, zp = Signal(cmd.shift.shape(), name="shift"), Signal(cmd.zero_point.shape(), name="zero_point")
        lo, hi = Signal(cmd.clamp_lo.shape(), name="clamp_lo"), Signal(cmd.clamp_hi.shape(), name="clamp_hi")
        use_table = Signal(name="use_table")
        p_left = Signal(cmd.busy_left.shape())   # busy cycles left - 2
        out_ptr = Signal(cmd.out_addr.shape())
        p_phase = Signal()                # ACC rows are read
        p_rows_left = Signal(cmd.rows_left.shape())  # rows left to read - 2
        m.d.sync += cmd.post_busy.eq(~p_left[-1] | post_start[0])
        with m.If(cmd.post_busy):
            m.d.sync += p_left.eq(p_left - 1)
        with m.If(p_phase):
            m.d.sync += p_rows_left.eq(p_rows_left - 1)
            with m.If(p_rows_left[-1]):
                m.d.sync += p_phase.eq(0)
        with m.If(post_start[0]):
            m.d.sync += p_left.eq(cmd.busy_left)
        with m.If(post_start[1]):
            m.d.sync += [p_phase.eq(1), p_rows_left.eq(cmd.rows_left), out_ptr.eq(cmd.out_addr)]
        with m.If(post_start[2]):
            m.d.sync += [shift.eq(cmd.shift), zp.eq(cmd.zero_point), lo.eq(cmd.clamp_lo), hi.eq(cmd.clamp_hi),
                         use_table.eq(cmd.table)]
        # the PARAM entry is read throughout; ACC rows from the cycle after `start` on
        m.d.comb += [
            self.param_rd.load.eq(post_start[3]), self.param_rd.base.eq(cmd.param_addr),
            acc.rd_count[post_rd].load.eq(post_start[4]), acc.rd_count[post_rd].base.eq(cmd.acc_addr),
            # (stepping every cycle: reads past the POST's rows are not used, and `post_busy` is then not a
            # clock enable of the ~150 counter flip-flops beside the ACC's blocks)
            acc.rd_count[post_rd].step.eq(1),
        ]

        # ---- MATMUL ----
        a_valid = delay(m, a_phase, B, "a_valid")
        m.d.comb += [
            arr.w_load.eq(delay(m, w_phase, B, "w_load")), arr.w_row.eq(delay(m, w_row, B, "w_row")),
            arr.w_data.eq(self.wgt_rd_data), arr.a_valid.eq(a_valid), arr.a_in.eq(self.act_rd_data),
        ]
        # ACC rows are read B cycles ahead of the result rows they are added to: from s = 1 + L on, the read
        # counter loaded at s = L (after the stream before has read its last row). The unit counts the
        # same address beside the ACC's own counters, and writes each row where it was read.
        acc_rd_go = delay(m, a_valid, arr.latency - B, "acc_rd_go")
        acc_rd_load = delay(m, acc_go, arr.latency, "acc_rd_load")
        acc_rd_base = delay(m, acc_base, arr.latency, "acc_rd_base")
        acc_rd_ptr = Signal.like(acc_base, name="acc_rd_ptr")
        with m.If(acc_rd_load):
            m.d.sync += acc_rd_ptr.eq(acc_rd_base)
        with m.Elif(acc_rd_go):
            m.d.sync += acc_rd_ptr.eq(acc_rd_ptr + 1)
        m.d.comb += [acc.rd_count[acc_rd].load.eq(acc_rd_load), acc.rd_count[acc_rd].base.eq(acc_rd_base),
                     acc.rd_count[acc_rd].step.eq(acc_rd_go)]
        # the flags as they were at s = i, in the cycle row i is written
        row_accumulate = delay(m, accumulate, arr.latency + _ACC_WRITTEN, "row_accumulate")
        row_reduce_max = delay(m, reduce_max, arr.latency + _ACC_WRITTEN, "row_reduce_max")
        # read-add-write in four stages, none holding more than one acc_bits carry chain: the ACC row and the
        # result row registered, then registered again; their sum and signed comparison registered; the
        # selection registered in the ACC's write register. (The block RAM's output route leaves no room for
        # a carry chain in the same stage, and one register stage, pulled between the array, the block RAMs
        # and the adders, leaves long routes in front of the chains: the second lets each hop be a route alone.)
        old, new, y_valid = (Signal.like(acc.rd_data[acc_rd], name="acc_old"), Signal.like(arr.y_out, name="y_new"),
                             Signal(name="y_valid"))
        m.d.sync += [old.eq(delay(m, acc.rd_data[acc_rd], 1, "acc_old_in")), new.eq(delay(m, arr.y_out, 1, "y_in")),
                     y_valid.eq(delay(m, arr.y_valid, 1, "y_valid_in"))]
        old_b, new_b, sum_b = (Signal.like(old, name="acc_old_b"), Signal.like(new, name="y_new_b"),
                               Signal.like(new, name="acc_sum"))
        greater, wr_go = Signal(C, name="acc_greater"), Signal(name="acc_wr_go")
        m.d.sync += [old_b.eq(old), new_b.eq(new), wr_go.eq(y_valid)]
        for n in range(C):
            # both operands are signed acc_bits values: the comparison is the signed one, the sum wraps
            # old > new as the sign of new - old (acc_bits + 1 bits, exact): the carry chain's last bit goes
            # straight into the register, where a `>` puts logic behind the chain
            m.d.sync += [sum_b[n].eq(old[n] + new[n]), greater[n].eq((new[n] - old[n])[-1])]
        for n in range(C):
            combined = Mux(row_reduce_max, Mux(greater[n], old_b[n], new_b[n]), sum_b[n])
            m.d.comb += acc.wr_data[n].eq(Mux(row_accumulate, combined, new_b[n]))
        # the ACC registers the write inputs
        m.d.comb += [acc.wr_en.eq(wr_go), acc.wr_addr.eq(delay(m, acc_rd_ptr, _ACC_WRITTEN - 1, "acc_wr_addr"))]

        # ---- POST ----
        m.d.comb += [
            pp.in_valid.eq(delay(m, p_phase, B, "p_valid")), pp.acc.eq(acc.rd_data[post_rd]),
            pp.param.eq(self.param_rd_data),
            pp.shift.eq(shift), pp.zero_point.eq(zp), pp.clamp_lo.eq(lo), pp.clamp_hi.eq(hi),
        ]
        # the table flag travels beside the row through PostProc, as its other controls do
        m.d.comb += [
            table.in_valid.eq(pp.out_valid), table.y.eq(pp.out),
            table.use_table.eq(delay(m, use_table, PostProc.LATENCY, "use_table")),
            table.wr_en.eq(self.table_wr_en), table.wr_addr.eq(self.table_wr_addr),
            table.wr_data.eq(self.table_wr_data),
        ]
        with m.If(table.out_valid):
            m.d.sync += out_ptr.eq(out_ptr + 1)
        m.d.comb += [
            self.out_wr_en.eq(table.out_valid), self.out_wr_addr.eq(out_ptr), self.out_wr_data.eq(table.out),
        ]
        return m
