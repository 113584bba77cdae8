"""Hardware loops: which address each LOOP increment steps, and the order instructions run in.

`LOOP count body ...incs` at pc p makes instructions p+1 .. p+body (its body) run `count` times. In
iteration k (from 0) each body instruction runs with k * inc added to the address fields `TARGETS` names
(ext_addr of a LOAD by its buffer, of a STORE; acc_addr of MATMUL and POST; param_addr of POST), wrapped to
the field's width; every other field runs as written. Loops nest LOOP_LEVELS deep: a LOOP inside a body
starts afresh each time it is reached, and its offsets add to the enclosing loop's.

The LOOP word itself issues like any instruction (one issue cycle, no unit), each time it is reached; the
body's instructions then issue as if written out in full, so after the preload a program with loops takes
the cycles of its expansion plus at most one per LOOP reached (none where the next instruction waits for
a unit anyway). Faults, all ILLEGAL_FIELD at the LOOP's pc, when it is reached:
count 0, body < LOOP_MIN_BODY (the sequencer learns of a loop from its word three cycles after fetching
it, while the fetch runs on into the body), a LOOP nested deeper than LOOP_LEVELS, or a body that ends
past the end of the body enclosing it. A body running past the program's end reaches PROGRAM_RANGE there.
A pc is always an address in the program, whichever iteration runs it.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

from emu.contract.faults import FaultCode
from emu.contract.isa import FIELDS, Buffer, Instr, Opcode

__all__ = ["LOOP_LEVELS", "LOOP_MIN_BODY", "INCREMENTS", "TARGETS", "target_of", "offset", "depths", "Step",
           "loop_fault", "walk"]

LOOP_LEVELS = 2
LOOP_MIN_BODY = 5

#: (opcode, buffer or None, field, the LOOP increment that steps it)
TARGETS: tuple[tuple[Opcode, Buffer | None, str, str], ...] = (
    (Opcode.LOAD, Buffer.ACT, "ext_addr", "act_ext_inc"),
    (Opcode.LOAD, Buffer.WGT, "ext_addr", "wgt_ext_inc"),
    (Opcode.LOAD, Buffer.PARAM, "ext_addr", "param_ext_inc"),
    (Opcode.STORE, None, "ext_addr", "out_ext_inc"),
    (Opcode.MATMUL, None, "acc_addr", "acc_inc"),
    (Opcode.POST, None, "acc_addr", "acc_inc"),
    (Opcode.POST, None, "param_addr", "param_inc"),
)
#: the LOOP increment fields, in encoding order
INCREMENTS: tuple[str, ...] = tuple(f.name for f in FIELDS[Opcode.LOOP] if f.name.endswith("_inc"))
_WIDTH = {(op, f.name): f.width for op in FIELDS for f in FIELDS[op]}


_BY_KIND = {(op, b): tuple((field, inc) for o, buf, field, inc in TARGETS if o == op and buf in (None, b))
            for op in Opcode for b in (None, *Buffer)}


def target_of(instr: Instr) -> tuple[tuple[str, str], ...]:
    """(field, increment) pairs a loop steps in `instr`."""
    return _BY_KIND.get((instr.op, instr.fields.get("buf")), ())


def offset(instr: Instr, offsets: dict[str, int]) -> Instr:
    """`instr` with the loop offsets {increment: value} added to the fields they step, wrapped."""
    fields = None
    for field, inc in target_of(instr):
        if offsets.get(inc):
            fields = fields or dict(instr.fields)
            fields[field] = (fields[field] + offsets[inc]) % (1 << _WIDTH[instr.op, field])
    return instr if fields is None else Instr(instr.op, fields)


def depths(instrs: Sequence[Instr | None]) -> list[int]:
    """How many loop bodies, as written, hold each instruction (a LOOP word is outside its own body)."""
    out, ends = [], []
    for pc, instr in enumerate(instrs):
        ends = [e for e in ends if e >= pc]
        out.append(len(ends))
        if instr is not None and instr.op == Opcode.LOOP:
            ends.append(pc + instr.body)
    return out


@dataclasses.dataclass
class _Level:
    start: int
    end: int          # pc of the body's last instruction
    left: int         # iterations after the current one
    incs: dict
    base: dict        # offsets at the start of the loop


@dataclasses.dataclass(frozen=True)
class Step:
    """One instruction as it runs: its pc, the instruction with its offsets, or the fault it raises."""
    pc: int
    instr: Instr | None
    offsets: dict
    fault: tuple[FaultCode, str] | None = None


def loop_fault(instr: Instr, pc: int, enclosing_end: int | None, depth: int) -> tuple[FaultCode, str] | None:
    """The fault of a LOOP at `pc` reached inside `depth` loops, the innermost ending at `enclosing_end`."""
    if instr.count == 0 or instr.body < LOOP_MIN_BODY:
        return (FaultCode.ILLEGAL_FIELD,
                f"LOOP count={instr.count} body={instr.body} (count >= 1, body >= {LOOP_MIN_BODY})")
    if depth == LOOP_LEVELS:
        return FaultCode.ILLEGAL_FIELD, f"LOOP nested deeper than {LOOP_LEVELS}"
    if enclosing_end is not None and pc + instr.body > enclosing_end:
        return (FaultCode.ILLEGAL_FIELD,
                f"LOOP body ends at {pc + instr.body}, past its enclosing body's {enclosing_end}")
    return None


def walk(instrs: Sequence[Instr | None]) -> Iterator[Step]:
    """The instructions of a program (None: a word with an illegal opcode) in the order they run, with their
    offsets applied, up to END or the first fault (yielded as a Step with `fault`, then the walk stops):
    ILLEGAL_OPCODE, a LOOP's faults (`loop_fault`), PROGRAM_RANGE past the end. The other decode-time checks
    are the caller's, on each step's instruction (offsets change them)."""
    zero = dict.fromkeys(INCREMENTS, 0)
    levels: list[_Level] = []
    cur = zero
    pc = 0
    while True:
        if pc >= len(instrs):
            yield Step(pc, None, cur, (FaultCode.PROGRAM_RANGE, "ran past the last instruction without END"))
            return
        instr = instrs[pc]
        bad = None
        if instr is None:
            bad = FaultCode.ILLEGAL_OPCODE, "illegal opcode"
        elif instr.op == Opcode.LOOP:
            bad = loop_fault(instr, pc, levels[-1].end if levels else None, len(levels))
        if bad is not None:
            yield Step(pc, instr, cur, bad)
            return
        yield Step(pc, offset(instr, cur) if cur is not zero else instr, cur)
        if instr.op == Opcode.END:
            return
        if instr.op == Opcode.LOOP:
            levels.append(_Level(pc + 1, pc + instr.body, instr.count - 1,
                                 {k: instr.fields[k] for k in INCREMENTS}, cur))
        pc += 1
        # the body's last instruction: the innermost loop goes round again or ends, then the one around it
        while levels and pc - 1 == levels[-1].end:
            top = levels[-1]
            if top.left:
                top.left -= 1
                cur = {k: cur[k] + top.incs[k] for k in INCREMENTS}
                pc = top.start
                break
            levels.pop()
            cur = top.base
