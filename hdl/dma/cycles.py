"""The DMA's cycle budget: the cycles its pipeline needs (`*_MIN`) and those the contract grants
(emu.contract.timing), which DMA's constructor checks against each other."""
from __future__ import annotations

from emu.contract import timing

from hdl.pipeline import product_latency

__all__ = ["SPAN_CYCLE", "LOAD_SETUP_MIN", "STORE_SETUP_MIN", "LOAD_DRAIN_MIN", "LOAD_SETUP", "STORE_SETUP",
           "LOAD_DRAIN"]

#: The cycle of a transfer (the arguments are registered in cycle 1) in which rows * row_bytes, the bytes
#: of a merged span, leaves its registered shift-add tree and the spans are set up.
SPAN_CYCLE = 1 + product_latency(10)
#: Cycles from `start` to the first address that the pipeline needs. LOAD: the span set-up, then the two
#: burst geometry stages. STORE: the span set-up, the lane sequencer's two set-up states, the producer's
#: first beat (P0) through the rd_addr register, 2 cycles of read latency, the word indices, the word select
#: and lane funnel, and the W FIFO.
LOAD_SETUP_MIN = SPAN_CYCLE + 3
STORE_SETUP_MIN = SPAN_CYCLE + 8
#: Cycles a LOAD's last entry write comes after its last R beat: the beat register, the two rotation
#: registers (byte enables with the second), then the write register.
LOAD_DRAIN_MIN = 4

LOAD_SETUP = timing.DMA_LOAD_SETUP - timing.ISSUE_LATENCY    # the sequencer's start register is the rest
STORE_SETUP = timing.DMA_STORE_SETUP - timing.ISSUE_LATENCY
LOAD_DRAIN = timing.DMA_LOAD_DRAIN
