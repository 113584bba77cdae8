"""The software models of the hardware: the bit- and cycle-exact golden emulator (golden.py) and the integer
reference that executes the IR directly (reference.py), the check of everything."""
