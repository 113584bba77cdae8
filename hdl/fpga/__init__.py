"""The FPGA side of Systola: the families the gateware is built for, and the flow that builds it with the open
toolchains pip installs (YoWASP Yosys and nextpnr).

* family.py: `Family`, what the gateware and the flow ask of an FPGA family, and `Target`, one part;
* ecp5.py, ice40.py: one module per family, each a `Family` subclass, listed in FAMILIES below;
* harness.py: the pin harness and board top a synthesis builds around the accelerator;
* flow.py: Yosys, nextpnr and the packer, run for a target, and the report.

A new family is a module beside ecp5.py and one entry in FAMILIES.
"""
from __future__ import annotations

from hdl.fpga.ecp5 import ECP5
from hdl.fpga.family import Family, Target
from hdl.fpga.ice40 import ICE40

__all__ = ["FAMILIES", "Family", "Target", "family_of"]

#: name -> family, in the order `--device` forms are listed
FAMILIES: dict[str, Family] = {f.name: f for f in (ECP5(), ICE40())}
_NONE = Family()


def family_of(platform) -> Family:
    """The family an elaborate() builds for: `platform` itself when it is a `Family` (the flow's bare device
    builds), the family named by its `family` attribute (amaranth-boards platforms: "ecp5", "iCE40"), else
    `Family()`, which has no primitives (simulation, Verilog, a family not listed here)."""
    if isinstance(platform, Family):
        return platform
    return FAMILIES.get(str(getattr(platform, "family", "")).lower(), _NONE)
