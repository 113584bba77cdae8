"""`systola`: compile a quantized torch model for the accelerator, run it, verify it, build its Verilog.

Every user mistake ends in one line on stderr and a non-zero exit; files are written whole or not at all.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from .config import AccelConfig, ConfigError
from .faults import HardwareFault

__all__ = ["main"]

EPILOG = """\
examples:
  systola demo                                   train/load digits MLPs at W8A8 and W4A4, run and cross-check
  systola compile model.pt2 -o out --rows 3 --cols 5
  systola run out --input x.npy --output y.npy   run on the golden emulator (cycles, utilization)
  systola run out --input x.npy --output y.npy --backend rtl --waves run.fst
  systola verify model.pt2 --input x.npy --backends golden,rtl
  systola eval model.pt2 --dataset digits --backend rtl    accuracy of the held-out split on the RTL
  systola disasm out                             list the program's instructions
  systola hdl -o accel.v --rows 8 --cols 8       write the accelerator's Verilog
  systola synth --device LFE5U-85F-6 --out syn    area and Fmax with Yosys + nextpnr (pip-installed)
  systola synth --board ulx3s-85f --out syn       the same, plus a bitstream for the board
"""


class UserError(Exception):
    """A mistake in how systola was called; printed as one line."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from .compiler import CompileError
    from .program import ProgramError
    from .frontend import UnsupportedModelError
    return UserError, ConfigError, CompileError, ProgramError, UnsupportedModelError


# ---- argument helpers ----
def _add_config_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("accelerator configuration (defaults: 8x8, 8-bit)")
    g.add_argument("--config", metavar="FILE.json", help="configuration file (keys as AccelConfig); "
                   "flags below override it")
    g.add_argument("--rows", type=int, help="array rows: the reduction (K) dimension of a tile, 1..64")
    g.add_argument("--cols", type=int, help="array columns: output channels per tile, 1..64")
    g.add_argument("--act-bits", type=int, help="activation width of the hardware, 2..8")
    g.add_argument("--weight-bits", type=int, help="weight width of the hardware, 2..8")
    g.add_argument("--acc-bits", type=int, help="accumulator width, 16..32 (default 32)")
    g.add_argument("--bus-bits", type=int, help="AXI data width: 32, 64 or 128 (default 64)")


def _config(args, base: AccelConfig | None = None) -> AccelConfig:
    values = (base or AccelConfig()).to_dict()
    if getattr(args, "config", None):
        if not os.path.isfile(args.config):
            raise UserError(f"configuration file {args.config!r} does not exist")
        try:
            values = AccelConfig.from_json(args.config).to_dict()
        except ValueError as e:
            if isinstance(e, ConfigError):
                raise
            raise UserError(f"configuration file {args.config!r} is not valid JSON: {e}") from None
    for key in ("rows", "cols", "act_bits", "weight_bits", "acc_bits", "bus_bits"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    return AccelConfig.from_dict(values)


def _load_model(path: str):
    if not os.path.isfile(path):
        raise UserError(f"model file {path!r} does not exist (expected a torch.export.save .pt2 file)")
    from .frontend.lower import load_pt2, lower
    try:
        ep = load_pt2(path)
    except Exception as e:  # torch raises many kinds for a file that is not an exported program
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"model file {path!r} could not be loaded as a torch.export .pt2 file ({first})") from None
    return ep, lower(ep)


