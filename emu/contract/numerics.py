"""Integer numerics shared by the compiler, the golden emulator, the integer reference and the gateware.

Everything is exact integer arithmetic; docs/numerics.md states the same rules in prose.

Requantization of one output lane (POST instruction)::

    p = acc * multiplier + bias             # exact; |p| < 2**63 proven by the compiler
    r = (p + (1 << (shift - 1))) >> shift   # shift >= 1: round half up (towards +inf), arithmetic shift
    r = p                                   # shift == 0
    y = clamp(r + zero_point, clamp_lo, clamp_hi)

acc is the signed acc_bits accumulator, multiplier in [0, 2**31), bias an int64 in units of 2**-shift
output steps: adding it after the multiply keeps the bias as precise as the multiplier, which matters
when the input step is coarse (2-bit activations) and the output step fine (8-bit logits).

The real-valued rescale ``in_scale * w_scale[n] / out_scale`` is ``multiplier[n] * 2**-shift`` with one
``shift`` per layer (chosen so the largest channel's multiplier is normalised into [2**30, 2**31)).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["wrap", "loaded", "round_shift", "requantize", "post_bias", "requant_params", "look_up", "MULT_BITS",
           "SHIFT_MAX",
           "accumulator_bound"]

#: Multipliers are unsigned values below 2**MULT_BITS, stored in an int32 word.
MULT_BITS = 31
#: Largest rounding shift the POST instruction encodes (6-bit field).
SHIFT_MAX = 63


def wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap of int64 values to `bits` bits (what a `bits`-wide register keeps)."""
    x = np.asarray(x, dtype=np.int64)
    half = np.int64(1) << np.int64(bits - 1)
    return ((x + half) & ((half << np.int64(1)) - np.int64(1))) - half


def loaded(raw: np.ndarray, bits: int, *, weight: bool) -> np.ndarray:
    """int64 values a buffer element holds for each signed byte (int8 or int64 in -128..127) a LOAD moves into
    it: the byte wrapped to `bits`; a 1-bit weight is binary, -1 where the byte's BINARY_WEIGHT_BIT (its sign)
    is set and +1 where not."""
    from emu.contract.config import BINARY_WEIGHT_BIT
    raw = np.asarray(raw, dtype=np.int64)
    if weight and bits == 1:
        return np.int64(1) - np.int64(2) * ((raw >> np.int64(BINARY_WEIGHT_BIT)) & np.int64(1))
    return wrap(raw, bits)


def round_shift(p: np.ndarray, shift: int) -> np.ndarray:
    """Arithmetic right shift by `shift` with round half up (towards +inf); int64 in, int64 out."""
    p = np.asarray(p, dtype=np.int64)
    if shift == 0:
        return p
    return (p + (np.int64(1) << np.int64(shift - 1))) >> np.int64(shift)


def requantize(acc: np.ndarray, bias: np.ndarray, multiplier: np.ndarray, shift: int, zero_point: int,
               clamp_lo: int, clamp_hi: int) -> np.ndarray:
    """The POST datapath on int64 arrays; `bias` and `multiplier` broadcast along the last axis (lanes)."""
    p = np.asarray(acc, dtype=np.int64) * np.asarray(multiplier, dtype=np.int64) + np.asarray(bias, dtype=np.int64)
    return np.clip(round_shift(p, shift) + np.int64(zero_point), clamp_lo, clamp_hi)


def look_up(y: np.ndarray, table: np.ndarray, act_bits: int) -> np.ndarray:
    """A POST's activation-table lookup: lane n of each row of `y` ([..., lanes], act_bits values) becomes
    table[y mod 2**act_bits, n] (`table` [2**act_bits, lanes], act_bits values): the index is y's own
    two's-complement bits, so the table holds f(act_min) .. f(-1) in its upper half."""
    idx = np.asarray(y, np.int64) & np.int64((1 << act_bits) - 1)
    return np.take_along_axis(np.asarray(table, np.int64), idx.reshape(-1, idx.shape[-1]), axis=0).reshape(idx.shape)


def post_bias(bias: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
    """A layer's bias in POST units (2**-shift output steps), from the bias in accumulator units
    (real bias / (in_scale * w_scale), a float): round(bias * multiplier), half to even."""
    return np.round(np.asarray(bias, np.float64) * np.asarray(multiplier, np.float64)).astype(np.int64)


def requant_params(real_scale: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer (multiplier[n], shift) approximating positive real scales ``s[n] ~ multiplier[n] * 2**-shift``.

    One shift for the layer: the largest scale gets a multiplier in [2**30, 2**31); smaller scales keep
    the same shift (their relative precision is still about 2**-30 * max/min). Multipliers round to nearest.
    """
    s = np.asarray(real_scale, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"requantization scales must be positive and finite, got {s}")
    _, e = math.frexp(float(s.max()))  # s.max() = m * 2**e with m in [0.5, 1)
    shift = MULT_BITS - int(e)         # widen in Python ints: np.frexp's int32 exponent overflows
    if shift > SHIFT_MAX:
        shift = SHIFT_MAX              # tiny scales: fewer multiplier bits, never an unencodable shift
    if shift < 0:
        raise ValueError(f"requantization scale {s.max():g} is too large (needs a left shift)")
    mult = np.round(s * float(2 ** shift)).astype(np.int64)
    mult = np.minimum(mult, (1 << MULT_BITS) - 1)
    return mult, shift


def accumulator_bound(weights: np.ndarray, act_lo: int, act_hi: int) -> np.ndarray:
    """Per output lane, the largest |partial or full sum| its accumulator can hold (int64 [N]).

    `weights` is [N, K] (already integer). The reduction over any subset of K is bounded by
    sum_k |w[n, k]| * max(|act_lo|, |act_hi|). The compiler refuses a layer whose bound does not fit the
    accumulator, or whose POST sum acc * multiplier + bias could reach 2**63."""
    a = max(abs(int(act_lo)), abs(int(act_hi)))
    return np.abs(np.asarray(weights, dtype=np.int64)).reshape(weights.shape[0], -1).sum(axis=1) * a
