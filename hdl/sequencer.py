"""The sequencer: program preload, in-order issue to the DMA and compute units, faults and counters.

Cycle 0 is the cycle `start` is seen: the program (prog_len 16-byte instructions at prog_addr) is copied
into instruction memory by the DMA. From the cycle the DMA goes idle, instructions are fetched in order,
one a cycle, into a pipeline that runs ahead of issue:

  fetch (instruction memory, hdl.bram.BlockRAM.LATENCY cycles) -> loop offsets (OFFSET_LATENCY: the
  fields a LOOP steps, emu/contract/loops.py) -> decode (hdl.decoder.Decoder.LATENCY cycles: fields, fault
  checks, MAC counts) -> queue (hdl.pipeline.Queue, registered head)

The fetch walks hardware loops (hdl.loop.LoopControl): at a body's end it goes back to the body's start
while iterations are left, so the body's words reach the queue as if written out; a LOOP word itself is
queued and pops without a unit (one issue cycle).

The instruction at the head of the queue issues as soon as its unit is seen idle, emu.contract.timing.BUSY_LATENCY
after it goes idle (LOAD/STORE: DMA; MATMUL: array; POST: post-processing; SYNC/END: all, and END and a
SYNC with drain=1 also the MATMULs' ACC writes, the compute unit's `drain`), so everything
issue decides on is a flip-flop: the head's unit flags and one `ready` flag per unit, each formed a cycle
ahead. Each queue entry carries its pc (counted where entries are pushed), so no pc counter follows the
pops. Fetching is credit-counted: the queue holds as many entries as the loop from a pop back to a fetched
entry at the head takes cycles, so after the first instruction reaches the head
(emu.contract.timing.FETCH_LATENCY cycles after the preload ends) the queue never runs dry and one
instruction can issue every cycle. CYCLES counts cycles since start while the run is on and stops with it:
END issued at cycle t ends the run with CYCLES = t + 1 (emu.contract.timing.Timer), and so does a fault
raised at cycle t.

Faults (emu.contract.faults), checked each cycle in this order:
  BUS_ERROR       the DMA reported an error response: pc of that LOAD/STORE (0 for the preload)
  PROGRAM_RANGE   pc reached prog_len without END (prog_len 0 or > instr_depth: at start, pc 0)
  ILLEGAL_OPCODE / ILLEGAL_FIELD / BUFFER_RANGE   decode checks of the instruction at pc
  WATCHDOG        the instruction at pc would issue at cycle >= WATCHDOG (WATCHDOG != 0)
(PROGRAM_RANGE and the decode checks come with the head entry from the decoder and are raised once it
is at the head)
After a fault nothing more issues; the run ends once all three units are idle and ACC is written. A bus error reported while
draining replaces the fault: it belongs to an earlier instruction.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from emu.contract import timing
from emu.contract.config import AccelConfig
from emu.contract.faults import FaultCode
from emu.contract.isa import INSTR_BITS, OPCODE_BITS, Opcode, field_layout
from emu.contract.loops import TARGETS

from hdl.fpga import family_of
from hdl.bram import BlockRAM
from hdl.compute import START_COPIES, compute_command_signature, start_counts
from hdl.decoder import COUNT_BITS, Decoder, views
from hdl.dma import dma_command_signature
from hdl.loop import LoopControl
from hdl.pipeline import Queue, accumulate, delay, product, product_latency

__all__ = ["Sequencer", "FETCH_LATENCY", "QUEUE_DEPTH", "IMEM_ADDR_COPIES", "IMEM_BITS",
           "predecode"]


#: The head of the issue queue: which unit the instruction needs (one bit each, all zero for a faulty word),
#: whether it also waits for the MATMULs' ACC writes (END, a SYNC with drain=1), whether it is END, whether
#: it is a LOOP (which needs no unit), whether it is faulty, and its fault code.
head_layout = data.StructLayout({"dma": 1, "matmul": 1, "post": 1, "all_units": 1, "drain": 1, "end": 1, "loop": 1,
                                 "faulty": 1, "fault": 4})

#: Cycles from the instruction memory's output to the decoder's input: a register, then the loop offsets
#: added to the fields they step (hdl.loop.LoopControl.offsets, emu.contract.loops.TARGETS).
OFFSET_LATENCY = 1
#: Cycles from the preload's end (the first cycle the DMA is idle) to the first instruction at the head of
#: the queue: fetch enable, instruction memory, offset stage, decoder, queue head register.
FETCH_LATENCY = 1 + BlockRAM.LATENCY + OFFSET_LATENCY + Decoder.LATENCY + 1
#: Copies of the fetch address, each from a register of its own, that the instruction memory reads at
#: (hdl.bram.BlockRAM `addr_copies`): 128 x 4096 is 32 DP16KD blocks, and one register driving all 32 of
#: them is a slow net; with 4 copies each drives 8.
IMEM_ADDR_COPIES = 4
#: Entries the queue must hold for one issue a cycle: a pop is registered and frees a credit the cycle
#: after, whose fetch reaches the head BlockRAM.LATENCY + OFFSET_LATENCY + Decoder.LATENCY + 1 cycles later.
QUEUE_DEPTH = 2 + BlockRAM.LATENCY + OFFSET_LATENCY + Decoder.LATENCY + 1
#: Slices of the queue's LUT RAM, each read at a copy of the read pointer of its own.
PAYLOAD_COPIES = 3


#: Bits the instruction memory holds beside each word (`predecode`): whether it is a LOOP, then one per
#: emu.contract.loops.TARGETS entry.
PREDECODE_BITS = 1 + len(TARGETS)
#: Width of an instruction memory entry: the word, then its predecoded bits.
IMEM_BITS = INSTR_BITS + PREDECODE_BITS


def predecode(word) -> Value:
    """PREDECODE_BITS (unsigned) decoded from the INSTR_BITS `word` as it is written into the instruction
    memory: bit 0 is set for a LOOP, bit 1 + i for a word of TARGETS[i]'s opcode (and buffer). The fetch
    path reads them beside the word, so its first gates after the memory select an increment instead of
    decoding the opcode first (the decode in front of the offset stage's registers was the 8x8 build's
    worst path)."""
    word = Value.cast(word)
    opcode, ins = word[:OPCODE_BITS], views(word)
    chosen = [(opcode == op) & ((ins[op].buf == buf) if buf is not None else 1) for op, buf, *_ in TARGETS]
    return Cat(opcode == Opcode.LOOP, *chosen)


def _step_regions() -> list[tuple[int, int, list[tuple[int, Opcode, str, int, int]]]]:
    """The stepped fields (emu.contract.loops.TARGETS) grouped into the bit ranges of the word where they
    overlap: (lo, hi, [(TARGETS index, opcode, increment, field lsb, field width)]). One adder serves each
    range: fields of different opcodes that share bits share it, so no select follows the carry chain."""
    spans = sorted((lsb, lsb + f.width, i, op, inc) for i, (op, _, name, inc) in enumerate(TARGETS)
                   for f, lsb in field_layout(op) if f.name == name)
    regions: list = []
    for lsb, msb, i, op, inc in spans:
        if regions and lsb < regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], msb)
        else:
            regions.append([lsb, msb, []])
        regions[-1][2].append((i, op, inc, lsb, msb - lsb))
    for lo, hi, fields in regions:
        for op in {op for _, op, *_ in fields}:
            assert len({lsb for _, o, _, lsb, _ in fields if o == op}) == 1, f"{op.name} steps two fields in one range"
    return [tuple(r) for r in regions]


def _offset_stage(m: Module, entry, offsets) -> Signal:
    """The word of `entry` (the instruction memory's output, IMEM_BITS) one cycle later, with the loop
    `offsets` added to the fields they step (emu.contract.loops.TARGETS), wrapped to each field's width; a
    word of another opcode passes as it is. Per range of overlapping fields (_step_regions) the increment
    the entry's predecoded bits choose is registered, shifted to its field's lsb (zero for a word that
    steps nothing there), and added to the registered word's bits: below a field's lsb the sum is the
    word's bits, and above its msb (a narrower field than the range) the word's bits are taken back, which
    is the wrap. So after the registers only the carry chain and at most one select remain."""
    word_q = Signal(INSTR_BITS, name="word_a")
    m.d.sync += word_q.eq(entry[:INSTR_BITS])
    targets, parts, done = entry[INSTR_BITS + 1:], [], 0
    for lo, hi, fields in _step_regions():
        step = Signal(hi - lo, name=f"step_{lo}")
        ends = sorted({lsb + width for *_, lsb, width in fields} - {hi})
        keep = [Signal(name=f"keep_{lo}_from_{end}") for end in ends]   # the word's bits from `end` on
        m.d.sync += [step.eq(0), *(k.eq(0) for k in keep)]
        for i, op, inc, lsb, width in fields:
            with m.If(targets[i]):
                m.d.sync += step.eq(getattr(offsets, inc)[:width] << (lsb - lo))
                m.d.sync += [k.eq(1) for k, end in zip(keep, ends) if lsb + width <= end]
        total = Signal(hi - lo, name=f"stepped_{lo}")
        m.d.comb += total.eq(word_q[lo:hi] + step)
        bounds = [lo, *ends, hi]
        pieces = [total[:bounds[1] - lo]] + [Mux(k, word_q[a:b], total[a - lo:b - lo])
                                             for k, a, b in zip(keep, bounds[1:], bounds[2:])]
        parts += [word_q[done:lo], *pieces]
        done = hi
    out = Signal(INSTR_BITS, name="word_stepped")
    m.d.comb += out.eq(Cat(*parts, word_q[done:]))
    return out


class Sequencer(wiring.Component):
    """In from the CSR block: `start`, `prog_addr`, `prog_len`, `watchdog`; out to it: `running`, `finished`,
    `error_code`, `error_pc`, `cycles`, `macs`. `imem_rd_addr` / `imem_rd_data`: the instruction memory's
    read port (its address in IMEM_ADDR_COPIES copies). `dma` and `cu`: the DMA's and the compute unit's
    command interfaces (hdl.dma.dma_command_signature, hdl.compute.compute_command_signature), driven from
    registers, with the units' busy and error flags coming back."""

    def __init__(self, cfg: AccelConfig):
        if timing.FETCH_LATENCY != FETCH_LATENCY or timing.BUSY_LATENCY != 1:
            raise ValueError(f"emu.contract.timing.FETCH_LATENCY={timing.FETCH_LATENCY}, "
                             f"BUSY_LATENCY={timing.BUSY_LATENCY} "
                             f"but the fetch pipeline takes {FETCH_LATENCY} cycles and a unit's busy flag 1")
        self._cfg = cfg
        self._imem_abits = max(1, (cfg.instr_depth - 1).bit_length())
        super().__init__({
            "start": In(1), "prog_addr": In(32), "prog_len": In(32), "watchdog": In(32),
            "running": Out(1), "finished": Out(1), "error_code": Out(4), "error_pc": Out(32),
            "cycles": Out(64), "macs": Out(64),
            "imem_rd_addr": Out(self._imem_abits).array(IMEM_ADDR_COPIES), "imem_rd_data": In(IMEM_BITS),
            "dma": Out(dma_command_signature()), "cu": Out(compute_command_signature()),
        })

    def elaborate(self, platform):
        m = Module()
        family = family_of(platform)
        m.submodules.decoder = dec = Decoder(self._cfg)
        # The queue is split: the opcode and fault of each entry in a Queue with a registered head, which is
        # all the issue decision reads, and the rest (the word, row bytes, count) in a LUT RAM read at the
        # head's index, which only feeds the argument registers. A pop then moves a few flip-flops and one
        # pointer, not a whole entry.
        pc_bits = self._cfg.instr_depth.bit_length()     # a pc is at most prog_len <= instr_depth
        m.submodules.queue = queue = Queue(width=head_layout.size, depth=QUEUE_DEPTH)
        rb_bits = len(dec.row_bytes)
        assert rb_bits <= len(self.dma.row_bytes)      # the decoder's row bytes reach the DMA whole
        # an entry's compute-unit counts (start_counts) are added up as it is pushed: behind the LUT RAM's read
        # they were the slowest path to the argument registers
        entry = data.StructLayout({"word": INSTR_BITS, "row_bytes": rb_bits, "count": COUNT_BITS, "pc": pc_bits,
                                   **{name: getattr(self.cu, name).shape()
                                      for name in ("busy_left", "drain_left", "rows_left")}})
        # the LUT RAM is PAYLOAD_COPIES memories of adjacent bits, each read at a copy of the read pointer of
        # its own: one pointer register reading the whole entry (~50 LUT RAM cells) was a long, loaded net
        bounds = [entry.size * k // PAYLOAD_COPIES for k in range(PAYLOAD_COPIES + 1)]
        slices = [Memory(shape=hi - lo, depth=QUEUE_DEPTH, init=[]) for lo, hi in zip(bounds, bounds[1:])]
        for k, mem in enumerate(slices):
            m.submodules[f"payload{k}"] = mem
        slice_wr = [mem.write_port() for mem in slices]
        slice_rd = [mem.read_port(domain="comb") for mem in slices]
        entry_in = Signal(entry)
        head_entry = data.View(entry, Cat(*(port.data for port in slice_rd)))

        # `start` registered here: it comes from the CSR block across the chip and loads ~200 flip-flops
        start = Signal(name="start_q")
        m.d.sync += start.eq(self.start)
        # the program length check, registered: PROG_LEN is written before CTRL, so it is settled by the
        # time the registered start arrives
        prog_bad = Signal()
        m.d.sync += prog_bad.eq((self.prog_len == 0) | (self.prog_len > self._cfg.instr_depth))
        prog_last = Signal(pc_bits)     # prog_len - 1, the last instruction's pc
        preloading = Signal()
        # counts in RUN only, so it holds CYCLES once the run is over (exact two cycles after; the CSR
        # block's done flag and a bus read of it take longer)
        cycle = Signal(64)
        counting = Signal()           # in RUN
        m.d.comb += self.cycles.eq(cycle)
        # `idle`: the FSM is in IDLE, a flip-flop of its own set beside the state. The fetch pipeline and the
        # queue are flushed in every IDLE cycle, not only at a start (nothing issues outside RUN, and a start
        # is taken only in IDLE), so the flush is a register too: copies of idle's next value, one for the
        # decoder, one for the queue and one for the rest, rather than `start` decoded with the state. The
        # run's counters are cleared at the start only: they hold their values while idle.
        idle, idle_next = Signal(init=1), Signal()
        m.d.comb += idle_next.eq(idle)
        m.d.sync += idle.eq(idle_next)
        flush_dec, flush_queue, flush = family.copies(m, idle_next, 3, name="flush")
        start_run = start & idle

        # ---- fetch: one word a cycle while a queue entry is free for it, up to the word past the end ----
        fetch_pc = Signal(pc_bits)
        fetch_pc_next = Signal(pc_bits)     # set below: the next fetch's pc on a fetch
        # fetch_pc + 1 in a register of its own (with its next value), and `fetch_to`, where a fetch this
        # cycle goes (fetch_pc + 1 or a loop's start), registered a cycle ahead from the next values of the
        # loop registers: fetch_pc's next value, which the far address copies take, is then one gate from
        # flip-flops (the loop decision in front of it was the worst path)
        fetch_pc_inc, fetch_pc_inc_next = Signal(pc_bits, init=1), Signal(pc_bits)
        # fetch_pc_inc's next value but for the flush, which is all `fetch_to` reads: the flush is a long,
        # loaded net, and nothing is fetched until the preload ends, long after it, by when `fetch_to` has
        # been formed from the reset registers
        inc_unflushed = Signal(pc_bits)
        fetch_to = Signal(pc_bits, init=1)
        m.d.comb += [fetch_pc_next.eq(fetch_pc), inc_unflushed.eq(fetch_pc_inc), fetch_pc_inc_next.eq(inc_unflushed)]
        m.d.sync += [fetch_pc.eq(fetch_pc_next), fetch_pc_inc.eq(fetch_pc_inc_next)]
        fetching = Signal()
        # free queue entries as a thermometer code (credits[i] while more than i are free), so `fetch` is one
        # gate from flip-flops
        credits = Signal(QUEUE_DEPTH)
        fetch = fetching & credits[0]
        pop = Signal()
        pop_q = Signal()
        # the instruction memory's address copies: registers of their own with fetch_pc's next value (where the
        # family has flip-flops synthesis does not merge back into one, Family.replica); elsewhere fetch_pc
        # stands for all
        for i, copy in enumerate(self.imem_rd_addr):
            addr = fetch_pc_next[:self._imem_abits]
            m.d.comb += copy.eq(family.replica(m, addr, name=f"imem_rd_addr_{i}") if family.has_replicas
                                else fetch_pc)
        # the credit comes back from a registered pop, so the issue decision does not reach the fetch logic
        # (a pop while idle is of an entry the flush drops: it returns no credit)
        m.d.sync += [pop_q.eq(pop & ~flush),
                     credits.eq(Mux(fetch, Mux(pop_q, credits, Cat(credits[1:], 0)),
                                    Mux(pop_q, Cat(1, credits[:-1]), credits)))]
        # fetch_pc == prog_len as a flip-flop, set by the fetch of the last instruction, so the compare does
        # not sit between the credits and `fetching`
        past_end = Signal()
        # hardware loops: a fetch at a loop body's end goes back to its start (hdl/loop.py)
        m.submodules.loops = loops = LoopControl(pc_bits)
        m.d.comb += [loops.fetch.eq(fetch), loops.pc_inc.eq(fetch_pc_inc), loops.flush.eq(flush)]
        assert BlockRAM.LATENCY >= 1, "loop offsets lag the fetch by a cycle (hdl/loop.py)"
        m.d.sync += fetch_to.eq(Mux(loops.jump_next, loops.target_next, inc_unflushed))
        with m.If(fetch):
            m.d.comb += [fetch_pc_next.eq(fetch_to),
                         inc_unflushed.eq(Mux(loops.jump, loops.target_inc, fetch_pc_inc + 1))]
            m.d.sync += past_end.eq((fetch_pc == prog_last) & ~loops.jump)
            with m.If(past_end):
                m.d.sync += fetching.eq(0)
        # idle: the fetch is off (it stops the cycle after END, not in the cycle of the pop: what it fetches
        # then is dropped), and the next run fetches from pc 0 with every queue entry free. fetch_pc is reset,
        # not its next value: the address copies follow it a cycle later, long before the start's preload
        # ends, and the flush (a loaded net) reaches no far address copy
        with m.If(flush):
            m.d.comb += fetch_pc_inc_next.eq(1)
            m.d.sync += [fetch_pc.eq(0), past_end.eq(0), fetching.eq(0), credits.eq(Const(-1, QUEUE_DEPTH))]
        fetched = Signal(2)     # (valid, past the end) of the word on imem_rd_data
        # the valid bits are cleared while idle, so a word fetched before a run ended never arms a loop:
        # the flush reaches these two flip-flops, not the loop registers' enables behind `arrive`
        in_flight = [Signal(2, name=f"fetched_d{d}") for d in range(BlockRAM.LATENCY)]
        for d, reg in enumerate(in_flight):
            m.d.sync += reg.eq(Cat(fetch, past_end) if d == 0 else in_flight[d - 1])
            with m.If(flush):
                m.d.sync += reg[0].eq(0)
        m.d.comb += fetched.eq(in_flight[-1])
        # each word's pc and loop offsets travel beside it: a pc is an address in the program, whichever
        # iteration fetched it
        fetched_pc = delay(m, fetch_pc, BlockRAM.LATENCY, "fetched_pc")
        fetched_offsets = delay(m, loops.offsets.as_value(), BlockRAM.LATENCY - 1, "fetched_offsets")
        m.d.comb += [loops.arrive.eq(fetched[0] & ~fetched[1] & self.imem_rd_data[INSTR_BITS]),
                     loops.arrive_word.eq(self.imem_rd_data[:INSTR_BITS]), loops.arrive_pc.eq(fetched_pc)]
        # the offset stage: the word registered, then the loop offsets added to the fields they step
        valid_a, past_end_a, pc_a = (Signal.like(s, name=f"{n}_a") for s, n in (
            (fetched[0], "valid"), (fetched[1], "past_end"), (fetched_pc, "pc")))
        m.d.sync += [valid_a.eq(fetched[0] & ~flush), past_end_a.eq(fetched[1]), pc_a.eq(fetched_pc)]
        stepped = _offset_stage(m, self.imem_rd_data, data.View(loops.offsets.shape(), fetched_offsets))
        m.d.comb += [dec.word.eq(stepped), dec.valid.eq(valid_a & ~flush),
                     dec.past_end.eq(past_end_a), dec.loop_bad.eq(loops.loop_bad), dec.flush.eq(flush_dec)]
        push = dec.out_valid & ~flush
        # the head says which unit the instruction needs, one bit each, zero for a faulty word
        pushed = data.View(head_layout, queue.w_data)
        pushed_op, pushed_v = dec.out_word[:OPCODE_BITS], views(dec.out_word)
        legal = dec.fault == 0
        m.d.comb += [
            pushed.dma.eq(legal & ((pushed_op == Opcode.LOAD) | (pushed_op == Opcode.STORE))),
            pushed.matmul.eq(legal & (pushed_op == Opcode.MATMUL)),
            pushed.post.eq(legal & (pushed_op == Opcode.POST)),
            pushed.all_units.eq(legal & ((pushed_op == Opcode.SYNC) | (pushed_op == Opcode.END))),
            pushed.drain.eq(legal & (((pushed_op == Opcode.SYNC) & pushed_v[Opcode.SYNC].drain)
                                     | (pushed_op == Opcode.END))),
            pushed.end.eq(legal & (pushed_op == Opcode.END)),
            pushed.loop.eq(legal & (pushed_op == Opcode.LOOP)),
            pushed.faulty.eq(~legal), pushed.fault.eq(dec.fault),
            queue.w_en.eq(push), queue.flush.eq(flush_queue), queue.r_en.eq(pop),
        ]
        # Each entry carries its own pc, from the fetch, so no pc register hangs on the pop.
        push_pc = delay(m, pc_a, Decoder.LATENCY, "push_pc")
        payload_in = Signal(range(QUEUE_DEPTH))
        # the read pointer in PAYLOAD_COPIES registers, one for each slice of the LUT RAM, all set from its
        # next value
        payload_out_next = Signal(range(QUEUE_DEPTH))
        read_at = family.copies(m, payload_out_next, PAYLOAD_COPIES, name="payload_out")
        payload_out = read_at[0]
        pushed_post = pushed_op == Opcode.POST
        mm_counts, po_counts = (start_counts(self._cfg, pushed_v[op].rows, post=post)
                                for op, post in ((Opcode.MATMUL, False), (Opcode.POST, True)))
        m.d.comb += [entry_in.word.eq(dec.out_word), entry_in.row_bytes.eq(dec.row_bytes),
                     entry_in.count.eq(dec.count), entry_in.pc.eq(push_pc),
                     entry_in.busy_left.eq(Mux(pushed_post, po_counts["busy_left"], mm_counts["busy_left"])),
                     entry_in.drain_left.eq(mm_counts["drain_left"]),
                     entry_in.rows_left.eq(Mux(pushed_post, po_counts["rows_left"], mm_counts["rows_left"]))]
        for port, lo, hi in zip(slice_wr, bounds, bounds[1:]):
            m.d.comb += [port.en.eq(push), port.addr.eq(payload_in), port.data.eq(entry_in.as_value()[lo:hi])]
        with m.If(push):
            m.d.sync += payload_in.eq(Mux(payload_in == QUEUE_DEPTH - 1, 0, payload_in + 1))
        m.d.comb += payload_out_next.eq(payload_out)
        with m.If(pop):
            m.d.comb += payload_out_next.eq(Mux(payload_out == QUEUE_DEPTH - 1, 0, payload_out + 1))
        with m.If(flush):
            m.d.sync += payload_in.eq(0)
            m.d.comb += payload_out_next.eq(0)
        m.d.comb += [port.addr.eq(at) for port, at in zip(slice_rd, read_at)]

        # ---- the head entry ----
        head = data.View(head_layout, queue.r_data)   # all zero while the queue is empty
        head_word, head_row_bytes, head_count, head_pc = (head_entry.word, head_entry.row_bytes, head_entry.count,
                                                          head_entry.pc)
        op = head_word[:OPCODE_BITS]                  # only for the argument registers
        v = views(head_word)
        ld, mm, po = v[Opcode.LOAD], v[Opcode.MATMUL], v[Opcode.POST]

        m.d.sync += self.finished.eq(0)  # a one-cycle pulse; the FSM below overrides it when a run ends

        # Instruction fields and start strobes reach the units through registers (emu.contract.timing.ISSUE_LATENCY):
        # the fields follow the head every cycle, so the registers need no enable, and the issue decision
        # drives only the few start flip-flops, not hundreds of argument enables. A unit counts as busy from
        # the cycle its start is registered. The POST/MATMUL choice reads the head's `post` flag, a
        # flip-flop, instead of decoding the opcode out of the LUT RAM: the fields matter only when a start
        # goes with them, and then the head is a legal MATMUL or POST.
        m.d.sync += [
            self.dma.store.eq(op == Opcode.STORE), self.dma.target.eq(ld.buf),
            self.dma.rows.eq(ld.rows), self.dma.blocks.eq(ld.blocks), self.dma.row_bytes.eq(head_row_bytes),
            self.dma.buf_addr.eq(ld.buf_addr), self.dma.ext_addr.eq(ld.ext_addr),
            self.dma.ext_stride.eq(ld.ext_stride), self.dma.block_stride.eq(ld.block_stride),
            self.cu.busy_left.eq(head_entry.busy_left), self.cu.drain_left.eq(head_entry.drain_left),
            self.cu.rows_left.eq(head_entry.rows_left),
            self.cu.act_addr.eq(mm.act_addr), self.cu.wgt_addr.eq(mm.wgt_addr),
            self.cu.acc_addr.eq(Mux(head.post, po.acc_addr, mm.acc_addr)),
            self.cu.accumulate.eq(mm.accumulate), self.cu.reduce_max.eq(mm.reduce_max),
            self.cu.out_addr.eq(po.out_addr),
            self.cu.param_addr.eq(po.param_addr), self.cu.shift.eq(po.shift),
            self.cu.zero_point.eq(po.zero_point), self.cu.clamp_lo.eq(po.clamp_lo),
            self.cu.clamp_hi.eq(po.clamp_hi), self.cu.table.eq(po.table),
        ]
        # A unit's busy flag (and the DMA's error) comes from across the chip into a register of its own with
        # no logic in front (emu.contract.timing.BUSY_LATENCY); `starting` covers the two cycles before it shows a
        # start: the one the strobe is registered in and the one the unit sees it in (a unit raises busy the
        # cycle after it sees its start strobe).
        dma_go = Signal()           # the start strobes' next values
        array_go = Signal()
        post_go = Signal()
        dma_busy, array_busy, acc_busy, post_busy, dma_error = (Signal(name=n) for n in (
            "dma_busy_q", "array_busy", "acc_busy", "post_busy", "dma_error_q"))
        dma_starting, array_starting, post_starting = (Signal(name=n) for n in (
            "dma_starting", "array_starting", "post_starting"))
        # the compute unit's strobes in START_COPIES flip-flops each, one per group of registers it starts
        # there (hdl/compute.py); the two below are this unit's own
        array_started, post_started = Signal(name="array_started"), Signal(name="post_started")
        m.d.comb += [
            self.cu.matmul_start.eq(Cat(family.copies(m, array_go, START_COPIES, name="cu_matmul_start"))),
            self.cu.post_start.eq(Cat(family.copies(m, post_go, START_COPIES, name="cu_post_start"))),
        ]
        # the preload's own arguments, and whether a start is the preload (set while IDLE, below); a prog_len
        # too long for them is refused at start (prog_bad) and never preloaded
        m.d.sync += [self.dma.preload.eq(0), self.dma.prog_addr.eq(self.prog_addr),
                     self.dma.prog_len.eq(self.prog_len)]
        m.d.sync += [
            self.dma.start.eq(dma_go), array_started.eq(array_go), post_started.eq(post_go),
            dma_busy.eq(self.dma.busy), array_busy.eq(self.cu.busy), acc_busy.eq(self.cu.drain),
            post_busy.eq(self.cu.post_busy),
            dma_error.eq(self.dma.error),
            dma_starting.eq(dma_go | self.dma.start), array_starting.eq(array_go | array_started),
            post_starting.eq(post_go | post_started),
        ]
        dma_idle = ~dma_busy & ~dma_starting
        array_idle = ~array_busy & ~acc_busy & ~array_starting
        post_idle = ~post_busy & ~post_starting
        all_idle = dma_idle & array_idle & post_idle

        # watchdog: `overdue` is (WATCHDOG != 0) & (cycle >= WATCHDOG) as a register; `wd_left` counts
        # WATCHDOG - cycle - 2 down and stops once negative, so its sign bit is the comparison a cycle early
        wd_on, wd_left, overdue = Signal(), Signal(signed(34)), Signal()
        overdue_next = Signal()
        m.d.comb += overdue_next.eq(wd_on & wd_left[-1])
        m.d.sync += overdue.eq(overdue_next)
        # it counts in every state (only RUN reads it), so its clock enable does not wait for the state decode
        with m.If(~wd_left[-1]):
            m.d.sync += wd_left.eq(wd_left - 1)

        # Issue decides on one flip-flop per unit, `ready` = idle and neither a bus error nor the watchdog
        # stopping the run, formed a cycle ahead from the next values of the flip-flops above (so in RUN they
        # hold exactly dma_idle & ok and so on); `pop` is then two LUT levels from the head and these flags, and a
        # start one. (SYNC and END AND the three flags in the pop: a register of their AND would have the
        # three units' whole cone in front of it.)
        # The flags are exact in RUN only, which is all that reads them: nothing issues outside RUN, and in
        # the first RUN cycle the queue is empty (flushed while idle), so the flag formed in the start cycle
        # is never used. So a unit's flag drops on the unit's own pop term rather than on its start strobe
        # (which waits for the state decode, and for the DMA the preload), and the watchdog state left from
        # the last run may pass through in the start cycle: each flag is two LUT levels from flip-flops and
        # the units' busy inputs.
        # (`acc`: no MATMUL is writing ACC, for END and a draining SYNC)
        ready = {unit: Signal(name=f"{unit}_ready", init=1) for unit in ("dma", "array", "acc", "post")}
        unit_pop = {"dma": head.dma & ready["dma"], "array": head.matmul & ready["array"],
                    "post": head.post & ready["post"]}
        ok_next = ~self.dma.error & ~overdue_next
        ready_next = {
            "dma": ~self.dma.busy & ~(unit_pop["dma"] | self.dma.start) & ok_next,
            "array": ~self.cu.busy & ~(unit_pop["array"] | array_started) & ok_next,
            "acc": ~self.cu.drain & ~(unit_pop["array"] | array_started) & ok_next,
            "post": ~self.cu.post_busy & ~(unit_pop["post"] | post_started) & ok_next,
        }
        m.d.sync += [ready[unit].eq(nxt) for unit, nxt in ready_next.items()]
        # a LOOP needs no unit (the fetch has taken it in hand): it pops unless the run is stopping
        loop_ready = Signal(init=1)
        m.d.sync += loop_ready.eq(ok_next)

        # MACS += rows * (k_valid * n_valid, the head's count) of each issued MATMUL, through a registered
        # product tree and a split-carry accumulator; it is exact product_latency(16) + 3 cycles after issue,
        # before any run can end (a MATMUL keeps the array busy longer, and END/DRAIN wait for it)
        mac_go, mac_rows, mac_kn = Signal(), Signal(16), Signal(16)
        m.d.sync += [mac_go.eq(array_go), mac_rows.eq(mm.rows), mac_kn.eq(head_count)]   # they follow the head
        mac_term = product(m, mac_rows, mac_kn, name="mac_term")
        accumulate(m, self.macs, mac_term, en=delay(m, mac_go, product_latency(16), "mac_go"), clear=start_run,
                   name="macs")
        accumulate(m, cycle, 1, en=counting, clear=start_run, init=1, name="cycle")

        dma_pc = Signal(pc_bits)        # pc of the last LOAD/STORE issued (0 for the preload)

        def fault(code, at):
            m.d.sync += [self.error_code.eq(code), self.error_pc.eq(at), fetching.eq(0)]
            m.next = "DRAIN"

        # The queue pops a head a ready unit could take in every state, so that the pop (which steps the
        # queue's registers) does not wait for the state decode; only in RUN does a pop issue (the starts
        # below) or end the run. Outside RUN a popped entry is dropped, and the queue is flushed while idle.
        # (It is written out from the unit pop terms rather than from the starts, which wait for the state.)
        all_ready = ready["dma"] & ready["array"] & ready["post"] & (ready["acc"] | ~head.drain)
        m.d.comb += pop.eq(unit_pop["dma"] | unit_pop["array"] | unit_pop["post"] | (head.loop & loop_ready)
                           | (head.all_units & all_ready))
        with m.FSM():
            with m.State("IDLE"):
                # while idle a DMA start is the preload (its arguments are chosen in the DMA), so only the
                # strobe waits for start
                m.d.sync += self.dma.preload.eq(1)
                with m.If(start):
                    m.d.sync += [self.error_code.eq(0), self.error_pc.eq(0), prog_last.eq(self.prog_len - 1),
                                 wd_on.eq(self.watchdog != 0), wd_left.eq(Cat(self.watchdog, 0).as_signed() - 3)]
                    with m.If(prog_bad):
                        m.d.sync += [self.error_code.eq(FaultCode.PROGRAM_RANGE), self.finished.eq(1)]
                    with m.Else():
                        # the preload is a LOAD of one block of prog_len 16-byte entries into instruction memory
                        m.d.comb += [dma_go.eq(1), idle_next.eq(0)]
                        m.d.sync += [preloading.eq(1), dma_pc.eq(0)]
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.running.eq(1)
                m.d.comb += counting.eq(1)
                # the head issues to a ready unit (idle, and neither a bus error nor the watchdog stopping the
                # run); a faulty head has no unit flag set
                m.d.comb += [dma_go.eq(unit_pop["dma"]), array_go.eq(unit_pop["array"]),
                             post_go.eq(unit_pop["post"])]
                with m.If(preloading & dma_idle):
                    m.d.sync += [preloading.eq(0), fetching.eq(1)]
                # the DMA's error flag stays set from a failed transfer until its next start, so it is stale
                # while a start strobe is on its way (`dma_starting`), as after a run that ended in a bus
                # error; a transfer's own error comes much later (after its first address)
                with m.If(dma_error & ~dma_starting):
                    fault(FaultCode.BUS_ERROR, dma_pc)
                with m.Elif(head.faulty):
                    fault(head.fault, head_pc)
                with m.Elif(queue.r_rdy & overdue):
                    fault(FaultCode.WATCHDOG, head_pc)
                # a pop excludes all three faults, so what it updates does not wait for the checks above; END
                # pops exactly when all units are ready, which is written out so the run's end (and
                # the flush copies behind it, far across the chip) is one gate from the flags, not the pop's
                with m.If(head.end & all_ready):
                    m.d.comb += idle_next.eq(1)
                    m.d.sync += self.finished.eq(1)
                    m.next = "IDLE"
                with m.If(dma_go):
                    m.d.sync += dma_pc.eq(head_pc)
            with m.State("DRAIN"):
                m.d.comb += self.running.eq(1)
                with m.If(all_idle):
                    with m.If(dma_error):
                        m.d.sync += [self.error_code.eq(FaultCode.BUS_ERROR), self.error_pc.eq(dma_pc)]
                    m.d.comb += idle_next.eq(1)
                    m.d.sync += self.finished.eq(1)
                    m.next = "IDLE"
        return m
