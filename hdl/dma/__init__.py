"""The DMA unit (hdl/dma/top.py), split into its machines, one module each; `from hdl.dma import DMA`."""
from hdl.dma.cycles import LOAD_DRAIN_MIN, LOAD_SETUP_MIN, STORE_SETUP_MIN
from hdl.dma.signatures import TARGET_INSTR, dma_command_signature
from hdl.dma.top import DMA

__all__ = ["DMA", "TARGET_INSTR", "dma_command_signature", "LOAD_SETUP_MIN", "STORE_SETUP_MIN", "LOAD_DRAIN_MIN"]
