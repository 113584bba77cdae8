"""The AXI4-Lite register map of the accelerator: 32-bit registers at consecutive word offsets.

Offsets are derived from the order of `REGISTERS`; host code, the gateware and docs all read them here.
"""
from __future__ import annotations

import dataclasses

from emu.contract.config import AccelConfig

__all__ = ["Reg", "REGISTERS", "OFFSET", "MAGIC", "STATUS_BUSY", "STATUS_DONE", "STATUS_ERROR",
           "config_registers", "REG_BYTES", "CSR_ADDR_BITS"]

MAGIC = 0x5359_5354  # "SYST"
STATUS_BUSY, STATUS_DONE, STATUS_ERROR = 1, 2, 4
REG_BYTES = 4


@dataclasses.dataclass(frozen=True)
class Reg:
    name: str
    access: str  # "r" or "rw"
    doc: str


REGISTERS: tuple[Reg, ...] = (
    Reg("MAGIC", "r", "constant 0x53595354 ('SYST')"),
    Reg("CTRL", "rw", "bit 0: write 1 to start (ignored while busy); reads 0"),
    Reg("STATUS", "r", "bit 0 busy, bit 1 done, bit 2 error; done/error clear on start"),
    Reg("ERROR_CODE", "r", "FaultCode of the last run (0: none)"),
    Reg("ERROR_PC", "r", "index of the faulting instruction"),
    Reg("PROG_ADDR", "rw", "byte address of the program in external memory (16-byte aligned)"),
    Reg("PROG_LEN", "rw", "number of 128-bit instructions"),
    Reg("WATCHDOG", "rw", "cycle limit of a run, 0: none"),
    Reg("CYCLES_LO", "r", "cycles from start to done, low word"),
    Reg("CYCLES_HI", "r", "high word"),
    Reg("MACS_LO", "r", "useful MACs (T * k_valid * n_valid summed over MATMULs), low word"),
    Reg("MACS_HI", "r", "high word"),
    # read-only description of the build; compared with a program's manifest before it runs
    Reg("CFG_ROWS", "r", "rows"),
    Reg("CFG_COLS", "r", "cols"),
    Reg("CFG_ACT_BITS", "r", "act_bits"),
    Reg("CFG_WEIGHT_BITS", "r", "weight_bits"),
    Reg("CFG_ACC_BITS", "r", "acc_bits"),
    Reg("CFG_ACT_DEPTH", "r", "act_depth"),
    Reg("CFG_WGT_DEPTH", "r", "wgt_depth"),
    Reg("CFG_ACC_DEPTH", "r", "acc_depth"),
    Reg("CFG_OUT_DEPTH", "r", "out_depth"),
    Reg("CFG_PARAM_DEPTH", "r", "param_depth"),
    Reg("CFG_INSTR_DEPTH", "r", "instr_depth"),
    Reg("CFG_BUS_BITS", "r", "bus_bits"),
)

OFFSET: dict[str, int] = {r.name: i * REG_BYTES for i, r in enumerate(REGISTERS)}
CSR_ADDR_BITS = (len(REGISTERS) * REG_BYTES - 1).bit_length()


def config_registers(cfg: AccelConfig) -> dict[str, int]:
    """Values of the CFG_* registers for a build: register name -> value."""
    return {f"CFG_{k.upper()}": v for k, v in cfg.to_dict().items()}