def _load_npy(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise UserError(f"input file {path!r} does not exist (expected a .npy array, batch first)")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises several kinds for a file that is not .npy
        raise UserError(f"input file {path!r} is not a .npy array ({e})") from None
    if x.dtype.kind not in "fiu":
        raise UserError(f"input file {path!r} holds {x.dtype} values; expected numbers (float32)")
    return x.astype(np.float32)


def _save_npy(path: str, array: np.ndarray) -> None:
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise UserError(f"cannot write {path!r}: directory {d!r} does not exist")
    fd, tmp = tempfile.mkstemp(suffix=".npy", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _progress(desc: str, always: bool = False):
    def wrap(it):
        from tqdm import tqdm
        return tqdm(it, desc=desc, unit="run", leave=False, disable=len(it) < 4 and not always, file=sys.stderr)
    return wrap


def _backend(name: str, args):
    from .runtime import BACKENDS, get_backend
    if name not in BACKENDS:
        raise UserError(f"backend {name!r} is not accepted: expected one of {', '.join(BACKENDS)}")
    if name == "rtl":
        sim = getattr(args, "sim", "verilator")
        if sim not in ("verilator", "icarus"):
            raise UserError(f"--sim {sim!r} is not accepted: expected verilator or icarus")
        return get_backend("rtl", simulator=sim, waves=getattr(args, "waves", None))
    return get_backend(name)


# ---- commands ----
def cmd_compile(args) -> int:
    from .compiler import compile_graph
    cfg = _config(args)
    _, graph = _load_model(args.model)
    program = compile_graph(graph, cfg, batch=args.batch)
    program.save(args.output)
    print(f"compiled {len(graph.nodes)} layers for {cfg.describe()}: {program.prog_len} instructions, "
          f"{program.image.size} bytes of external memory, {program.batch} samples per run -> {args.output}")
    return 0


def cmd_run(args) -> int:
    from .program import Program
    from .runtime import quantize_input, run_program
    program = Program.load(args.program)
    hw = _config(args, base=program.cfg)
    x = _load_npy(args.input)
    try:
        xq = quantize_input(program, x)
    except ValueError as e:
        raise UserError(str(e)) from None
    out = run_program(program, xq, backend=_backend(args.backend, args), hw=hw, watchdog=args.watchdog,
                      progress=_progress(f"{args.backend}"))
    y = out.output if args.raw else program.output.qparams.dequantize(out.output)
    _save_npy(args.output, y.astype(np.int64 if args.raw else np.float32))
    print(f"{args.backend}: {len(x)} samples in {out.runs} runs, {out.cycles} cycles "
          f"({out.cycles / len(x):.0f} per sample), array utilization {100 * out.utilization(program.cfg):.1f} %")
    return 0


def cmd_verify(args) -> int:
    from .verify import verify
    cfg = _config(args)
    ep, graph = _load_model(args.model)
    x = _load_npy(args.input)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends:
        raise UserError("--backends is empty: expected a comma-separated list of golden, rtl")
    runners = {b: _backend(b, args) for b in backends}
    ok = verify(ep, graph, cfg, x, runners, batch=args.batch, out=sys.stdout)
    return 0 if ok else 1


def cmd_eval(args) -> int:
    from .evaluate import DATASETS, evaluate, load_dataset
    if args.dataset not in DATASETS:
        raise UserError(f"--dataset {args.dataset!r} is not accepted: expected one of {', '.join(DATASETS)}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit} is not accepted: expected a positive number of samples")
    cfg = _config(args)
    ep, graph = _load_model(args.model)
    x, y = load_dataset(args.dataset, graph)
    x, y = x[:args.limit], y[:args.limit]
    r = evaluate(ep, graph, cfg, x, y, backend=_backend(args.backend, args), batch=args.batch,
                 progress=_progress(f"{args.backend} {os.path.basename(args.model)}", always=True))
    print(f"{os.path.basename(args.model)} on {args.dataset}: {r.samples} held-out samples, {cfg.describe()}")
    print(f"  {args.backend:7s} accuracy {100 * r.accuracy:6.2f} %   every layer "
          f"{'equals' if r.reference_equal else 'DIFFERS FROM'} the integer reference")
    print(f"  torch   accuracy {100 * r.torch_accuracy:6.2f} %   (the converted Q/DQ model in float)")
    print(f"  {r.cycles_per_inference:.0f} cycles per inference, array utilization {100 * r.utilization:.1f} %, "
          f"{r.instructions} instructions, {r.batch} samples per run")
    return 0 if r.reference_equal else 1


def cmd_disasm(args) -> int:
    from .program import Program
    program = Program.load(args.program)
    for pc, instr in enumerate(program.instructions):
        print(f"{pc:5d}  {instr}")
    return 0


def cmd_hdl(args) -> int:
    cfg = _config(args)
    from hdl.top import generate_verilog
    text = generate_verilog(cfg)
    d = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(d):
        raise UserError(f"cannot write {args.output!r}: directory {d!r} does not exist")
    with tempfile.NamedTemporaryFile("w", dir=d, delete=False, suffix=".v") as f:
        f.write(text)
    os.replace(f.name, args.output)
    print(f"wrote {args.output}: {cfg.describe()}, {len(text.splitlines())} lines of Verilog")
    return 0


def cmd_synth(args) -> int:
    from . import synth
    cfg = _config(args)
    try:
        target = synth.parse_target(board=args.board, device=args.device)
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise UserError(f"--out {args.out!r} is a file; expected a directory (created if missing)")
        parent = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(parent):
            raise UserError(f"cannot write {args.out!r}: directory {parent!r} does not exist")
        report = synth.synthesize(cfg, target, args.out, freq_mhz=args.freq, seed=args.seed)
    except synth.SynthError as e:
        raise UserError(str(e)) from None
    except synth.ToolError as e:
        print(f"systola: {e}", file=sys.stderr)
        return 1
    print(f"{cfg.describe()} on {report['device']}:")
    print(synth.format_report(report))
    print(f"report: {os.path.join(args.out, 'report.json')}")
    if report["bitstream"] and not report["timing_met"]:
        print(f"warning: the bitstream clocks the accelerator at {report['target_mhz']:g} MHz, above its Fmax; "
              f"rebuild with --freq {int(report['fmax_mhz'])} or lower before loading it", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(quick=args.quick, rtl=args.rtl)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="systola", description="Hardware-in-the-loop emulator for low-precision "
                                "systolic neural-network accelerators.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compile", help="compile a quantized .pt2 model into a program directory")
    c.add_argument("model", help="torch.export.save file of a PT2E-converted model")
    c.add_argument("-o", "--output", required=True, help="program directory to write")
    c.add_argument("--batch", type=int, default=None, help="samples per run of the program (default: the largest of 64, 32, ... 1 whose program fits the instruction memory)")
    _add_config_flags(c)
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="run a compiled program on an input batch")
    r.add_argument("program", help="directory written by `systola compile`")
    r.add_argument("--input", required=True, help=".npy float32 input, batch first, the model's input shape")
    r.add_argument("--output", required=True, help=".npy to write: dequantized float32 (or integers, --raw)")
    r.add_argument("--raw", action="store_true", help="write the output's integers instead of floats")
    r.add_argument("--backend", default="golden", help="golden (emulator) or rtl (simulated gateware)")
    r.add_argument("--sim", default="verilator", help="RTL simulator: verilator (default) or icarus")
    r.add_argument("--waves", help="write the RTL waveform of the last run (the failing one, if any) to "
                   "this FST file")
    r.add_argument("--watchdog", type=int, default=0, help="cycle limit of each run (0: none)")
    _add_config_flags(r)
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verify", help="cross-check backends against the integer reference and torch, layer by layer")
    v.add_argument("model")
    v.add_argument("--input", required=True, help=".npy float32 input, batch first")
    v.add_argument("--backends", default="golden", help="comma-separated: golden,rtl (default golden)")
    v.add_argument("--batch", type=int, default=None, help="samples per run of the program (default: as large as fits, up to 64)")
    v.add_argument("--sim", default="verilator", help="RTL simulator: verilator or icarus")
    _add_config_flags(v)
    v.set_defaults(func=cmd_verify)

    e = sub.add_parser("eval", help="accuracy over a held-out split on the accelerator (golden or RTL)")
    e.add_argument("model", help="torch.export.save file of a PT2E-converted model")
    e.add_argument("--dataset", default="digits", help="held-out split to score: digits (sklearn's bundled "
                   "8x8 digits, the test quarter)")
    e.add_argument("--backend", default="golden", help="golden (emulator) or rtl (simulated gateware)")
    e.add_argument("--sim", default="verilator", help="RTL simulator: verilator (default) or icarus")
    e.add_argument("--limit", type=int, help="score only the first N samples")
    e.add_argument("--batch", type=int, default=None, help="samples per run (default: as large as fits)")
    _add_config_flags(e)
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("disasm", help="list a compiled program's instructions")
    d.add_argument("program")
    d.set_defaults(func=cmd_disasm)

    h = sub.add_parser("hdl", help="write the accelerator's Verilog for a configuration")
    h.add_argument("-o", "--output", required=True, help="Verilog file to write")
    _add_config_flags(h)
    h.set_defaults(func=cmd_hdl)

    s = sub.add_parser("synth", help="synthesize, place and route with YoWASP Yosys/nextpnr: area, Fmax, bitstream")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--board", help="ulx3s-85f, ulx3s-45f, ulx3s-25f, orangecrab-25f, orangecrab-85f, icebreaker")
    where.add_argument("--device", help="part for area and timing only, e.g. LFE5U-85F-6, iCE40UP5K-SG48")
    s.add_argument("--out", required=True, help="directory for report.json, the bitstream and build files")
    s.add_argument("--freq", type=float, default=150.0, help="target clock in MHz (default 150)")
    s.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    _add_config_flags(s)
    s.set_defaults(func=cmd_synth)

    m = sub.add_parser("demo", help="digits MLP at W8A8 and W4A4: accuracy, cycles, utilization")
    m.add_argument("--quick", action="store_true", help="fewer samples")
    m.add_argument("--rtl", action="store_true", help="also run a sample on the RTL (Verilator)")
    m.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as e:
        print(f"systola: error: {e}", file=sys.stderr)
        return 2
    except (HardwareFault, TimeoutError) as e:  # TimeoutError: sim.hil's cycle limit on a hung design
        print(f"systola: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("systola: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
