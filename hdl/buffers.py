"""On-chip buffer entries: their layouts and their byte images (each buffer is an hdl.bram.BlockRAM).

Entry layouts (all signed two's complement):
  ACT    `rows` elements of act_bits       (one activation vector, the K lanes of a tile)
  WGT    `cols` elements of weight_bits    (one K row of a weight tile; 1 bit: a binary weight's sign)
  PARAM  `cols` elements of {bias: int64, mult: int32}
  ACC    `cols` elements of acc_bits
  OUT    `cols` elements of act_bits
  TABLE  `cols` elements of act_bits       (what each lane maps one act_bits value to, hdl/table.py)
The DMA moves bytes; `from_bytes` / `to_bytes` convert an entry between its external-memory byte image
(little endian, one sign-extended byte per activation/weight, 12 bytes per PARAM element) and its layout.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Shape, signed
from amaranth.lib import data

from emu.contract.config import AccelConfig, PARAM_BYTES, PARAM_DTYPE
from emu.contract.isa import INSTR_BYTES

__all__ = ["param_layout", "entry_layouts", "entry_bytes_max", "from_bytes", "to_bytes"]

#: One PARAM lane, the fields of emu.contract.config.PARAM_DTYPE in their byte order.
param_layout = data.StructLayout({name: signed(8 * PARAM_DTYPE[name].itemsize) for name in PARAM_DTYPE.names})


def entry_layouts(cfg: AccelConfig) -> dict[str, data.ArrayLayout]:
    elements = {"act": signed(cfg.act_bits), "wgt": signed(cfg.weight_bits), "param": param_layout,
                "acc": signed(cfg.acc_bits), "out": signed(cfg.act_bits), "table": signed(cfg.act_bits)}
    return {name: data.ArrayLayout(elements[name], lanes) for name, (lanes, _) in cfg.buffer_geometry().items()}


def entry_bytes_max(cfg: AccelConfig) -> int:
    """Largest byte image of one entry the DMA assembles: ACT, WGT, PARAM or a 16-byte instruction."""
    return max(cfg.rows, cfg.cols, PARAM_BYTES * cfg.cols, INSTR_BYTES)


def from_bytes(raw, layout: data.ArrayLayout, elem_bytes: int, first_bit: int = 0):
    """Entry value from its byte image: element i keeps the bits of bytes [i*eb, (i+1)*eb) from `first_bit`
    on, the low bits unless told (a binary weight keeps its sign, BINARY_WEIGHT_BIT)."""
    width = Shape.cast(layout.elem_shape).width
    assert first_bit + width <= 8 * elem_bytes
    return Cat(*(raw[8 * elem_bytes * i + first_bit:8 * elem_bytes * i + first_bit + width]
                 for i in range(layout.length)))


def to_bytes(entry: data.View, elem_bits: int):
    """Byte image of an OUT entry: each act_bits element sign-extended to one byte."""
    return Cat(*(Cat(entry.as_value()[elem_bits * i:elem_bits * (i + 1)],
                     *([entry.as_value()[elem_bits * (i + 1) - 1]] * (8 - elem_bits)))
                 for i in range(len(entry))))
