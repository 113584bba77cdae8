"""Hardware-in-the-loop: run a program image on the RTL, with Golden's interface and results.

`run_rtl` builds (or reuses) the simulation of the configuration, writes the memory image and a job JSON
into a run directory, runs the cocotb test module sim/cocotb_hil.py in a simulator subprocess and reads
back the memory and the registers. The testbench reads the CFG_* registers over AXI4-Lite and refuses to
start a program built for another configuration (HardwareFault CONFIG_MISMATCH at pc 0).

The HDL memory model holds ceil(size / bus_bytes) bus words: a memory whose size is not a multiple of
the bus width answers the bytes of its last, partial word instead of a bus error (keep sizes aligned).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from emu.contract import regs
from emu.contract.config import AccelConfig
from emu.contract.faults import FaultCode, HardwareFault
from emu.emulator.golden import RunResult, program_fault, sum_segments
from emu.contract.isa import INSTR_BYTES, Opcode, decode_program, opcode_of

from sim.runner import CLOCK_NS, MEM_WORDS_MAX, REPO, build

__all__ = ["run_rtl", "simulate", "RtlSession", "HilRun", "SimulationTimeout", "DEFAULT_MAX_CYCLES", "write_words",
           "read_words"]

#: The testbench's cycle limit per segment, a guard against a hung simulation: with hardware loops one
#: segment of ResNet-18 at 224x224 runs ~20-30 M cycles; 200 M cycles are tens of minutes of Verilator.
DEFAULT_MAX_CYCLES = 200_000_000
_run_ids = itertools.count()


class SimulationTimeout(TimeoutError):
    """The simulation ran past its cycle limit without the accelerator raising done (a hung design)."""


def write_words(path: Path, mem: np.ndarray, bus_bytes: int) -> None:
    """$readmemh image of `mem`: one bus word a line, most significant byte first, word 0 first."""
    words = mem.reshape(-1, bus_bytes)[:, ::-1].tobytes().hex()
    n = 2 * bus_bytes
    path.write_text("\n".join(words[i:i + n] for i in range(0, len(words), n)) + "\n")


def read_words(path: Path, size: int, bus_bytes: int) -> np.ndarray:
    """The first `size` bytes of a $writememh image written by the memory model."""
    words = [ln.split("//")[0].strip() for ln in path.read_text().splitlines()]
    words = [w for w in words if w and not w.startswith("@")]
    raw = bytes.fromhex("".join(w.rjust(2 * bus_bytes, "0") for w in words))
    return np.frombuffer(raw, np.uint8).reshape(-1, bus_bytes)[:, ::-1].reshape(-1)[:size].copy()


def _instructions(memory: np.ndarray, prog_addr: int, prog_len: int) -> int:
    for pc, word in enumerate(decode_program(memory[prog_addr:prog_addr + INSTR_BYTES * prog_len])):
        if opcode_of(word) == Opcode.END:
            return pc + 1
    return prog_len


@dataclasses.dataclass
class HilRun:
    """One run on the RTL: the memory after it, Golden's RunResult, and where the wall time went."""
    memory: np.ndarray
    result: RunResult
    run_seconds: float     # CTRL write to done, inside the simulator (the accelerator's stretch)
    total_seconds: float   # image write, simulator start, configuration, run, dump and read-back


def run_rtl(cfg: AccelConfig, memory: np.ndarray, prog_addr: int, prog_len: int, **kw) -> tuple[np.ndarray, RunResult]:
    """Run the program at `prog_addr` (`prog_len` instructions, and the runs `then` after it) on the RTL;
    see `simulate` for the options.

    Returns (memory after the run, RunResult(cycles, macs, instructions)), the backend contract of
    emu.runtime.run; raises HardwareFault like emu.emulator.golden.Golden.run, or SimulationTimeout.
    """
    run = simulate(cfg, memory, prog_addr, prog_len, **kw)
    return run.memory, run.result


