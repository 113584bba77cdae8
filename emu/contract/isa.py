"""The instruction set: opcodes, fields and the binary encoding, defined once.

Every instruction is one 128-bit little-endian word. Bits [3:0] hold the opcode; each opcode's fields
follow from bit 4 upwards in the order listed in `FIELDS`, so the bit positions are derived from this
table and written nowhere else (docs/isa.md is generated from it, the gateware builds its decoder
layouts from it). Unused high bits are zero.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Iterable

import numpy as np

__all__ = ["INSTR_BITS", "INSTR_BYTES", "OPCODE_BITS", "opcode_of", "Opcode", "Buffer", "Field", "FIELDS", "Instr",
           "field_layout", "encode", "decode", "encode_program", "decode_program"]

INSTR_BITS = 128
INSTR_BYTES = INSTR_BITS // 8
OPCODE_BITS = 4


class Opcode(enum.IntEnum):
    """Opcode values. 0 and every value not listed are illegal (zeroed memory never executes)."""
    LOAD = 1    # DMA: external memory -> ACT, WGT or PARAM buffer, 3-D strided (blocks of rows)
    STORE = 2   # DMA: OUT buffer -> external memory, 3-D strided
    MATMUL = 3  # array: ACC[t] (+)= ACT[t] x WGT tile (or max=), for T activation vectors
    POST = 4    # post-processing: OUT[t] = requantize(ACC[t] * multiplier + bias) with clamp (then TABLE lookup)
    SYNC = 5    # barrier: wait until the DMA, array and post-processing units are all idle (drain: and ACC written)
    END = 6     # wait for all units, then raise done
    LOOP = 7    # hardware loop: the next `body` instructions run `count` times, addresses stepping (loops.py)


class Buffer(enum.IntEnum):
    """On-chip buffer selector in the `buf` field of LOAD/STORE."""
    ACT = 0
    WGT = 1
    PARAM = 2
    OUT = 3
    TABLE = 4   # the activation table: entry i holds, per lane, what a POST with table=1 maps result i to


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    width: int
    signed: bool = False
    doc: str = ""
    default: int | None = None  # value `make` uses when the field is not given; None: required


_DMA_FIELDS = (
    Field("buf", 3, doc="Buffer: LOAD takes ACT, WGT, PARAM or TABLE; STORE takes OUT"),
    Field("rows", 16, doc="number of rows (buffer entries) to move, >= 1"),
    Field("row_len", 7, doc="elements per row, 1..entry width (rows for ACT, cols otherwise); "
                             "LOAD zero-fills the rest of the entry, STORE writes only these"),
    Field("buf_addr", 16, doc="first buffer entry; row r uses entry buf_addr + r"),
    Field("ext_addr", 32, doc="byte address in external memory of row 0 of block 0"),
    Field("ext_stride", 20, doc="bytes between the starts of consecutive rows of a block in external memory"),
    Field("blocks", 10, default=1, doc="number of blocks of `rows` rows, >= 1; row r of block b is at "
                                       "ext_addr + b * block_stride + r * ext_stride and uses entry "
                                       "buf_addr + b * rows + r (convolution: one block per output row)"),
    Field("block_stride", 20, default=0, doc="bytes between the starts of consecutive blocks"),
)

FIELDS: dict[Opcode, tuple[Field, ...]] = {
    Opcode.LOAD: _DMA_FIELDS,
    Opcode.STORE: _DMA_FIELDS,
    Opcode.MATMUL: (
        Field("rows", 16, doc="T: activation vectors streamed through the array, >= 1"),
        Field("act_addr", 16, doc="ACT entry of vector 0; vector t is entry act_addr + t"),
        Field("wgt_addr", 16, doc="first of the `rows`(R) WGT entries holding the R x C weight tile"),
        Field("acc_addr", 16, doc="ACC entry of result 0"),
        Field("accumulate", 1, doc="1: add into ACC; 0: overwrite ACC"),
        Field("k_valid", 7, doc="useful reduction lanes in this tile, 1..R (counts useful MACs only)"),
        Field("n_valid", 7, doc="useful output lanes in this tile, 1..C (counts useful MACs only)"),
        Field("reduce_max", 1, default=0, doc="with accumulate=1: ACC = max(ACC, result) instead of ACC + result "
                                   "(max pooling); ignored when accumulate=0"),
    ),
    Opcode.POST: (
        Field("rows", 16, doc="entries to post-process, >= 1"),
        Field("acc_addr", 16, doc="first ACC entry read"),
        Field("out_addr", 16, doc="first OUT entry written"),
        Field("param_addr", 16, doc="PARAM entry with the (bias, multiplier) of each of the C lanes"),
        Field("shift", 6, doc="rounding right shift applied to acc * multiplier + bias, 0..63"),
        Field("zero_point", 8, signed=True, doc="output zero point added after the shift"),
        Field("clamp_lo", 8, signed=True, doc="lower saturation bound (ReLU: max(zero_point, act_min))"),
        Field("clamp_hi", 8, signed=True, doc="upper saturation bound"),
        Field("table", 1, default=0, doc="1: each lane's result y (act_bits, signed) is replaced by lane n of "
                                         "TABLE entry y mod 2**act_bits (an elementwise activation)"),
    ),
    Opcode.SYNC: (
        Field("drain", 1, default=1, doc="1: also wait until every MATMUL has written ACC; 0: only until the array "
                                         "has read its operands (the MATMULs before may still be writing ACC)"),
    ),
    Opcode.END: (),
    Opcode.LOOP: (
        Field("count", 12, doc="iterations of the body, >= 1"),
        Field("body", 12, doc="instructions after this one that form the body, >= LOOP_MIN_BODY "
                              "(emu.contract.loops); nested LOOPs and their bodies count"),
        Field("act_ext_inc", 20, signed=True, default=0, doc="added per iteration to ext_addr of each LOAD of ACT"),
        Field("wgt_ext_inc", 20, signed=True, default=0, doc="added per iteration to ext_addr of each LOAD of WGT"),
        Field("param_ext_inc", 16, signed=True, default=0,
              doc="added per iteration to ext_addr of each LOAD of PARAM"),
        Field("out_ext_inc", 20, signed=True, default=0, doc="added per iteration to ext_addr of each STORE"),
        Field("acc_inc", 16, signed=True, default=0, doc="added per iteration to acc_addr of each MATMUL and POST"),
        Field("param_inc", 8, signed=True, default=0, doc="added per iteration to param_addr of each POST"),
    ),
}


def field_layout(op: Opcode) -> list[tuple[Field, int]]:
    """(field, lsb) pairs of an opcode, lsb counted in the 128-bit word. The only place bits are placed."""
    out, lsb = [], OPCODE_BITS
    for f in FIELDS[op]:
        out.append((f, lsb))
        lsb += f.width
    assert lsb <= INSTR_BITS, (op, lsb)
    return out


@dataclasses.dataclass(frozen=True)
class Instr:
    """One decoded instruction: its opcode and its field values (signed fields as Python ints)."""
    op: Opcode
    fields: dict

    def __getattr__(self, name):
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __str__(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{self.op.name} {args}".rstrip()


@functools.lru_cache(maxsize=None)
def _plan(op: Opcode) -> tuple[dict, frozenset, tuple[tuple[str, int, int, int, int], ...]]:
    """(defaults, field names, (name, lsb, mask, lo, hi) per field) of an opcode, derived once from FIELDS: `make` and
    `encode` run once per instruction of a program, hundreds of thousands of times for a large network."""
    defaults = {f.name: f.default for f in FIELDS[op] if f.default is not None}
    plan = []
    for f, lsb in field_layout(op):
        lo, hi = ((-(1 << (f.width - 1)), (1 << (f.width - 1)) - 1) if f.signed else (0, (1 << f.width) - 1))
        plan.append((f.name, lsb, (1 << f.width) - 1, lo, hi))
    return defaults, frozenset(f.name for f in FIELDS[op]), tuple(plan)


def make(op: Opcode, **values: int) -> Instr:
    """Build an instruction, checking that every field without a default is given and all fit their widths."""
    defaults, names, plan = _plan(op)
    values = {**defaults, **values} if defaults else values
    if values.keys() != names:
        names = [name for name, *_ in plan]
        missing = [n for n in names if n not in values]
        unknown = [n for n in values if n not in names]
        raise ValueError(f"{op.name}: missing fields {missing}, unknown fields {unknown}")
    fields = {}
    for name, _, _, lo, hi in plan:
        v = int(values[name])
        if not lo <= v <= hi:
            f = next(f for f in FIELDS[op] if f.name == name)
            raise ValueError(f"{op.name}.{name}={v} does not fit {f.width} bits "
                             f"({'signed' if f.signed else 'unsigned'}, {lo}..{hi})")
        fields[name] = v
    return Instr(op, fields)


def encode(instr: Instr) -> int:
    word = int(instr.op)
    for name, lsb, mask, _, _ in _plan(instr.op)[2]:
        word |= (instr.fields[name] & mask) << lsb
    return word


def opcode_of(word: int) -> int:
    """The opcode field of an instruction word (its low OPCODE_BITS bits), legal or not."""
    return word & ((1 << OPCODE_BITS) - 1)


def decode(word: int) -> Instr | None:
    """Decode a 128-bit word; None for an illegal opcode (the caller raises the fault)."""
    try:
        op = Opcode(opcode_of(word))
    except ValueError:
        return None
    values = {}
    for f, lsb in field_layout(op):
        v = (word >> lsb) & ((1 << f.width) - 1)
        if f.signed and v >> (f.width - 1):
            v -= 1 << f.width
        values[f.name] = v
    return Instr(op, values)


def encode_program(instrs: Iterable[Instr]) -> bytes:
    # a large network repeats the same few thousand instructions (SYNCs, weight loads of a band): each
    # distinct one is encoded once
    words: dict[tuple, bytes] = {}
    out = []
    for i in instrs:
        key = (i.op, *i.fields.values())
        word = words.get(key)
        if word is None:
            word = words[key] = encode(i).to_bytes(INSTR_BYTES, "little")
        out.append(word)
    return b"".join(out)


def decode_program(blob: bytes | np.ndarray) -> list[int]:
    """Split a program image into 128-bit words (not yet decoded: decoding may fault at run time)."""
    blob = bytes(blob)
    return [int.from_bytes(blob[i:i + INSTR_BYTES], "little") for i in range(0, len(blob), INSTR_BYTES)]
