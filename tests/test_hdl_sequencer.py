"""hdl.sequencer.Sequencer alone in Amaranth's simulator: a model instruction memory (BlockRAM.LATENCY) and
unit models that hold busy for each command's emu.contract.timing cycles. Checks what it issues to which unit,
when (emu.contract.timing.Timer), CYCLES and MACS (golden), and its faults."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from emu.contract import isa, timing
from emu.contract.config import AccelConfig
from emu.contract.faults import FaultCode
from emu.contract.isa import INSTR_BYTES, Buffer, Opcode
from emu.contract.loops import walk
from emu.emulator.golden import Golden

CFG = AccelConfig(rows=3, cols=5, act_depth=64, wgt_depth=32, acc_depth=64, out_depth=64, param_depth=8,
                  instr_depth=16)
PROG_ADDR = 0x100     # 16-byte aligned, 2 bus beats of 64 bits an instruction
MEM = 1 << 13

LOAD_ACT = isa.make(Opcode.LOAD, buf=Buffer.ACT, rows=4, row_len=3, buf_addr=2, ext_addr=4000, ext_stride=3)
LOAD_WGT = isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=3, row_len=5, buf_addr=1, ext_addr=4100, ext_stride=7,
                    blocks=2, block_stride=30)
LOAD_PARAM = isa.make(Opcode.LOAD, buf=Buffer.PARAM, rows=1, row_len=5, buf_addr=3, ext_addr=4300, ext_stride=60)
SYNC, END = isa.make(Opcode.SYNC), isa.make(Opcode.END)
MATMUL = isa.make(Opcode.MATMUL, rows=4, act_addr=2, wgt_addr=1, acc_addr=5, accumulate=1, k_valid=3, n_valid=4,
                  reduce_max=1)
POST = isa.make(Opcode.POST, rows=4, acc_addr=5, out_addr=6, param_addr=3, shift=9, zero_point=-3, clamp_lo=-100,
                clamp_hi=90)
STORE = isa.make(Opcode.STORE, buf=Buffer.OUT, rows=4, row_len=5, buf_addr=6, ext_addr=5000, ext_stride=5)
PROGRAM = [LOAD_ACT, LOAD_WGT, LOAD_PARAM, SYNC, MATMUL, MATMUL, SYNC, POST, SYNC, STORE, END]


def _preload(prog_len):
    """The program preload, as the DMA's command and busy cycles: prog_len 16-byte rows at PROG_ADDR copied
    into instruction memory (the DMA forms the transfer from `preload`), timed as the LOAD of one span it is."""
    as_load = isa.make(Opcode.LOAD, buf=Buffer.ACT, rows=prog_len, row_len=INSTR_BYTES, buf_addr=0,
                       ext_addr=PROG_ADDR, ext_stride=INSTR_BYTES)
    return timing.instr_cycles(as_load, CFG), dict(preload=1, prog_addr=PROG_ADDR, prog_len=prog_len)


def _unit(instr):
    return {Opcode.LOAD: "dma", Opcode.STORE: "dma", Opcode.MATMUL: "matmul", Opcode.POST: "post"}.get(instr.op)


def _command(instr):
    """The members of the unit's command interface `instr` sets, as the unit should see them."""
    from hdl.compute import start_counts
    f = instr.fields
    if _unit(instr) == "dma":
        return dict(preload=0, store=int(instr.op == Opcode.STORE), target=instr.buf, rows=f["rows"],
                    blocks=f["blocks"], row_bytes=f["row_len"] * timing.element_bytes(Buffer(instr.buf)), buf_addr=f["buf_addr"],
                    ext_addr=f["ext_addr"], ext_stride=f["ext_stride"], block_stride=f["block_stride"])
    names = (("act_addr", "wgt_addr", "acc_addr", "accumulate", "reduce_max") if instr.op == Opcode.MATMUL else
             ("acc_addr", "out_addr", "param_addr", "shift", "zero_point", "clamp_lo", "clamp_hi"))
    return {**start_counts(CFG, f["rows"], post=instr.op == Opcode.POST), **{n: f[n] for n in names}}


