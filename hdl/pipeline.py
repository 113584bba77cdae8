"""Pipeline registers shared by the datapath blocks."""
from __future__ import annotations

from amaranth.hdl import Module, Signal

__all__ = ["delay"]


def delay(m: Module, sig, cycles: int, name: str):
    """`sig` delayed by `cycles` registers in the sync domain (same shape), named `<name>_d<i>`."""
    for d in range(cycles):
        reg = Signal.like(sig, name=f"{name}_d{d}")
        m.d.sync += reg.eq(sig)
        sig = reg
    return sig
