"""Generates the tables in docs/isa.md from emu/contract/isa.py, faults.py and regs.py, so the document
cannot drift from the contract. `python -m emu.contract.docgen` rewrites the marked sections; a test checks them.
"""
from __future__ import annotations

import os
import re
import sys

from emu.contract.faults import FaultCode
from emu.contract.isa import FIELDS, INSTR_BITS, OPCODE_BITS, Buffer, Opcode, field_layout
from emu.contract.regs import OFFSET, REGISTERS

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "isa.md")


def encoding_tables() -> str:
    out = [f"Every instruction is one {INSTR_BITS}-bit little-endian word; bits [{OPCODE_BITS - 1}:0] hold "
           f"the opcode.\n", "| opcode | value | meaning |", "| --- | --- | --- |"]
    for op in Opcode:
        out.append(f"| `{op.name}` | {int(op)} | {_op_doc(op)} |")
    for op in Opcode:
        if not FIELDS[op]:
            continue
        out += ["", f"### `{op.name}` fields", "", "| bits | field | signed | meaning |", "| --- | --- | --- | --- |"]
        for f, lsb in field_layout(op):
            out.append(f"| [{lsb + f.width - 1}:{lsb}] | `{f.name}` | {'yes' if f.signed else 'no'} | {f.doc} |")
    out += ["", "Buffer selector (`buf`): " + ", ".join(f"`{b.name}`={int(b)}" for b in Buffer) + "."]
    return "\n".join(out)


def fault_table() -> str:
    out = ["| code | name |", "| --- | --- |"]
    out += [f"| {int(c)} | `{c.name}` |" for c in FaultCode]
    return "\n".join(out)


def register_table() -> str:
    out = ["| offset | name | access | meaning |", "| --- | --- | --- | --- |"]
    out += [f"| 0x{OFFSET[r.name]:02X} | `{r.name}` | {r.access} | {r.doc} |" for r in REGISTERS]
    return "\n".join(out)


def _op_doc(op: Opcode) -> str:
    import inspect
    src = inspect.getsource(Opcode)
    m = re.search(rf"{op.name} = \d+\s*#\s*(.*)", src)
    return m.group(1).strip() if m else ""


SECTIONS = {"encoding": encoding_tables, "faults": fault_table, "registers": register_table}


def render(text: str) -> str:
    for name, fn in SECTIONS.items():
        text = re.sub(rf"(<!-- begin {name} -->\n).*?(<!-- end {name} -->)",
                      lambda m: m.group(1) + fn() + "\n" + m.group(2), text, flags=re.S)
    return text


if __name__ == "__main__":
    with open(DOC) as f:
        old = f.read()
    new = render(old)
    with open(DOC, "w") as f:
        f.write(new)
    print("docs/isa.md", "updated" if new != old else "already current", file=sys.stderr)
