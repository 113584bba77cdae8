"""The accelerator configuration: the one object every other part derives from.

Widths and sizes here are the *only* definition of the hardware's shape. The compiler, the golden
emulator, the gateware, the register block and the testbenches all read them from an `AccelConfig`.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

__all__ = ["AccelConfig", "ConfigError", "EXT_ADDR_BITS", "ELEMENT_BYTES", "PARAM_DTYPE", "PARAM_BYTES",
           "mac_multiplier"]

#: External (AXI) address width in bits. Byte addresses.
EXT_ADDR_BITS = 32
#: Bytes an activation or weight element occupies in external memory (any width 1..8 bits is stored
#: sign-extended in one byte, so a tensor's layout does not depend on the precision it is run at).
ELEMENT_BYTES = 1
#: At weight_bits=1 weights are binary, -1 or +1 (never 0): a buffer keeps one bit per weight, this bit of its
#: byte (the sign), and the array multiplies by -1 where it is set, by +1 where not (a zero byte loads as +1).
BINARY_WEIGHT_BIT = 7
#: One requantization parameter element (one output lane) in external memory, packed little endian: the
#: int64 bias, added after the multiply in units of 2**-shift output steps, then the int32 multiplier.
PARAM_DTYPE = np.dtype([("bias", "<i8"), ("mult", "<i4")])
PARAM_BYTES = PARAM_DTYPE.itemsize


class ConfigError(ValueError):
    """A configuration value outside what the hardware accepts. The message names the value and range."""


def _check_int(name: str, value: Any, lo: int, hi: int, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name}={value!r} is not accepted: expected an integer from {lo} to {hi}{extra}")


@dataclasses.dataclass(frozen=True)
class AccelConfig:
    """Shape of one accelerator build.

    rows, cols:        the systolic array is ``rows`` x ``cols`` MACs. ``rows`` is the reduction (K) dimension
                       of one tile, ``cols`` the output-channel (N) dimension. 1..64 each, any values.
    act_bits:          width of activations, signed two's complement, 1..8 (1 bit: -1 or 0; with a zero
                       point of -1 that is the binary activation {0, scale}).
    weight_bits:       width of weights, signed two's complement, 2..8; or 1: binary weights, -1 or +1
                       (BINARY_WEIGHT_BIT).
    acc_bits:          width of the array's accumulators, signed, 16..32. Products and sums wrap to this
                       width in hardware; the compiler proves per layer that they never do.
    act_depth:         entries of the activation buffer; one entry holds ``rows`` activations.
    wgt_depth:         entries of the weight buffer; one entry holds ``cols`` weights (one K row of a tile).
    acc_depth:         entries of the accumulator buffer; one entry holds ``cols`` accumulators.
    out_depth:         entries of the output buffer; one entry holds ``cols`` requantized activations.
    param_depth:       entries of the parameter buffer; one entry holds ``cols`` (bias, multiplier) pairs.
    instr_depth:       instructions the on-chip program memory holds; a program is preloaded whole.
    bus_bits:          data width of the AXI4 master (external memory bus): 32, 64 or 128.
    """

    rows: int = 8
    cols: int = 8
    act_bits: int = 8
    weight_bits: int = 8
    acc_bits: int = 32
    act_depth: int = 2048
    wgt_depth: int = 512
    acc_depth: int = 1024
    out_depth: int = 1024
    param_depth: int = 64
    instr_depth: int = 4096
    bus_bits: int = 64

    BUS_BITS_ACCEPTED = (32, 64, 128)

    def __post_init__(self) -> None:
        _check_int("rows", self.rows, 1, 64)
        _check_int("cols", self.cols, 1, 64)
        _check_int("act_bits", self.act_bits, 1, 8)
        _check_int("weight_bits", self.weight_bits, 1, 8)
        _check_int("acc_bits", self.acc_bits, 16, 32)
        for name in ("act_depth", "wgt_depth", "acc_depth", "out_depth", "param_depth", "instr_depth"):
            _check_int(name, getattr(self, name), 1, 1 << 16)
        if self.wgt_depth < self.rows:
            raise ConfigError(f"wgt_depth={self.wgt_depth} is not accepted: it must hold at least one tile "
                              f"(rows={self.rows} entries)")
        if self.bus_bits not in self.BUS_BITS_ACCEPTED:
            raise ConfigError(f"bus_bits={self.bus_bits!r} is not accepted: expected one of "
                              f"{', '.join(map(str, self.BUS_BITS_ACCEPTED))}")

    # ---- derived quantities: computed here and nowhere else ----
    @property
    def macs(self) -> int:
        """MAC units in the array."""
        return self.rows * self.cols

    @property
    def bus_bytes(self) -> int:
        return self.bus_bits // 8

    @property
    def act_min(self) -> int:
        return -(1 << (self.act_bits - 1))

    @property
    def act_max(self) -> int:
        return (1 << (self.act_bits - 1)) - 1

    @property
    def weight_min(self) -> int:
        return -(1 << (self.weight_bits - 1))

    @property
    def weight_max(self) -> int:
        """Largest weight; +1 for binary weights (weight_bits=1: -1 or +1)."""
        return 1 if self.weight_bits == 1 else (1 << (self.weight_bits - 1)) - 1

    @property
    def acc_min(self) -> int:
        return -(1 << (self.acc_bits - 1))

    @property
    def acc_max(self) -> int:
        return (1 << (self.acc_bits - 1)) - 1

    def buffer_geometry(self) -> dict[str, tuple[int, int]]:
        """Every on-chip buffer: name -> (lanes per entry, entries). An ACT entry is one activation vector (the
        K = rows lanes of a tile); WGT, PARAM, ACC, OUT and TABLE entries hold one element per column. The
        activation table has an entry per act_bits value (emu.contract.isa.Buffer.TABLE)."""
        return {"act": (self.rows, self.act_depth), "wgt": (self.cols, self.wgt_depth),
                "param": (self.cols, self.param_depth), "acc": (self.cols, self.acc_depth),
                "out": (self.cols, self.out_depth), "table": (self.cols, self.table_depth)}

    @property
    def table_depth(self) -> int:
        """Entries of the activation table: one per act_bits value, indexed by its two's-complement bits."""
        return 1 << self.act_bits

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AccelConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a configuration is a JSON object of AccelConfig keys, not a {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown configuration key {unknown[0]!r}: accepted keys are {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str) -> "AccelConfig":
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def describe(self) -> str:
        return (f"{self.rows}x{self.cols} array, W{self.weight_bits}A{self.act_bits}, "
                f"{self.acc_bits}-bit accumulators, {self.bus_bits}-bit bus")


def mac_multiplier(act_bits: int, weight_bits: int) -> str:
    """How a PE's product is built: "lut" (shift-and-add in logic, no DSP) when the narrower operand has at
    most 4 bits, else "dsp" (one hard multiplier: MULT18X18D on ECP5, SB_MAC16 on iCE40)."""
    return "lut" if min(act_bits, weight_bits) <= 4 else "dsp"
