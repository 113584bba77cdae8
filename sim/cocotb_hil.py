"""The cocotb side of a hardware-in-the-loop run (runs inside the simulator process).

Reads its job from the JSON named by $SYSTOLA_HIL_JOB and writes a result JSON next to it. Python stays
out of the per-clock loop: with the HDL memory model the clock comes from the HDL wrapper, and the only
per-run traffic is a few AXI4-Lite register accesses, one wait for `done` (bounded by a cycle limit)
and one memory dump.
"""
from __future__ import annotations

import json
import os
import random
import time

import cocotb
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer

from emu.contract import regs
from emu.contract.faults import FaultCode


@cocotb.test()
async def run_program(dut):
    job = json.load(open(os.environ["SYSTOLA_HIL_JOB"]))
    clock_ns = job["clock_ns"]
    result = {"timeout": False}
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
        dut.dump.value = 0
    from cocotbext.axi import AxiLiteBus, AxiLiteMaster
    axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)

    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)

    async def rd(name):
        return await axil.read_dword(regs.OFFSET[name])

    result["magic"] = await rd("MAGIC")
    hw = {name: await rd(name) for name in job["expect_cfg"]}
    result["hw_cfg"] = hw
    if result["magic"] != regs.MAGIC or hw != job["expect_cfg"]:
        result.update(code=int(FaultCode.CONFIG_MISMATCH), pc=0)
        json.dump(result, open(job["result"], "w"))
        return

    await axil.write_dword(regs.OFFSET["WATCHDOG"], job["watchdog"])
    # the accelerator's stretch: for each run, PROG_ADDR/PROG_LEN and the CTRL write, then the one wait on
    # done (or on the cycle limit). A program of several segments (job["segments"]) starts each after the one
    # before is done and stops at a fault; with job["runs"] > 1 its one run is started again after each
    # done. Every run's registers are kept.
    result["runs"] = []
    run_start = time.perf_counter()
    segments = job["segments"] * job.get("runs", 1)
    for prog_addr, prog_len in segments:
        await axil.write_dword(regs.OFFSET["PROG_ADDR"], prog_addr)
        await axil.write_dword(regs.OFFSET["PROG_LEN"], prog_len)
        await axil.write_dword(regs.OFFSET["CTRL"], 1)
        start_ns = cocotb.utils.get_sim_time("ns")
        limit = Timer(job["max_cycles"] * clock_ns, unit="ns")
        fired = await First(RisingEdge(dut.done), limit)
        result["run_seconds"] = time.perf_counter() - run_start
        result["sim_cycles"] = int((cocotb.utils.get_sim_time("ns") - start_ns) // clock_ns)
        if fired is limit:
            result["timeout"] = True
            json.dump(result, open(job["result"], "w"))
            return
        await RisingEdge(dut.clk)
        run = {"status": await rd("STATUS"), "code": await rd("ERROR_CODE"), "pc": await rd("ERROR_PC"),
               "cycles": await rd("CYCLES_LO") | (await rd("CYCLES_HI")) << 32,
               "macs": await rd("MACS_LO") | (await rd("MACS_HI")) << 32}
        result["runs"].append(run)
        result.update(run)
        if run["code"] != int(FaultCode.NONE) and len(job["segments"]) > 1:
            break
    if ram is not None:
        open(job["mem_out_raw"], "w").write(ram.read(0, job["mem_size"]).hex())
    else:
        dut.dump.value = 1
        await RisingEdge(dut.clk)
        dut.dump.value = 0
        await RisingEdge(dut.clk)
    json.dump(result, open(job["result"], "w"))
