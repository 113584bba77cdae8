"""Running a Program on a backend: chunks a batch of inputs into runs of `program.batch` samples,
writes each chunk into a fresh copy of the memory image, executes, and reads every layer's output back.

A backend is a callable ``(cfg, memory, segments, watchdog) -> (memory, RunResult)`` that raises HardwareFault,
`segments` the program's [(prog_addr, prog_len)] (emu.compiler.program.Program.starts), started one after the
other (between two host ops: those run here, on the memory the backend returns); `golden` is the emulator,
`rtl` (sim/hil.py) the simulated gateware. A backend with a `session(cfg, mem_size)` attribute (rtl) opens
one context for a whole `run_program`, a callable of the same contract: one simulator start for all runs.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import numpy as np

from emu.contract.config import AccelConfig
from emu.contract.faults import FaultCode, HardwareFault
from emu.emulator.dataflow import run_dataflow
from emu.emulator.golden import Golden, RunResult, program_fault, sum_segments
from emu.compiler.program import Program

__all__ = ["RunOutput", "run_program", "run_once", "quantize_input", "check_input", "check_values", "user_shape",
           "InputError", "BACKENDS", "get_backend", "check_config"]


def _golden(cfg, memory, segments, watchdog):
    return memory, run_dataflow(cfg, memory, segments, watchdog=watchdog)


def _golden_steps(cfg, memory, segments, watchdog):
    return memory, Golden(cfg, memory).run_segments(segments, watchdog=watchdog)


def _rtl(simulator: str = "verilator", waves: str | None = None):
    def run(cfg, memory, segments, watchdog):
        from sim.hil import run_rtl  # imported lazily: cocotb is only needed for this backend
        (prog_addr, prog_len), *then = segments
        return run_rtl(cfg, memory, prog_addr, prog_len, then=then, simulator=simulator, waves=waves,
                       watchdog=watchdog)

    def session(cfg: AccelConfig, mem_size: int):
        from sim.hil import RtlSession
        return RtlSession(cfg, mem_size, simulator=simulator)

    if waves is None:       # a waveform is of one run: with waves, each run starts its own simulation
        run.session = session
    return run


BACKENDS = ("golden", "rtl")


def get_backend(name: str, *, exact_steps: bool = False, **opts) -> Callable:
    """The backend `name`; `exact_steps` makes golden execute instruction by instruction (the reference its
    data-flow fast path, emu.emulator.dataflow, is checked against) instead of through the run's plan."""
    if name == "golden":
        return _golden_steps if exact_steps else _golden
    if name == "rtl":
        return _rtl(**opts)
    raise ValueError(f"backend {name!r} is not accepted: expected one of {', '.join(BACKENDS)}")


@dataclasses.dataclass
class RunOutput:
    output: np.ndarray                 # int64 [B, *output shape]
    layers: dict[str, np.ndarray]      # every layer's output tensor, int64, batch first
    cycles: int                        # summed over runs
    macs: int
    runs: int
    batch: int                         # samples per run (the program's); the last run pads unused slots
    network_macs: int = 0              # the network's own MACs over the runs (Program.network_macs); 0: `macs`

    @property
    def cycles_per_slot(self) -> float:
        """Cycles per sample at full runs: what one inference costs, whatever the number of samples."""
        return self.cycles / max(1, self.runs * self.batch)

    def describe(self, samples: int) -> str:
        """One line: samples, runs, cycles per run and per sample, and why those differ."""
        unused = self.runs * self.batch - samples
        note = (f"; its last run computes {unused} padding slot{'s' * (unused != 1)} too" if unused else "")
        return (f"{samples} samples in {self.runs} run{'s' * (self.runs != 1)} of a {self.batch}-sample "
                f"program, {self.cycles} cycles ({self.cycles_per_slot:.0f} per sample{note})")

    def utilization(self, cfg: AccelConfig) -> float:
        """The network's own MACs over what the array could do in the run's cycles."""
        return RunResult(self.cycles, self.network_macs or self.macs, 0).utilization(cfg)

    def issued_utilization(self, cfg: AccelConfig) -> float:
        """The MACs the array issued (the MAC counter: every lane of a tile) over what it could do."""
        return RunResult(self.cycles, self.macs, 0).utilization(cfg)


def check_config(program: Program, hw: AccelConfig) -> None:
    """Refuse a program built for another configuration (the RTL compares the CFG_* registers)."""
    if program.cfg != hw:
        diff = [f"{k}: program {v}, hardware {getattr(hw, k)}"
                for k, v in program.cfg.to_dict().items() if getattr(hw, k) != v]
        raise HardwareFault(FaultCode.CONFIG_MISMATCH, 0, "program built for another configuration ("
                            + "; ".join(diff) + ")")


class InputError(ValueError):
    """A user's input array the program cannot take (shape, empty batch, NaN or infinity)."""