def simulate(cfg: AccelConfig, memory: np.ndarray, prog_addr: int, prog_len: int, *,
             simulator: str = "verilator", waves: str | os.PathLike | None = None, watchdog: int = 0,
             memory_model: str = "hdl", hardware: AccelConfig | None = None,
             max_cycles: int = DEFAULT_MAX_CYCLES, backpressure: bool = False, seed: int = 1,
             runs: int = 1, then: list[tuple[int, int]] = ()) -> HilRun:
    """Run the program at `prog_addr` (`prog_len` instructions) on the RTL of `hardware` (default `cfg`).

    Raises HardwareFault like emu.emulator.golden.Golden.run, or SimulationTimeout after `max_cycles` cycles
    without done (the testbench's own watchdog, for a design that hangs).
    memory_model: "hdl" (fixed-latency Verilog memory, cycle-exact with emu.contract.timing) or "axi"
    (cocotbext-axi AxiRam; `backpressure` adds random pauses on all five channels; cycles then differ).
    waves: path of an FST waveform to write (the design is built with tracing for it); it holds the
    whole run, and is written also when the run faults or times out.
    runs: start the program this many times, each time after the previous run's done, without a reset in
    between (what is left in the fetch pipeline from one run must not reach the next). Every run must report
    the same STATUS, fault, pc, CYCLES and MACS as the first, else RuntimeError; the memory is the last run's.
    then: further (prog_addr, prog_len) runs of the same program (emu.compiler.program.Program.starts), each
    started once the one before is done, in the same simulation; results are summed and a fault's pc is
    counted from prog_addr (emu.emulator.golden.program_fault), as Golden.run_segments does.
    """
    if memory.dtype != np.uint8 or memory.ndim != 1:
        raise TypeError("memory must be a 1-D uint8 array")
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs={runs!r} is not accepted: expected an integer >= 1")
    segments = [(int(prog_addr), int(prog_len))] + [(int(a), int(n)) for a, n in then]
    if runs > 1 and len(segments) > 1:
        raise ValueError("runs > 1 repeats one program; it does not take `then`")
    t_begin = time.perf_counter()
    hw = hardware or cfg
    b = build(hw, simulator=simulator, memory_model=memory_model, waves=waves is not None)
    bus = hw.bus_bytes
    if memory_model == "hdl" and memory.size > MEM_WORDS_MAX * bus:
        raise ValueError(f"memory of {memory.size} bytes exceeds the HDL memory model's "
                         f"{MEM_WORDS_MAX * bus} bytes")
    run_dir = b.build_dir / "runs" / f"{os.getpid()}-{next(_run_ids)}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    padded = np.zeros(-(-memory.size // bus) * bus, np.uint8)
    padded[:memory.size] = memory
    job = {
        "memory_model": memory_model, "segments": segments, "watchdog": watchdog,
        "max_cycles": max_cycles, "mem_size": int(padded.size), "backpressure": backpressure, "seed": seed,
        "runs": runs,
        "clock_ns": CLOCK_NS, "expect_cfg": regs.config_registers(cfg), "result": str(run_dir / "result.json"),
        "mem_in_raw": str(run_dir / "mem_in.raw"), "mem_out_raw": str(run_dir / "mem_out.raw"),
    }
    plusargs, test_args = [], []
    if memory_model == "hdl":
        write_words(run_dir / "mem_in.hex", padded, bus)
        plusargs = [f"+MEM_IN={run_dir / 'mem_in.hex'}", f"+MEM_OUT={run_dir / 'mem_out.hex'}",
                    f"+MEM_SIZE={padded.size}"]
    else:
        (run_dir / "mem_in.raw").write_text(padded.tobytes().hex())
    if waves is not None:
        waves = Path(waves).resolve()
        if simulator == "verilator":
            test_args = ["--trace-file", str(waves)]
        else:
            plusargs.append(f"+dumpfile_path={waves}")
    (run_dir / "job.json").write_text(json.dumps(job))

    from cocotb_tools.runner import get_runner
    runner = get_runner(simulator)
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    runner.test(test_module="sim.cocotb_hil", hdl_toplevel=b.toplevel, hdl_toplevel_lang="verilog",
                build_dir=b.build_dir, test_dir=run_dir, plusargs=plusargs, test_args=test_args,
                waves=waves is not None,
                extra_env={"SYSTOLA_HIL_JOB": str(run_dir / "job.json"), "PYTHONPATH": pythonpath,
                           "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")},
                log_file=run_dir / "sim.log")
    result_path = run_dir / "result.json"
    if not result_path.exists():
        log = (run_dir / "sim.log").read_text()[-4000:] if (run_dir / "sim.log").exists() else ""
        raise RuntimeError(f"the RTL simulation in {run_dir} produced no result:\n{log}")
    result = json.loads(result_path.read_text())
    waves_note = f"; waves in {waves}" if waves is not None else ""
    try:
        _check_ended(result, job["expect_cfg"], max_cycles, f"run directory {run_dir}{waves_note}")
    except HardwareFault:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    for i, run in enumerate(result["runs"][1:], 2):
        if runs > 1 and run != result["runs"][0]:
            raise RuntimeError(f"run {i} of {runs} on the RTL reported {run}, run 1 {result['runs'][0]} "
                               f"(run directory {run_dir}{waves_note})")
    if memory_model == "hdl":
        after = read_words(run_dir / "mem_out.hex", memory.size, bus)
    else:
        after = np.frombuffer(bytes.fromhex((run_dir / "mem_out.raw").read_text()), np.uint8)[:memory.size].copy()
    shutil.rmtree(run_dir, ignore_errors=True)
    total = _outcome(result, segments, memory, waves_note, fault_index=len(result["runs"]) - 1 if runs == 1 else 0)
    return HilRun(after, total, result["run_seconds"], time.perf_counter() - t_begin)


