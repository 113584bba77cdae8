"""The `systola` command line (main.py) and its demo (demo.py): argument checking and user-facing output only;
everything they do is library code elsewhere in emu/, hdl/ and sim/."""