def run(words, prog_len, *, bus_error_on=None, limit=3000):
    """Start the sequencer on `words` (the instruction memory after the preload) and run it until `finished`.
    Each unit is busy from the cycle after it sees a start until instr_cycles - ISSUE_LATENCY cycles after it
    (and a MATMUL drains until matmul_cycles - ISSUE_LATENCY cycles after it),
    taking the cycles of the instruction the test expects there (the preload, then the program's as it runs);
    the DMA ends its `bus_error_on`-th transfer with its error flag set, which stays set until its next
    start. Returns the log of (cycle, unit, command) and the sequencer's outputs at `finished`. Cycles count
    as emu.contract.timing does: `start` is presented in cycle -1, and the sequencer registers it."""
    from hdl.bram import BlockRAM
    from amaranth.hdl import Cat, Module, Signal
    from hdl.sequencer import Sequencer, predecode
    dut = Sequencer(CFG)
    # the instruction memory's entry is the word read and its predecoded bits, as the write side forms them
    top, read = Module(), Signal(isa.INSTR_BITS)
    top.submodules.dut = dut
    top.d.comb += dut.imem_rd_data.eq(Cat(read, predecode(read)))
    expected = {"dma": [_preload(prog_len)], "matmul": [], "post": []}     # (busy cycles, command) a unit
    for step in walk([isa.decode(w) for w in words[:prog_len]]):       # the order they run in, loops too
        if step.fault is None and _unit(step.instr):
            expected[_unit(step.instr)].append((timing.instr_cycles(step.instr, CFG), _command(step.instr)))
    memory = list(words) + [0] * (CFG.instr_depth - len(words))
    log, out = [], {}

    async def tb(ctx):
        ctx.set(dut.prog_addr, PROG_ADDR)
        ctx.set(dut.prog_len, prog_len)
        ctx.set(dut.start, 1)
        addrs = [0] * BlockRAM.LATENCY          # fetch addresses of the last LATENCY cycles
        started = {unit: [] for unit in expected}
        busy_until = {unit: 0 for unit in expected}
        drain_until = 0
        dma_error = False
        for cycle in range(-1, limit):
            # this cycle's inputs: the word read LATENCY cycles ago, the units' flip-flops
            ctx.set(read, memory[addrs[-BlockRAM.LATENCY]])
            busy = {unit: bool(started[unit]) and started[unit][-1] < cycle < busy_until[unit] for unit in expected}
            if busy_until["dma"] == cycle and len(started["dma"]) == bus_error_on:
                dma_error = True
            ctx.set(dut.dma.busy, busy["dma"])
            ctx.set(dut.dma.error, dma_error)
            ctx.set(dut.cu.busy, busy["matmul"])
            ctx.set(dut.cu.drain, bool(started["matmul"]) and started["matmul"][-1] < cycle < drain_until)
            ctx.set(dut.cu.post_busy, busy["post"])
            strobes = {"dma": ctx.get(dut.dma.start), "matmul": ctx.get(dut.cu.matmul_start),
                       "post": ctx.get(dut.cu.post_start)}
            for unit, strobe in strobes.items():
                if not strobe:
                    continue
                if unit != "dma":
                    assert strobe == (1 << len(dut.cu.matmul_start)) - 1, "every copy of the strobe at once"
                assert not busy[unit], f"{unit} started at cycle {cycle} while busy"
                iface = dut.dma if unit == "dma" else dut.cu
                k = len(started[unit])
                cycles, command = expected[unit][k] if k < len(expected[unit]) else (2, {})
                log.append((cycle, unit, {n: ctx.get(getattr(iface, n)) for n in command}))
                started[unit].append(cycle)
                busy_until[unit] = cycle + cycles - timing.ISSUE_LATENCY
                if unit == "matmul":
                    drain_until = cycle + timing.matmul_cycles(CFG, command["rows_left"] + 2) - timing.ISSUE_LATENCY
                if unit == "dma":
                    dma_error = False
            if ctx.get(dut.finished):
                out.update(cycle=cycle, error_code=ctx.get(dut.error_code), error_pc=ctx.get(dut.error_pc),
                           cycles=ctx.get(dut.cycles), macs=ctx.get(dut.macs), running=ctx.get(dut.running))
                return
            addrs = addrs[1:] + [ctx.get(dut.imem_rd_addr[0])]
            await ctx.tick()
            ctx.set(dut.start, 0)
        raise AssertionError(f"no `finished` in {limit} cycles")

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return log, out


def _words(instrs, illegal=None):
    words = [isa.encode(i) for i in instrs]
    for pc, word in (illegal or {}).items():
        words[pc] = word
    return words


def _assert_issues_as_timed(program, macs):
    log, out = run(_words(program), len(program))
    mem = np.zeros(MEM, np.uint8)
    mem[PROG_ADDR:PROG_ADDR + INSTR_BYTES * len(program)] = np.frombuffer(isa.encode_program(program), np.uint8)
    gold = Golden(CFG, mem).run(PROG_ADDR, len(program))
    timer = timing.Timer(CFG, timing.preload_cycles(PROG_ADDR, len(program), CFG))
    want = [(timing.ISSUE_LATENCY, "dma", _preload(len(program))[1])]
    for step in walk(program):
        timer.issue(step.instr)
        if _unit(step.instr):
            want.append((timer.now - 1 + timing.ISSUE_LATENCY, _unit(step.instr), _command(step.instr)))
    assert [(unit, cmd) for _, unit, cmd in log] == [(unit, cmd) for _, unit, cmd in want]
    assert [c for c, _, _ in log] == [c for c, _, _ in want]
    assert out["error_code"] == 0 and out["running"] == 0
    assert (out["cycles"], out["macs"]) == (gold.cycles, gold.macs) == (timer.now, macs)
    assert out["cycle"] == out["cycles"]          # END's pop at CYCLES - 1 sets `finished`


