"""Gateware that puts the accelerator on a real FPGA for synthesis: a pin harness and a board top.

`PinHarness` wraps `Accelerator(cfg)` for a board (or a package too small for its ~400 AXI pins) the way a
built-in self-test does: a 31-bit LFSR (x^31 + x^28 + 1) shifts pseudo-random bits through a scan register
that drives every accelerator input (`m_axi_*` responses and `s_axil_*` requests), and a multiple-input
signature register (MISR) folds every accelerator output into one bit that drives `misr_out`. Nothing is
constant, so synthesis keeps and places the whole accelerator; but the AXI ports reach no host or memory:
the harness proves area and timing, it is not a system a host can use.

`BoardTop` clocks the harness from a board's oscillator, through the family's PLL (`Family.pll`) when it
has one and the requested clock differs.
"""
from __future__ import annotations

from amaranth.hdl import Cat, ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from emu.contract.config import AccelConfig

from hdl.fpga import family_of
from hdl.top import Accelerator

__all__ = ["PinHarness", "BoardTop"]


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


class BoardTop(Elaboratable):
    """A board build: the board clock (through the family's PLL, if any, when `clock_mhz` differs from it) clocks a
    `PinHarness(cfg)` whose MISR bit drives the board's first LED. `clock_mhz` is the clock achieved."""

    def __init__(self, cfg: AccelConfig, *, clock_mhz: float | None):
        self._cfg = cfg
        self._want_mhz = clock_mhz
        self.clock_mhz = None

    def elaborate(self, platform):
        m = Module()
        clk = platform.request(platform.default_clk, dir="-")
        board_mhz = platform.default_clk_frequency / 1e6
        family = family_of(platform)
        if self._want_mhz is not None and abs(self._want_mhz - board_mhz) > 1e-6 and family.has_pll:
            clkin = Signal()
            m.submodules.clk_buf = buf = io.Buffer("i", clk)
            m.d.comb += clkin.eq(buf.i)
            self.clock_mhz = family.pll(m, clkin=clkin, clkin_mhz=board_mhz, clkout_mhz=self._want_mhz)
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
