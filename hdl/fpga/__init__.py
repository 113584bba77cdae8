"""The FPGA flow: synthesis, place and route and bitstreams for the gateware in hdl/, with the open toolchains
pip installs (YoWASP Yosys and nextpnr). flow.py holds the flow; hdl/ecp5.py and hdl/harness.py the family
primitives and board harness it builds."""
