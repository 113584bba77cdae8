"""Hardware fault codes, reported identically by the golden emulator and the RTL (ERROR_CODE register)."""
from __future__ import annotations

import enum

__all__ = ["FaultCode", "HardwareFault"]


class FaultCode(enum.IntEnum):
    NONE = 0
    ILLEGAL_OPCODE = 1     # opcode 0 or an unassigned value
    ILLEGAL_FIELD = 2      # a field outside its accepted values (rows == 0, bad buf for the opcode, ...)
    BUFFER_RANGE = 3       # an on-chip buffer access past the buffer's depth
    BUS_ERROR = 4          # the external memory answered an access with an error (address out of range)
    PROGRAM_RANGE = 5      # program length 0, longer than instr_depth, or ran past its end without END
    WATCHDOG = 6           # the cycle limit given to the run was reached before END
    CONFIG_MISMATCH = 7    # the program was built for another configuration (checked before start)


class HardwareFault(Exception):
    """A fault the hardware reports: code, the program counter of the faulting instruction, and why."""

    def __init__(self, code: FaultCode, pc: int, detail: str = ""):
        self.code = FaultCode(code)
        self.pc = pc
        self.detail = detail
        super().__init__(f"hardware fault {self.code.name} (code {int(self.code)}) at pc {pc}"
                         + (f": {detail}" if detail else ""))
