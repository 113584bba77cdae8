"""Gateware that puts the accelerator on a real FPGA for synthesis: a pin harness and an ECP5 PLL.

`PinHarness` wraps `Accelerator(cfg)` for a board (or a package too small for its ~400 AXI pins) the way a
built-in self-test does: a 31-bit LFSR (x^31 + x^28 + 1) shifts pseudo-random bits through a scan register
that drives every accelerator input (`m_axi_*` responses and `s_axil_*` requests), and a multiple-input
signature register (MISR) folds every accelerator output into one bit that drives `misr_out`. Nothing is
constant, so synthesis keeps and places the whole accelerator; but the AXI ports reach no host or memory:
the harness proves area and timing, it is not a system a host can use.

`ecp5_pll` instantiates an EHXPLLL that turns the board clock into the requested accelerator clock.
"""
from __future__ import annotations

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from emu.contract.config import AccelConfig

from hdl.top import Accelerator

__all__ = ["PinHarness", "BoardTop", "ecp5_pll_dividers", "ecp5_pll"]


class PinHarness(wiring.Component):
    """`Accelerator(cfg)` with its ports replaced by an LFSR-fed scan register and a 1-bit MISR output."""

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self._cfg = cfg
        super().__init__({"misr_out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.accel = accel = Accelerator(self._cfg)
        inputs, outputs = [], []
        for name, member in accel.signature.members.items():
            port = getattr(accel, name)
            (inputs if member.flow == In else outputs).append(port)

        lfsr = Signal(31, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[30] ^ lfsr[27], lfsr[:30]))
        scan = Signal(sum(len(p) for p in inputs))
        m.d.sync += scan.eq(Cat(lfsr[30], scan[:-1]))
        m.d.comb += Cat(*inputs).eq(scan)

        flat_out = Cat(*outputs)
        misr = Signal(len(flat_out))
        m.d.sync += misr.eq(Cat(misr[-1], misr[:-1]) ^ flat_out)
        m.d.sync += self.misr_out.eq(misr[-1])
        return m


def ecp5_pll_dividers(*, clkin_mhz: float, clkout_mhz: float) -> tuple[int, int, int, float]:
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


def ecp5_pll(m: Module, *, clkin, clkin_mhz: float, clkout_mhz: float, domain: str = "sync") -> float:
    """Drive clock domain `domain` (created here, reset held until lock) from an EHXPLLL; returns its MHz."""
    clki_div, clkfb_div, clkop_div, achieved = ecp5_pll_dividers(clkin_mhz=clkin_mhz, clkout_mhz=clkout_mhz)
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


class BoardTop(Elaboratable):
    """A board build: the board clock (through an EHXPLLL on ECP5 when `clock_mhz` differs from it) clocks a
    `PinHarness(cfg)` whose MISR bit drives the board's first LED. `clock_mhz` is the clock achieved."""

    def __init__(self, cfg: AccelConfig, *, clock_mhz: float | None):
        self._cfg = cfg
        self._want_mhz = clock_mhz
        self.clock_mhz = None

    def elaborate(self, platform):
        m = Module()
        clk = platform.request(platform.default_clk, dir="-")
        board_mhz = platform.default_clk_frequency / 1e6
        if self._want_mhz is not None and abs(self._want_mhz - board_mhz) > 1e-6 and platform.family == "ecp5":
            clkin = Signal()
            m.submodules.clk_buf = buf = io.Buffer("i", clk)
            m.d.comb += clkin.eq(buf.i)
            self.clock_mhz = ecp5_pll(m, clkin=clkin, clkin_mhz=board_mhz, clkout_mhz=self._want_mhz)
        else:
            m.domains.sync = cd = ClockDomain("sync")
            m.submodules.clk_buf = buf = io.Buffer("i", clk)
            m.d.comb += cd.clk.eq(buf.i)
            self.clock_mhz = board_mhz
        m.submodules.harness = harness = PinHarness(self._cfg)
        led = platform.request("led", 0, dir="-")
        m.submodules.led_buf = led_buf = io.Buffer("o", led)
        m.d.comb += led_buf.o.eq(harness.misr_out)
        return m
