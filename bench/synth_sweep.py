"""Synthesis sweep: LUT / FF / DSP / BRAM / Fmax / peak GOPS over array sizes and bit widths.

    python bench/synth_sweep.py --device LFE5U-85F-6 --sizes 2,4,8 --bits 8,4,2 --out build/sweep

Each point is one `hdl.fpga.flow.synthesize` run (Yosys + nextpnr, minutes each; 8x8 takes the longest), so the
sweep runs points one after another and keeps finished points in OUT/sweep.json: run it again to resume.
Writes OUT/sweep.md (the table) and OUT/sweep.png (resources and Fmax against MACs). Not run in CI.
Peak GOPS = 2 * rows * cols * min(Fmax, target) / 1000 (one multiply and one add per MAC per cycle).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from emu.contract.config import AccelConfig  # noqa: E402
from hdl.fpga.flow import SynthError, parse_target, synthesize  # noqa: E402



def table(rows: list[dict]) -> str:
    head = "| array | W/A | multipliers | LUT4 | FF | DSP | BRAM | Fmax (MHz) | met | peak GOPS | time (s) |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        c = r["config"]
        lines.append(f"| {c['rows']}x{c['cols']} | W{c['weight_bits']}A{c['act_bits']} | {r['mac_multiplier']} | "
                     f"{r['luts']} | {r['ffs']} | {r['dsps']} | {r['brams']} | {r['fmax_mhz']:.1f} | "
                     f"{'yes' if r['timing_met'] else 'no'} | {r['peak_gops']:.2f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str, device: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for bits in sorted({r["config"]["act_bits"] for r in rows}, reverse=True):
        pts = sorted((r for r in rows if r["config"]["act_bits"] == bits), key=lambda r: r["config"]["rows"])
        macs = [r["config"]["rows"] * r["config"]["cols"] for r in pts]
        label = f"W{bits}A{bits}"
        axes[0].plot(macs, [r["luts"] for r in pts], "o-", label=label)
        axes[1].plot(macs, [r["dsps"] for r in pts], "o-", label=label)
        axes[2].plot(macs, [r["fmax_mhz"] for r in pts], "o-", label=label)
    for ax, title in zip(axes, ("LUT4", "DSP (MULT18X18D)", "Fmax (MHz)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("MACs (rows x cols)")
        ax.set_title(f"{title}, {device}")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="LFE5U-85F-6")
    p.add_argument("--sizes", default="2,4,8", help="square array sizes, comma-separated")
    p.add_argument("--bits", default="8,4,2", help="weight = activation bits, comma-separated")
    p.add_argument("--freq", type=float, default=150.0)
    p.add_argument("--out", default="build/synth_sweep")
    args = p.parse_args()
    target = parse_target(device=args.device)
    os.makedirs(args.out, exist_ok=True)
    store = os.path.join(args.out, "sweep.json")
    done = json.load(open(store)) if os.path.exists(store) else []
    for size in (int(s) for s in args.sizes.split(",")):
        for bits in (int(b) for b in args.bits.split(",")):
            cfg = AccelConfig(rows=size, cols=size, act_bits=bits, weight_bits=bits)
            if any(r["config"] == cfg.to_dict() and r["device"] == target.device for r in done):
                continue
            print(f"{cfg.describe()} on {target.device}", file=sys.stderr)
            try:
                rep = synthesize(cfg, target, os.path.join(args.out, f"{size}x{size}_w{bits}a{bits}"),
                                 freq_mhz=args.freq)
            except SynthError as e:
                print(f"  skipped: {e}", file=sys.stderr)
                continue
            done.append(rep)
            with open(store, "w") as f:
                json.dump(done, f, indent=1)
    rows = sorted((r for r in done if r["device"] == target.device),
                  key=lambda r: (r["config"]["rows"], -r["config"]["act_bits"]))
    text = table(rows)
    with open(os.path.join(args.out, "sweep.md"), "w") as f:
        f.write(f"Target {args.freq:g} MHz on {target.device}\n\n{text}\n")
    print(text)
    if rows:
        plot(rows, os.path.join(args.out, "sweep.png"), target.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
