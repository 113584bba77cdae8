"""Amaranth gateware of the accelerator, every width from emu.contract; top.py joins the units, fpga/ builds
them for FPGAs."""