def test_sequencer_issues_program_in_order_on_the_timing_models_cycles():
    """The preload, then every LOAD/STORE to the DMA, MATMUL and POST to the compute unit, each with its
    fields, in program order, at the cycle emu.contract.timing.Timer issues it (+ ISSUE_LATENCY);
    `finished` with CYCLES and MACS as the golden emulator counts them."""
    _assert_issues_as_timed(PROGRAM, 2 * 4 * 3 * 4)


def test_loops_issue_their_bodies_with_stepped_fields():
    """Two nested LOOPs: the units receive the walk's instructions (emu.contract.loops.walk), each
    field stepped, at the Timer's cycles; the inner loop ends where the outer does."""
    inner = isa.make(Opcode.LOOP, count=3, body=5, acc_inc=2)
    outer = isa.make(Opcode.LOOP, count=2, body=10, act_ext_inc=-5, wgt_ext_inc=9, param_ext_inc=12,
                     out_ext_inc=40, acc_inc=1)
    program = [outer, LOAD_ACT, LOAD_WGT, LOAD_PARAM, STORE, inner, MATMUL, *[SYNC] * 4, END]
    _assert_issues_as_timed(program, 2 * 3 * 4 * 3 * 4)


def test_illegal_opcode_faults_at_its_pc_after_draining():
    """An illegal word at pc 4: what comes before it issues, nothing after it; ILLEGAL_OPCODE at pc 4."""
    instrs = [LOAD_ACT, LOAD_WGT, SYNC, MATMUL, END, MATMUL, END]
    log, out = run(_words(instrs, {4: 0xF}), len(instrs))
    assert [unit for _, unit, _ in log] == ["dma", "dma", "dma", "matmul"]
    assert (out["error_code"], out["error_pc"]) == (FaultCode.ILLEGAL_OPCODE, 4)


def test_program_past_its_length_is_program_range():
    log, out = run(_words([LOAD_ACT, SYNC]), 2)
    assert [unit for _, unit, _ in log] == ["dma", "dma"]
    assert (out["error_code"], out["error_pc"]) == (FaultCode.PROGRAM_RANGE, 2)


@pytest.mark.parametrize("prog_len", [0, CFG.instr_depth + 1])
def test_program_length_out_of_range_faults_at_start(prog_len):
    """prog_len 0 or > instr_depth: PROGRAM_RANGE at pc 0 raised in cycle 0 (so CYCLES = 1), no preload."""
    log, out = run(_words([END]), prog_len)
    assert log == []
    assert (out["error_code"], out["error_pc"], out["cycles"], out["cycle"]) == (FaultCode.PROGRAM_RANGE, 0, 1, 1)


def test_dma_error_is_a_bus_error_at_the_transfers_pc():
    """The DMA ends the LOAD at pc 1 with an error: BUS_ERROR at pc 1, nothing issued after it."""
    instrs = [LOAD_ACT, LOAD_WGT, SYNC, MATMUL, END]
    log, out = run(_words(instrs), len(instrs), bus_error_on=3)
    assert [unit for _, unit, _ in log] == ["dma", "dma", "dma"]
    assert (out["error_code"], out["error_pc"]) == (FaultCode.BUS_ERROR, 1)


def test_command_widths_hold_the_largest_configuration():
    """The widths the command signatures fix hold what AccelConfig's largest build needs: a preload of
    instr_depth = 2**16 rows, a PARAM row of 64 lanes, the longest MATMUL's busy count on a 64 x 64 array
    (AccelConfig accepts nothing larger)."""
    from amaranth.hdl import Shape
    from emu.contract.config import ConfigError, PARAM_BYTES
    from hdl.compute import compute_command_signature, start_counts
    from hdl.dma import dma_command_signature
    dma, cu = dma_command_signature().members, compute_command_signature().members
    largest = AccelConfig(rows=64, cols=64, instr_depth=1 << 16)
    assert largest.instr_depth < 1 << Shape.cast(dma["rows"].shape).width
    assert largest.cols * PARAM_BYTES < 1 << Shape.cast(dma["row_bytes"].shape).width
    busy_left = start_counts(largest, (1 << 16) - 1, post=False)["busy_left"]
    assert busy_left < 1 << (Shape.cast(cu["busy_left"].shape).width - 1) and cu["busy_left"].shape.signed
    for too_large in (dict(instr_depth=(1 << 16) + 1), dict(cols=65)):
        with pytest.raises(ConfigError):
            AccelConfig(**too_large)
