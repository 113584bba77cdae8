"""The cocotb side of a hardware-in-the-loop run (runs inside the simulator process).

Reads its job from the JSON named by $SYSTOLA_HIL_JOB. Python stays out of the per-clock loop: with the HDL
memory model the clock comes from the HDL wrapper, and the only per-run traffic is a few AXI4-Lite register
accesses, one wait for `done` (bounded by a cycle limit) and one memory dump.

Two kinds of job: one run, whose result JSON is written next to the job; or a session (sim/hil.py
RtlSession, HDL memory model), which serves run after run in one simulator start: it writes `ready.json`,
then for each `cmd-<k>.json` the host writes (after the memory image) it reloads the memory, resets the
accelerator, runs the segments, dumps the memory and writes `result-<k>.json`, until a command says stop.
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer

from emu.contract import regs
from emu.contract.faults import FaultCode

#: how often a session looks for the host's next command; the simulator is paused while it waits
_POLL_SECONDS = 0.002


async def _reset(dut) -> None:
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)


async def _run_segments(dut, axil, segments, *, max_cycles: int, clock_ns: int, stop_at_fault: bool) -> dict:
    """For each (prog_addr, prog_len): PROG_ADDR/PROG_LEN and the CTRL write, then the one wait on done (or
    on the cycle limit). Every run's registers are kept; a fault ends the list when `stop_at_fault`."""
    result = {"timeout": False, "runs": []}
    run_start = time.perf_counter()

    async def rd(name):
        return await axil.read_dword(regs.OFFSET[name])

    for prog_addr, prog_len in segments:
        await axil.write_dword(regs.OFFSET["PROG_ADDR"], prog_addr)
        await axil.write_dword(regs.OFFSET["PROG_LEN"], prog_len)
        await axil.write_dword(regs.OFFSET["CTRL"], 1)
        start_ns = cocotb.utils.get_sim_time("ns")
        limit = Timer(max_cycles * clock_ns, unit="ns")
        fired = await First(RisingEdge(dut.done), limit)
        result["run_seconds"] = time.perf_counter() - run_start
        result["sim_cycles"] = int((cocotb.utils.get_sim_time("ns") - start_ns) // clock_ns)
        if fired is limit:
            result["timeout"] = True
            return result
        await RisingEdge(dut.clk)
        run = {"status": await rd("STATUS"), "code": await rd("ERROR_CODE"), "pc": await rd("ERROR_PC"),
               "cycles": await rd("CYCLES_LO") | (await rd("CYCLES_HI")) << 32,
               "macs": await rd("MACS_LO") | (await rd("MACS_HI")) << 32}
        result["runs"].append(run)
        result.update(run)
        if run["code"] != int(FaultCode.NONE) and stop_at_fault:
            break
    return result


async def _dump(dut) -> None:
    dut.dump.value = 1
    await RisingEdge(dut.clk)
    dut.dump.value = 0
    await RisingEdge(dut.clk)


def _write(path, value) -> None:
    """Write JSON so that a reader polling for `path` never sees it half-written."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def _wait_for(path: Path) -> dict:
    while not path.exists():
        time.sleep(_POLL_SECONDS)
    return json.loads(path.read_text())


@cocotb.test()
async def run_program(dut):
    job = json.load(open(os.environ["SYSTOLA_HIL_JOB"]))
    clock_ns = job["clock_ns"]
    ram = None
    if job["memory_model"] == "axi":
        from cocotb.clock import Clock
        from cocotbext.axi import AxiBus, AxiRam
        cocotb.start_soon(Clock(dut.clk, clock_ns, unit="ns").start())
        ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=job["mem_size"])
        ram.write(0, bytes.fromhex(open(job["mem_in_raw"]).read()))
        if job.get("backpressure"):
            rng = random.Random(job.get("seed", 1))

            def pauses():
                while True:
                    yield rng.random() < 0.3
            for ch in (ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
                       ram.read_if.ar_channel, ram.read_if.r_channel):
                ch.set_pause_generator(pauses())
    else:
        dut.load.value = 0
        dut.dump.value = 0
    from cocotbext.axi import AxiLiteBus, AxiLiteMaster
    axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    await _reset(dut)

    magic = await axil.read_dword(regs.OFFSET["MAGIC"])
    hw = {name: await axil.read_dword(regs.OFFSET[name]) for name in job["expect_cfg"]}
    header = {"magic": magic, "hw_cfg": hw, "timeout": False}
    if magic != regs.MAGIC or hw != job["expect_cfg"]:
        header.update(code=int(FaultCode.CONFIG_MISMATCH), pc=0)
        _write(job["result"], header)
        return
    limits = {"max_cycles": job["max_cycles"], "clock_ns": clock_ns}
    if not job.get("session"):
        await axil.write_dword(regs.OFFSET["WATCHDOG"], job["watchdog"])
        # a program of several segments starts each after the one before is done and stops at a fault;
        # with job["runs"] > 1 its one run is started again after each done
        segments = job["segments"] * job.get("runs", 1)
        result = await _run_segments(dut, axil, segments, stop_at_fault=len(job["segments"]) > 1, **limits)
        if not result["timeout"]:
            if ram is not None:
                open(job["mem_out_raw"], "w").write(ram.read(0, job["mem_size"]).hex())
            else:
                await _dump(dut)
        _write(job["result"], {**header, **result})
        return
    where = Path(job["result"]).parent
    _write(where / "ready.json", header)
    for k in range(1 << 62):
        cmd = _wait_for(where / f"cmd-{k}.json")
        if cmd.get("stop"):
            return
        dut.load.value = 1               # the host wrote this run's memory image to +MEM_IN
        await RisingEdge(dut.clk)
        dut.load.value = 0
        await _reset(dut)
        await axil.write_dword(regs.OFFSET["WATCHDOG"], cmd["watchdog"])
        result = await _run_segments(dut, axil, cmd["segments"], stop_at_fault=True, **limits)
        if not result["timeout"]:
            await _dump(dut)
        _write(where / f"result-{k}.json", {**header, **result})
        if result["timeout"]:
            return
