"""Loop folding: a layer's written-out instruction stream -> the same stream with hardware LOOPs.

The schedule (emu/compiler/schedule.py) writes every instruction out; this pass finds where a run of
instructions repeats with the same fields but for the addresses a LOOP steps (emu/contract/loops.py), each
by a constant amount per repetition, and replaces the repetitions with one LOOP and one copy of the body.
It runs twice: first over plain instructions (the inner loops: N-tiles of one K-tile, the POSTs of a
group), then over the result (the outer loops: K-tiles of a window row, N-tile groups, bands), so loops
nest at most LOOP_LEVELS = 2 deep. Expanding the result (emu.contract.loops.walk) gives back the input
instruction for instruction, which is what tests/test_compiler_loops.py checks; golden and the RTL then
run it in the expansion's cycles plus one per LOOP reached.
"""
from __future__ import annotations

import bisect
import dataclasses
import functools
import operator

from emu.contract import isa
from emu.contract.isa import FIELDS, Instr, Opcode
from emu.contract.loops import INCREMENTS, LOOP_LEVELS, LOOP_MIN_BODY, target_of

__all__ = ["fold"]

_INC_RANGE = {f.name: (-(1 << (f.width - 1)), (1 << (f.width - 1)) - 1) for f in FIELDS[Opcode.LOOP]}
_COUNT_MAX = (1 << next(f.width for f in FIELDS[Opcode.LOOP] if f.name == "count")) - 1
_BODY_MAX = (1 << next(f.width for f in FIELDS[Opcode.LOOP] if f.name == "body")) - 1
# items a body may hold: a reduction's step is a few instructions, a band's or a group's a few dozen items
# (docs/networks.md: a first pass limited to 16 folded ResNet-18 at 224 into twice the instructions)
_PERIOD_MAX = 48
# items an outer body may hold, its inner loops counted as one: a group of N-tiles whose K-tiles each load
# their successor's activations in parts is over a hundred (a longer first-pass period folds worse: it takes
# repetitions the inner loops would fold better)
_OUTER_PERIOD_MAX = 192


@dataclasses.dataclass(frozen=True)
class _Item:
    """An instruction, or a loop found by the first pass: what must be equal between repetitions (`key`),
    the stepped values in order as (increment, value) (`vals`) and the words it encodes to."""
    key: tuple
    vals: tuple
    words: list


@functools.lru_cache(maxsize=None)
def _split(op: Opcode, buf: int | None, names: tuple[str, ...]):
    """For instructions of `op` (and `buf`) with the fields `names` in order: a getter of the values that
    must be equal between repetitions, and the (increment, position) of each value a loop steps."""
    stepped = dict(target_of(Instr(op, {"buf": buf} if buf is not None else {})))
    keep = [k for k, name in enumerate(names) if name not in stepped]
    getter = operator.itemgetter(*keep) if len(keep) > 1 else (lambda vals: tuple(vals[k] for k in keep))
    return getter, tuple((stepped[name], k) for k, name in enumerate(names) if name in stepped)


def _instr_item(instr: Instr, seen: dict) -> _Item:
    """The item of an instruction; equal instructions (a layer repeats a few thousand) share one."""
    vals = tuple(instr.fields.values())
    item = seen.get((instr.op, vals))
    if item is None:
        getter, stepped = _split(instr.op, instr.fields.get("buf"), tuple(instr.fields))
        item = seen[instr.op, vals] = _Item((instr.op, getter(vals)), tuple((inc, vals[k]) for inc, k in stepped),
                                            [instr])
    return item


def _delta(a: list[_Item], b: list[_Item]) -> dict | None:
    """The increments that take the items `a` to `b` (equal keys), or None if no single set does."""
    d: dict[str, int] = {}
    for x, y in zip(a, b):
        for (inc, v), (_, w) in zip(x.vals, y.vals):
            if d.setdefault(inc, w - v) != w - v:
                return None
    for inc, v in d.items():
        lo, hi = _INC_RANGE[inc]
        if not lo <= v <= hi:
            return None
    return d


def _loop_item(body: list[_Item], count: int, d: dict) -> _Item:
    words = [w for item in body for w in item.words]
    incs = {inc: d.get(inc, 0) for inc in INCREMENTS}
    loop = isa.make(Opcode.LOOP, count=count, body=len(words), **incs)
    return _Item(("LOOP", count, *incs.values(), *(item.key for item in body)),
                 tuple(v for item in body for v in item.vals), [loop, *words])


def _fold_pass(items: list[_Item], max_words: int, period_max: int) -> list[_Item]:
    ids: dict[tuple, int] = {}
    keys = [ids.setdefault(item.key, len(ids)) for item in items]
    where: dict[int, list[int]] = {}
    for pos, k in enumerate(keys):
        where.setdefault(k, []).append(pos)
    out, i, n = [], 0, len(items)
    while i < n:
        best = None                           # (words written per word covered, period, count, increments)
        same = where[keys[i]]
        periods_found: list[tuple[int, int]] = []     # (period, count)
        for at in range(bisect.bisect_right(same, i), len(same)):     # not a slice: `same` may be long
            nxt = same[at]
            period = nxt - i
            if period > period_max or i + 2 * period > n:
                break
            # a multiple k * p of a period p found here repeating c times saves less unless c < 2k (the
            # short loop's run ends early, as a band's pair of N-tile groups does at the next band)
            if any(period % p == 0 and c >= 2 * (period // p) for p, c in periods_found) \
                    or keys[i:nxt] != keys[nxt:nxt + period]:
                continue
            body = items[i:nxt]
            words = sum(len(item.words) for item in body)
            if words < LOOP_MIN_BODY or words + 1 > min(max_words, _BODY_MAX + 1):
                continue
            d = _delta(body, items[nxt:nxt + period])
            if d is None:
                continue
            count = 2
            while (count < _COUNT_MAX and i + (count + 1) * period <= n
                   and keys[i + count * period:i + (count + 1) * period] == keys[i:nxt]
                   and _delta(items[i + (count - 1) * period:i + count * period],
                              items[i + count * period:i + (count + 1) * period]) == d):
                count += 1
            periods_found.append((period, count))
            # the candidates cover runs of different lengths, so they are compared by the words a loop
            # writes per word it covers, not by the words saved: a longer run that folds worse would take
            # the place of several that fold better (ResNet-18's 28x28 layers: three 4-iteration loops of
            # 138 words, not one 3-iteration loop of 552)
            if (count - 1) * words - 1 > 0:         # the loop saves words
                score = (words + 1) / (count * words)
                if best is None or score < best[0]:
                    best = (score, period, count, d)
        if best is not None:
            _, period, count, d = best
            out.append(_loop_item(items[i:i + period], count, d))
            i += period * count
        else:
            out.append(items[i])
            i += 1
    return out


def fold(instrs: list[Instr], *, max_words: int) -> list[Instr]:
    """`instrs` with repetitions folded into loops, LOOP_LEVELS deep; a loop with its body is at most
    `max_words` instructions (so that segments of the instruction memory can still be cut between loops)."""
    seen: dict = {}
    # the schedule appends one Instr object in many places (a layer's weight loads, its MATMULs, SYNCs)
    by_id = {}
    items = [by_id.get(id(i)) or by_id.setdefault(id(i), _instr_item(i, seen)) for i in instrs]
    # each pass may enclose the loops of the passes before, never a loop of its own making
    for level in range(LOOP_LEVELS):
        items = _fold_pass(items, max_words, _PERIOD_MAX if level == 0 else _OUTER_PERIOD_MAX)
    return [w for item in items for w in item.words]
