"""The RTL backend: the gateware simulated in Verilator or Icarus through cocotb, driven from Python
(hil.py), with builds cached per configuration (runner.py)."""