def _check_ended(result: dict, expect_cfg: dict, max_cycles: int, where: str) -> None:
    """Raise what ended a testbench without a memory dump: its cycle limit, or a configuration mismatch."""
    if result["timeout"]:
        raise SimulationTimeout(f"the RTL simulation ran {max_cycles} cycles without done (the testbench's "
                                f"cycle limit; {where})")
    if result.get("code") == FaultCode.CONFIG_MISMATCH:
        raise HardwareFault(FaultCode.CONFIG_MISMATCH, 0, f"hardware reports {result['hw_cfg']}, program built "
                            f"for {expect_cfg}")


def _outcome(result: dict, segments: list[tuple[int, int]], memory: np.ndarray, waves_note: str = "", *,
             fault_index: int) -> RunResult:
    """The RunResult of the segments' runs, or the fault of run `fault_index` with its pc counted from the
    first segment's first instruction, as Golden.run_segments does."""
    code = FaultCode(result["code"])
    if code != FaultCode.NONE:
        fault = HardwareFault(code, result["pc"], f"RTL status {result['status']:#x}{waves_note}")
        raise program_fault(segments, fault_index, fault)
    return sum_segments([RunResult(cycles=r["cycles"], macs=r["macs"], instructions=_instructions(memory, a, n))
                         for r, (a, n) in zip(result["runs"], segments)])