def user_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """A per-sample shape in the program's layout (NHWC maps) -> the model's own: (C, H, W) for "nchw",
    (C*H*W,) for "nchw_flat" (a model that views its flat input as a map), (C, L) for "ncl" (a 1-D map)."""
    if layout in ("nchw", "nchw_flat", "ncl") and len(shape) == 3:
        h, w, c = shape
        return {"nchw": (c, h, w), "nchw_flat": (c * h * w,), "ncl": (c, w)}[layout]
    return tuple(shape)


def check_values(x: np.ndarray, *, what: str = "input") -> np.ndarray:
    """`x` as float32 if it is a non-empty batch of finite numbers, else InputError saying what is wrong."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise InputError(f"{what} holds {x.dtype} values; expected numbers (float32)")
    if x.ndim == 0 or len(x) == 0:
        raise InputError(f"{what} holds no samples (shape {x.shape}); expected at least one, batch first")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        nan = int(np.isnan(x).sum())
        raise InputError(f"{what} holds {nan} NaN and {int(bad.sum()) - nan} infinite values (the first at index "
                         f"{first}, sample {first[0]}); expected finite numbers")
    return x


def check_input(x: np.ndarray, shape: tuple[int, ...], layout: str, *, what: str = "input") -> np.ndarray:
    """`x` as float32 if it is a non-empty batch of finite samples of the model's input shape (`shape` in
    the program's layout), else InputError naming what is wrong in the model's own layout."""
    x = np.asarray(x)
    want = user_shape(shape, layout)
    expected = f"(batch, {', '.join(map(str, want))})"
    if x.ndim < 1 or tuple(x.shape[1:]) != want:
        fits = x.ndim >= 1 and x.size == int(np.prod(want)) * len(x) and x.ndim != len(want) + 1
        hint = f" (reshape it to {expected})" if fits else ""
        raise InputError(f"{what} shape {tuple(x.shape)} is not accepted: expected {expected}, the model's "
                         f"input shape{hint}")
    return check_values(x, what=what)


def quantize_input(program: Program, x: np.ndarray) -> np.ndarray:
    """float32 model input (batch first, in the model's own layout) -> int64 in the program's layout."""
    x = check_input(x, program.input.shape, program.input_layout)
    if program.input_layout != "nc" and len(program.input.shape) == 3:
        h, w, c = program.input.shape       # every map layout is (C, H, W) in torch's order
        x = x.reshape(len(x), c, h, w).transpose(0, 2, 3, 1)
    return program.input.qparams.quantize(x)


def run_once(program: Program, mem: np.ndarray, backend: Callable, watchdog: int = 0
             ) -> tuple[np.ndarray, RunResult]:
    """One run of the program on `mem`: its segments on the backend, each host op (emu.compiler.host) between
    the segments it follows; a fault's pc counts from the program's first instruction."""
    starts, results, done = program.starts(), [], 0
    for step in [*program.host, None]:
        upto = len(starts) if step is None else step.after
        if upto > done:
            try:
                mem, res = backend(program.cfg, mem, starts[done:upto], watchdog)
            except HardwareFault as fault:
                raise program_fault(starts, done, fault) from None
            results.append(res)
            done = upto
        if step is not None:
            step.run(mem, program.batch)
    return mem, sum_segments(results)


def run_program(program: Program, x_int: np.ndarray, *, backend: Callable = _golden, watchdog: int = 0,
                hw: AccelConfig | None = None, progress: Callable | None = None) -> RunOutput:
    """Run integer inputs [B, *input shape] through the program, `program.batch` samples at a time."""
    check_config(program, hw or program.cfg)
    B, pb = len(x_int), program.batch
    regions = program.layer_regions()
    outs = {r.name: np.zeros((B,) + r.shape, np.int64) for r in regions}
    cycles = macs = runs = 0
    starts = range(0, B, pb)
    opened = backend.session(program.cfg, program.image.size) if hasattr(backend, "session") else None
    with opened or contextlib.nullcontext(backend) as run:
        for s in (progress(starts) if progress else starts):
            n = min(pb, B - s)
            mem = program.image.copy()
            region = program.input
            chunk = np.full((pb,) + region.shape, region.qparams.zero_point, np.int64)  # unused slots: zeros
            chunk[:n] = x_int[s:s + n].reshape((n,) + region.shape)
            mem[region.addr:region.addr + pb * region.sample_bytes] = region.pack(chunk)
            mem, res = run_once(program, mem, run, watchdog)
            for r in regions:
                outs[r.name][s:s + n] = r.unpack(mem[r.addr:], n)
            cycles, macs, runs = cycles + res.cycles, macs + res.macs, runs + 1
    return RunOutput(outs[program.output.name], outs, cycles, macs, runs, pb, program.network_macs * runs)
