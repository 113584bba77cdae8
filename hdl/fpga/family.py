"""What an FPGA family gives the gateware and the flow: the `Family` interface, and `Target`, one of its parts.

A new family is one module here, hdl/fpga/<name>.py, holding a `Family` subclass (its primitives, its part
names, its Yosys and nextpnr commands), listed in `hdl.fpga.FAMILIES`. The gateware and the flow name no
family: they ask the family for what it has.

The gateware's side. An elaborate() asks `hdl.fpga.family_of(platform)` (the family of an amaranth-boards
platform, of a `Family` passed as the platform, or `Family()` itself for simulation and Verilog) for:

* registered copies of a value that synthesis keeps apart (`has_replicas`: `replica`, `flops`, `copies`),
  each driving a share of a wide fanout; without them one register stands for the copies;
* block RAMs with an output register (`has_block_ram`: `block_ram`, `block_ram_blocks`), read in
  `hdl.bram.BlockRAM.LATENCY` cycles; without them a `Memory` read port and one register;
* signed multipliers with input, pipeline and output registers (`has_multiplier`: `multiplier`, in
  `multiplier_latency` cycles); without them the same registers around a `*`;
* a PLL for a board build's clock (`has_pll`: `pll`); without one the board clock is used as it is.

Each primitive has a behavioural twin at its caller that it matches cycle for cycle, so the base class, which
offers none of them, builds the same accelerator the families' primitives do.

The flow's side (hdl/fpga/flow.py): the family's part names (`parse_device`, `device_forms`), how many block
RAMs a memory takes (`block_rams`), its Yosys synthesis command, its nextpnr and bitstream packer and their
arguments, and which of nextpnr's (or Yosys's) cell counts the report gives as LUTs, flip-flops, DSPs and
block RAMs.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from amaranth.hdl import Module, Signal, Value

__all__ = ["Family", "Target"]


@dataclasses.dataclass(frozen=True)
class Target:
    """One FPGA part. `luts` are LUT4s, `brams` block RAMs of `bram_bits` bits, `dsps` hard multipliers
    (MULT18X18D on ECP5, SB_MAC16 on iCE40); `family` is the `Family.name`."""
    device: str          # canonical part name, e.g. LFE5U-85F-6
    family: str          # "ecp5" or "ice40"
    nextpnr_args: tuple[str, ...]
    luts: int
    dsps: int
    brams: int
    bram_bits: int
    board: str | None = None


class Family:
    """The interface, and the family with no primitives of its own: what simulation and Verilog elaborate."""

    #: the family's name in `Target.family` and in amaranth-boards' `platform.family`; None for this base
    name: str | None = None

    # ---- the gateware's side ----
    has_replicas = False
    has_block_ram = False
    has_multiplier = False
    has_pll = False
    #: cycles from a `block_ram` read address to its data, and from `multiplier` operands to the product
    block_ram_latency: int | None = None
    multiplier_latency: int | None = None

    def flops(self, m: Module, q: Signal, d: Value, *, name: str, en: Value | None = None,
              reset: bool = False) -> None:
        """`q` <= `d` (cut or zero-extended to q's width) in flip-flops of q's own that synthesis does not merge
        with another register of the same input; only while `en` (1 bit) is set, if given; cleared by the
        domain's reset if `reset`. Its behavioural twin is `m.d.sync += q.eq(d)` (under `with m.If(en)`)."""
        raise NotImplementedError(f"{self!r} has no flip-flops of its own (has_replicas is False)")

    def replica(self, m: Module, value: Value, *, name: str, reset: bool = False) -> Signal:
        """`value` registered (same shape, one cycle later) in flip-flops of its own (`flops`)."""
        raise NotImplementedError(f"{self!r} has no flip-flops of its own (has_replicas is False)")

    def copies(self, m: Module, value: Value, count: int, *, name: str) -> list[Value]:
        """`count` registered copies of `value` (one cycle later), each to drive a share of a wide fanout:
        replicas `name_0` .. `name_{count-1}` with `has_replicas`; else one register `name` stands for them
        all, the same cycle for cycle."""
        if self.has_replicas:
            return [self.replica(m, value, name=f"{name}_{i}") for i in range(count)]
        value = Value.cast(value)
        q = Signal(value.shape(), name=name)
        m.d.sync += q.eq(value)
        return [q] * count

    def block_ram_blocks(self, width: int, depth: int) -> int:
        """Block RAMs side by side in a `width` x `depth` `block_ram` (each wants an address copy of its own)."""
        raise NotImplementedError(f"{self!r} has no block RAM primitive (has_block_ram is False)")

    def block_ram(self, m: Module, *, width: int, depth: int, wr_en, wr_addr, wr_data, rd_addr, rd_data,
                  name: str) -> None:
        """A `depth` x `width` memory with one write and one read port, in the sync domain: the entry at
        `rd_addr` presented in cycle c is on `rd_data` in cycle c + block_ram_latency; a write in cycle c is seen
        by reads from cycle c + 1. `wr_en`, `wr_addr`, `rd_addr` may each be a list of equal copies."""
        raise NotImplementedError(f"{self!r} has no block RAM primitive (has_block_ram is False)")

    def multiplier(self, m: Module, a, b, *, name: str) -> Value:
        """Signed `a` * `b` (len(a) + len(b) bits, exact) in a hard multiplier, `multiplier_latency` cycles on."""
        raise NotImplementedError(f"{self!r} has no hard multiplier (has_multiplier is False)")

    def pll(self, m: Module, *, clkin, clkin_mhz: float, clkout_mhz: float, domain: str = "sync") -> float:
        """Drive clock domain `domain` (created here) from `clkin` through a PLL; returns the MHz achieved."""
        raise NotImplementedError(f"{self!r} has no PLL (has_pll is False)")

    # ---- the flow's side ----
    #: the part names `parse_device` takes, for an error message
    device_forms = ""
    #: the deepest memory `block_rams` accepts (one block RAM deep), or None for any depth
    block_ram_depth_max: int | None = None
    #: a bare device build places `Accelerator` alone, its AXI ports top-level ports without IO buffers;
    #: else inside `hdl.fpga.harness.PinHarness` (a package with too few pins for them)
    out_of_context = False
    #: the pin constraints file nextpnr reads ("top.lpf", "top.pcf"), and the files a bare device build adds
    constraints = ""
    device_files: dict[str, str] = {}
    #: the YoWASP tools, and the variables Amaranth's build system finds them by
    nextpnr = ""
    tool_env: dict[str, str] = {}
    #: argv of the bitstream packer, run in the build folder: nextpnr's output -> top.bit
    pack: tuple[str, ...] = ()

    def parse_device(self, device: str) -> Target | None:
        """The part `device` names (case-insensitive), or None when it is not one of this family's."""
        return None

    def block_rams(self, width: int, depth: int) -> int:
        """Block RAMs a `width` x `depth` memory with one read port takes."""
        raise NotImplementedError(f"{self!r} is not a synthesis target: every family module defines block_rams")

    def yosys_synth(self, top: str, *, dsp: bool, out_of_context: bool) -> str:
        """The Yosys synthesis command for the design `top`, DSP blocks allowed if `dsp`; `out_of_context`
        when `top` is the accelerator itself (no IO pads)."""
        raise NotImplementedError(f"{self!r} is not a synthesis target: every family module defines yosys_synth")

    def nextpnr_args(self, *, board: bool, freq_mhz: float) -> list[str]:
        """nextpnr's arguments after the part's (`Target.nextpnr_args`): placer options, constraints, output;
        for a bare device (`board` False) the clock `freq_mhz` to place for."""
        raise NotImplementedError(f"{self!r} is not a synthesis target: every family module defines nextpnr_args")

    def resources(self, util: dict[str, int], netlist_cells: Callable[[], dict[str, int]]) -> dict[str, int]:
        """The report's `luts`, `ffs`, `dsps`, `brams` (and any counts of the family's own) from nextpnr's
        utilisation `util` (cell type -> used) or from Yosys's netlist (`netlist_cells()`, type -> count)."""
        raise NotImplementedError(f"{self!r} is not a synthesis target: every family module defines resources")

    def __repr__(self):
        return f"<FPGA family {self.name}>" if self.name else "<no FPGA family>"
