"""The compiler: the integer graph IR (ir.py), tiling and DMA schedules (schedule.py), instruction emission
(codegen.py) and the compiled Program on disk (program.py). A new operator is a node in ir.py, lowered by
emu/frontend/lower.py and emitted by codegen.py."""
