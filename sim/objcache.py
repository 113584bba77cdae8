"""Verilator's runtime objects compiled once per set of flags, not once per configuration's build.

Every Verilator build compiles the same runtime (verilated.cpp, verilated_vpi.cpp, ..., from the wheel's
include folder) beside the design's own C++: about a third of a build's time, for objects that depend on
the compiler flags only. Verilator's makefiles put `$(OBJCACHE)` in front of each compile (it is meant for
ccache, which this machine does not have); sim/runner.py sets OBJCACHE to this script, which keeps the
objects of sources under VERILATOR_ROOT/include in BUILD_ROOT/objcache, keyed by the command line (the
output name left out) and the source's bytes, and runs every other compile as it is.

Usage (what make runs): python objcache.py CXX ARGS... -c -o OUT.o SRC.cpp
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys


def main(argv: list[str]) -> int:
    command = argv[1:]
    include = os.path.join(os.environ.get("VERILATOR_ROOT", "\0"), "include") + os.sep
    cache = os.environ.get("SYSTOLA_OBJCACHE")
    src = command[-1] if command else ""
    if not cache or "-o" not in command or not os.path.abspath(src).startswith(include):
        return subprocess.call(command)
    at = command.index("-o")
    out = command[at + 1]
    key = hashlib.sha256("\0".join(command[:at] + command[at + 2:]).encode())
    with open(src, "rb") as f:
        key.update(f.read())
    stem = os.path.join(cache, key.hexdigest()[:24])
    dep = os.path.splitext(out)[0] + ".d"           # -MMD writes it beside the object
    if os.path.exists(stem + ".o"):
        shutil.copyfile(stem + ".o", out)
        if os.path.exists(stem + ".d"):
            shutil.copyfile(stem + ".d", dep)
        return 0
    code = subprocess.call(command)
    if code == 0:
        os.makedirs(cache, exist_ok=True)
        for made, kept in ((dep, stem + ".d"), (out, stem + ".o")):   # the object last: it marks the entry
            if os.path.exists(made):
                tmp = f"{kept}.{os.getpid()}"
                shutil.copyfile(made, tmp)
                os.replace(tmp, kept)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
