"""The contract: accelerator configuration, instruction encoding, integer numerics, cycle model, register map
and fault codes. Pure Python, defined once; the compiler, golden model, gateware and testbenches derive from it.
A new rounding rule goes in numerics.py, a new instruction in isa.py (and its cycles in timing.py)."""