class RtlSession:
    """One simulator start serving many runs on memories of one size (the chunks of a batch): the HDL memory
    model reloads each run's image and the accelerator is reset between runs; the buffers keep their
    contents, as on the hardware. Use as a context manager; calling it runs one memory, with the backend
    contract of emu.runtime.run (memory after, RunResult; raises HardwareFault or SimulationTimeout). A run
    that times out ends the session, and its folder (with sim.log) is kept."""

    def __init__(self, cfg: AccelConfig, mem_size: int, *, simulator: str = "verilator",
                 hardware: AccelConfig | None = None, max_cycles: int = DEFAULT_MAX_CYCLES):
        self.cfg, self.hw, self.simulator, self.max_cycles = cfg, hardware or cfg, simulator, max_cycles
        self.bus = self.hw.bus_bytes
        self.padded = -(-int(mem_size) // self.bus) * self.bus
        if self.padded > MEM_WORDS_MAX * self.bus:
            raise ValueError(f"memory of {mem_size} bytes exceeds the HDL memory model's {MEM_WORDS_MAX * self.bus} "
                             "bytes")
        self.runs = 0
        self.sim_seconds = 0.0     # summed over runs: CTRL write to done, inside the simulator
        self.thread = None

    def __enter__(self) -> "RtlSession":
        import threading
        b = build(self.hw, simulator=self.simulator, memory_model="hdl")
        self.dir = b.build_dir / "runs" / f"{os.getpid()}-{next(_run_ids)}-session"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.expect_cfg = regs.config_registers(self.cfg)
        job = {"memory_model": "hdl", "session": True, "max_cycles": self.max_cycles, "clock_ns": CLOCK_NS,
               "mem_size": self.padded, "expect_cfg": self.expect_cfg, "result": str(self.dir / "result.json")}
        (self.dir / "job.json").write_text(json.dumps(job))
        write_words(self.dir / "mem_in.hex", np.zeros(self.padded, np.uint8), self.bus)
        plusargs = [f"+MEM_IN={self.dir / 'mem_in.hex'}", f"+MEM_OUT={self.dir / 'mem_out.hex'}",
                    f"+MEM_SIZE={self.padded}"]
        from cocotb_tools.runner import get_runner
        runner = get_runner(self.simulator)
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.error: list[BaseException] = []

        def simulate_all():
            try:
                runner.test(test_module="sim.cocotb_hil", hdl_toplevel=b.toplevel, hdl_toplevel_lang="verilog",
                            build_dir=b.build_dir, test_dir=self.dir, plusargs=plusargs,
                            extra_env={"SYSTOLA_HIL_JOB": str(self.dir / "job.json"), "PYTHONPATH": pythonpath,
                                       "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")},
                            log_file=self.dir / "sim.log")
            except BaseException as e:      # reported by the host side's next wait
                self.error.append(e)

        self.thread = threading.Thread(target=simulate_all, daemon=True)
        self.thread.start()
        try:
            header = self._wait("ready.json")
        except RuntimeError as e:
            self.__exit__(type(e), e, None)
            raise
        if "code" in header:        # the configuration check failed: the testbench has ended
            self.__exit__(None, None, None)
            raise HardwareFault(FaultCode.CONFIG_MISMATCH, 0, f"hardware reports {header['hw_cfg']}, program "
                                f"built for {self.expect_cfg}")
        return self

    def _wait(self, name: str) -> dict:
        path = self.dir / name
        while not path.exists():
            if not self.thread.is_alive() and not path.exists():
                log = (self.dir / "sim.log").read_text()[-4000:] if (self.dir / "sim.log").exists() else ""
                raise RuntimeError(f"the RTL simulation in {self.dir} ended without {name} "
                                   f"({self.error[0] if self.error else 'no error'}):\n{log}")
            time.sleep(0.002)
        return json.loads(path.read_text())

    def _command(self, cmd: dict) -> None:
        tmp = self.dir / f"cmd-{self.runs}.json.tmp"
        tmp.write_text(json.dumps(cmd))
        os.replace(tmp, self.dir / f"cmd-{self.runs}.json")

    def __call__(self, cfg: AccelConfig, memory: np.ndarray, segments: list[tuple[int, int]], watchdog: int = 0
                 ) -> tuple[np.ndarray, RunResult]:
        if memory.dtype != np.uint8 or memory.ndim != 1 or -(-memory.size // self.bus) * self.bus != self.padded:
            raise ValueError(f"this session runs uint8 memories of {self.padded} bytes, not {memory.shape}")
        padded = np.zeros(self.padded, np.uint8)
        padded[:memory.size] = memory
        write_words(self.dir / "mem_in.hex", padded, self.bus)
        segments = [(int(a), int(n)) for a, n in segments]
        self._command({"segments": segments, "watchdog": int(watchdog)})
        result = self._wait(f"result-{self.runs}.json")
        self.runs += 1
        self.sim_seconds += result.get("run_seconds", 0.0)
        _check_ended(result, self.expect_cfg, self.max_cycles, f"session in {self.dir}")
        after = read_words(self.dir / "mem_out.hex", memory.size, self.bus)
        return after, _outcome(result, segments, memory, fault_index=len(result["runs"]) - 1)

    def __exit__(self, kind, *_) -> None:
        if self.thread is not None and self.thread.is_alive():
            self._command({"stop": True})
            self.thread.join()
        if kind is None or issubclass(kind, HardwareFault):     # else the message names the folder
            shutil.rmtree(self.dir, ignore_errors=True)
