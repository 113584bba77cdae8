"""The golden emulator's fast path: a run's data flow, traced once, executed as a few large array operations.

Nothing a program does depends on a value (emu.emulator.golden.trace): which bytes each LOAD reads, which
MATMULs add into which accumulator rows, which POST reads them and where each STORE writes are all known
before any data moves. `plan` follows the trace once and keeps, for every buffer entry, where its value comes
from instead of the value:

- an ACT, WGT, PARAM or TABLE entry: the LOAD that filled it, so the bytes of external memory it holds;
- an ACC entry: a row of a *chain*, the MATMUL terms (ACT rows x WGT tile) set, added or max-ed into it in
  order, on top of a base (zero, or the ACC rows of other chains it started from);
- an OUT entry: the POST row that wrote it.

The trace is cut into *stages* where a LOAD reads a byte that a STORE of the current stage wrote, so within a
stage every LOAD sees memory as it was at the stage's start. A stage runs as: the chains its POSTs read (sum
chains that read the same activation bytes as one matrix product, their weight tiles side by side), its
POSTs, then one scatter of its STOREs in program order (a byte written twice keeps the later value).

Why this equals step-by-step execution (`Golden`) on every byte: a chain of sums wraps modulo 2**acc_bits
after every MATMUL, and wrapping once at the end gives the same residue; the products are float32 over
chunks of the reduction short enough that no partial sum can pass 2**24 (max|a| x max|w| x chunk), whatever
order BLAS adds in, and the chunks add in int64. A run the plan cannot express runs step by step instead: a
STORE into the program of a later segment, or a chain evaluated in a later stage than its LOAD after a STORE
changed the bytes that LOAD read. docs/golden.md has the measurements.
"""
from __future__ import annotations

import dataclasses
import functools
import typing

import numpy as np

from emu.contract import numerics
from emu.contract.config import AccelConfig, PARAM_BYTES, PARAM_DTYPE
from emu.contract.faults import HardwareFault
from emu.contract.isa import Buffer, Instr, Opcode
from emu.heartbeat import heartbeat
from emu.emulator.golden import Golden, RunResult, program_blob, program_fault, sum_segments, trace

__all__ = ["run_dataflow", "plan", "program_blobs", "Plan", "Unsupported"]

_EXACT32 = 1 << 24       # float32 holds every integer up to this exactly


class Unsupported(Exception):
    """The run's data flow is outside what a plan expresses; it runs step by step."""


class _Load(typing.NamedTuple):
    """A LOAD as the source of its entries: entry e (from 0) holds `row_len` elements from byte
    ext + (e // rows) * block_stride + (e % rows) * ext_stride on."""
    ext: int
    rows: int
    ext_stride: int
    block_stride: int
    row_len: int
    stage: int
    instr: Instr

    def starts(self, index: np.ndarray) -> np.ndarray:
        return self.ext + (index // self.rows) * self.block_stride + (index % self.rows) * self.ext_stride


class _Entries:
    """Which LOAD filled each entry of one buffer (-1: none since reset, so zero), and its index in that LOAD;
    the last few LOADs' entry ranges too, which answer most questions without touching the arrays."""

    RECENT = 8

    def __init__(self, depth: int):
        self._load = np.full(depth, -1, np.int64)
        self._index = np.zeros(depth, np.int64)
        self.unfilled: list[tuple[int, int, int]] = []    # fills not yet written to the arrays, in order
        self.recent: list[tuple[int, int, int]] = []      # (first, end, load id), the newest last

    def fill(self, first: int, n: int, load_id: int) -> None:
        end = first + n
        self.unfilled.append((first, end, load_id))
        self.recent = [r for r in self.recent[-self.RECENT:] if r[0] < first or r[1] > end] + [(first, end, load_id)]

    def _flush(self) -> None:
        for first, end, load_id in self.unfilled:
            self._load[first:end] = load_id
            self._index[first:end] = np.arange(end - first)
        self.unfilled = []

    @property
    def load(self) -> np.ndarray:
        self._flush()
        return self._load

    @property
    def index(self) -> np.ndarray:
        self._flush()
        return self._index

    def ref(self, first: int, n: int) -> tuple:
        """Entries first..first+n-1 as ("run", load, index0, n) when one LOAD filled them all (a LOAD fills
        consecutive entries in order, so they are consecutive in it), else ("rows", load ids, indices, n)."""
        end = first + n
        for f, e, load_id in reversed(self.recent):
            if f <= first and end <= e:
                return ("run", load_id, first - f, n)
            if f < end and first < e:      # a newer LOAD overwrote part of the range
                break
        ids = self.load[first:end]
        if ids[0] >= 0 and ids[0] == ids[-1] and (n <= 2 or (ids == ids[0]).all()):
            return ("run", int(ids[0]), int(self.index[first]), n)
        return ("rows", ids.copy(), self.index[first:end].copy(), n)


@dataclasses.dataclass
class _Chain:
    first: int                        # its first ACC entry
    rows: int                         # T: ACC rows it covers
    base: tuple | None                # None: zero; else (view ids [T] (-1: zero), row in that view [T])
    terms: list                       # (kind "set"/"add"/"max", ACT ref, WGT ref)


@dataclasses.dataclass
class _Post:
    src: tuple                        # (view ids [T] (-1: zero), rows [T]); or (view id,) for a whole view
    param: np.ndarray | None          # byte addresses of its PARAM record (len * PARAM_BYTES), None: zero
    instr: Instr
    table: np.ndarray | None = None   # with table=1: byte address of each TABLE element [depth, C]


@dataclasses.dataclass
class _Group:
    """Sum chains as one product A [sum of T, K] @ W [K, C x n]: row block b holds the n chains that read
    its activation bytes, each beside the others (their weight tiles side by side); blocks share W."""
    blocks: list                      # (rows T, n views, n POSTs or None) per row block
    a: "_Operand"                     # A's bytes in memory
    w: "_Operand"
    chunk: int                        # reduction lanes per float32 product, so that each is exact
    param: np.ndarray | None = None   # with POSTs: one POST reads each view whole and all round and clamp
    post: Instr | None = None         # alike (`post`), so one requantization serves them; their PARAM bytes


@dataclasses.dataclass
class _Stage:
    groups: list = dataclasses.field(default_factory=list)
    views: list = dataclasses.field(default_factory=list)     # views to evaluate here, bases first
    singles: list = dataclasses.field(default_factory=list)   # (view, [(kind, A, W)]): evaluated term by term
    posts: list = dataclasses.field(default_factory=list)     # post ids, in order
    stores: list = dataclasses.field(default_factory=list)    # (post ids [n], rows [n], dst [n, row_len])
    pool: list = dataclasses.field(default_factory=list)      # post ids whose outputs the scatter reads
    src: np.ndarray | None = None
    dst: np.ndarray | None = None


@dataclasses.dataclass
class Plan:
    stages: list
    views: list                       # (chain id, terms) per view
    chains: list
    posts: list
    results: list                     # RunResult per segment run
    fault: tuple | None               # (segment index, HardwareFault) that ends the run


class _Builder:
    def __init__(self, cfg: AccelConfig, mem_size: int):
        self.cfg, self.zero = cfg, mem_size
        self.entries = {b: _Entries(d) for b, d in ((Buffer.ACT, cfg.act_depth), (Buffer.WGT, cfg.wgt_depth),
                                                    (Buffer.PARAM, cfg.param_depth),
                                                    (Buffer.TABLE, cfg.table_depth))}
        self.act, self.wgt = self.entries[Buffer.ACT], self.entries[Buffer.WGT]
        self.loads: list[_Load] = []
        self.acc_chain = np.full(cfg.acc_depth, -1, np.int64)
        self.acc_row = np.zeros(cfg.acc_depth, np.int64)
        self.intact: dict[int, tuple[int, int]] = {}    # first ACC entry -> (chain, rows) of chains still whole
        self.out_post = np.full(cfg.out_depth, -1, np.int64)
        self.out_row = np.zeros(cfg.out_depth, np.int64)
        self.chains: list[_Chain] = []
        self.views: list[tuple[int, int]] = []
        self.view_of: dict[tuple[int, int], int] = {}
        self.scheduled: set[int] = set()
        self.posts: list[_Post] = []
        self.stages = [_Stage()]
        self.pending = np.zeros(mem_size, bool)       # bytes a STORE of the current stage writes
        self.pending_dst: list[np.ndarray] = []
        self.written = np.full(mem_size, -1, np.int64)  # the last earlier stage whose STOREs wrote each byte
        self.valid: dict[int, bool] = {}
        self.later_programs = np.zeros(mem_size, bool)
        self.max_a, self.max_w = -cfg.act_min, -cfg.weight_min     # the largest |value| a LOAD can give

    # ---- following the trace ----
    def step(self, i: Instr, end: int) -> None:
        op = i.op
        if op == Opcode.MATMUL:
            self._matmul(i)
        elif op == Opcode.LOAD:
            self._load(i, end)
        elif op == Opcode.POST:
            self._post(i)
        else:
            self._store(i)

    def _load(self, i: Instr, end: int) -> None:
        f = i.fields
        # the extent first: most LOADs read nowhere near this stage's STOREs
        if self.pending[f["ext_addr"]:end].any() and self.pending[Golden._addresses(i)].any():
            self._close_stage()
        self.loads.append(_Load(f["ext_addr"], f["rows"], f["ext_stride"], f["block_stride"], f["row_len"],
                                len(self.stages) - 1, i))
        self.entries[f["buf"]].fill(f["buf_addr"], f["rows"] * f["blocks"], len(self.loads) - 1)

    def _matmul(self, i: Instr) -> None:
        f = i.fields
        T, acc_addr = f["rows"], f["acc_addr"]
        rows = slice(acc_addr, acc_addr + T)
        term = ("set" if not f["accumulate"] else "max" if f["reduce_max"] else "add",
                self.act.ref(f["act_addr"], T), self.wgt.ref(f["wgt_addr"], self.cfg.rows))
        whole = self.intact.get(acc_addr)
        if term[0] != "set" and whole is not None and whole[1] == T:
            self.chains[whole[0]].terms.append(term)
            return
        cur, at = self.acc_chain[rows], self.acc_row[rows]
        base = None
        if term[0] != "set" and (cur >= 0).any():
            base = (np.array([self._view(c) if c >= 0 else -1 for c in cur.tolist()], np.int64), at.copy())
        for c in set(cur.tolist()) - {-1}:       # chains that lose rows here are no longer whole
            if self.intact.get(self.chains[c].first, (-1,))[0] == c:
                del self.intact[self.chains[c].first]
        self.chains.append(_Chain(acc_addr, T, base, [term]))
        self.intact[acc_addr] = (len(self.chains) - 1, T)
        self.acc_chain[rows] = len(self.chains) - 1
        self.acc_row[rows] = np.arange(T)

    def _view(self, chain: int) -> int:
        key = (chain, len(self.chains[chain].terms))
        if key not in self.view_of:
            self.view_of[key] = len(self.views)
            self.views.append(key)
        return self.view_of[key]

    def _post(self, i: Instr) -> None:
        T, rows = i.rows, slice(i.acc_addr, i.acc_addr + i.rows)
        whole = self.intact.get(i.acc_addr)
        if whole is not None and whole[1] == T:
            src = (self._view(whole[0]),)
        else:
            cur, at = self.acc_chain[rows], self.acc_row[rows]
            ids = {c: self._view(c) for c in set(cur.tolist()) if c >= 0}
            src = (np.array([ids.get(c, -1) for c in cur.tolist()], np.int64), at.copy())
        for v in (src if len(src) == 1 else set(src[0].tolist()) - {-1}):
            self._schedule(int(v))
        param = None
        load_id = int(self.entries[Buffer.PARAM].load[i.param_addr])
        if load_id >= 0:
            L = self.loads[load_id]
            self._check_carry(load_id)
            start = int(L.starts(self.entries[Buffer.PARAM].index[i.param_addr]))
            param = start + np.arange(L.row_len * PARAM_BYTES, dtype=np.int64)
        self.posts.append(_Post(src, param, i, self._table() if i.table else None))
        self.stages[-1].posts.append(len(self.posts) - 1)
        self.out_post[i.out_addr:i.out_addr + T] = len(self.posts) - 1
        self.out_row[i.out_addr:i.out_addr + T] = np.arange(T)

    def _table(self) -> np.ndarray:
        """Byte addresses of the activation table's elements [depth, C] as they stand; `zero` for lanes past a
        LOAD's row_len and entries never loaded."""
        entries, C = self.entries[Buffer.TABLE], self.cfg.cols
        out = np.full((self.cfg.table_depth, C), self.zero, np.int64)
        for load_id in set(entries.load.tolist()) - {-1}:
            self._check_carry(load_id)
            L = self.loads[load_id]
            rows = np.flatnonzero(entries.load == load_id)
            out[rows, :L.row_len] = L.starts(entries.index[rows])[:, None] + np.arange(L.row_len)
        return out

    def _store(self, i: Instr) -> None:
        dst = Golden._addresses(i)
        if self.later_programs[dst].any():
            raise Unsupported("a STORE writes the program of a later segment")
        n = i.rows * i.blocks
        entries = slice(i.buf_addr, i.buf_addr + n)
        self.stages[-1].stores.append((self.out_post[entries].copy(), self.out_row[entries].copy(), dst))
        self.pending[dst] = True
        self.pending_dst.append(dst.reshape(-1))

    # ---- stages ----
    def _check_carry(self, load_id: int) -> None:
        """A LOAD of an earlier stage read at this one: its bytes must not have changed since."""
        L = self.loads[load_id]
        if L.stage == len(self.stages) - 1:
            return
        if load_id not in self.valid:
            self.valid[load_id] = bool((self.written[Golden._addresses(L.instr)] < L.stage).all())
        if not self.valid[load_id]:
            raise Unsupported("a chain reads a LOAD whose bytes a later STORE changed")

    def _schedule(self, v: int) -> None:
        """Evaluate view `v` in the current stage, after the views its base reads."""
        if v in self.scheduled:
            return
        self.scheduled.add(v)
        chain = self.chains[self.views[v][0]]
        if chain.base is not None:
            for b in set(chain.base[0].tolist()) - {-1}:
                self._schedule(int(b))
        for _, a, w in chain.terms[:self.views[v][1]]:
            for ref in (a, w):
                for load_id in ([ref[1]] if ref[0] == "run" else set(ref[1].tolist()) - {-1}):
                    self._check_carry(int(load_id))
        self.stages[-1].views.append(v)

    def _close_stage(self) -> None:
        self._finish(self.stages[-1])
        stage = len(self.stages) - 1
        for dst in self.pending_dst:
            self.pending[dst] = False
            self.written[dst] = stage
        self.pending_dst = []
        self.valid.clear()       # checked again against the new writes
        self.stages.append(_Stage())

    def _starts(self, ref: tuple, elem_bytes: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(first byte, elements) of each entry of a ref; a never-loaded entry has 0 elements."""
        if ref[0] == "run":
            L = self.loads[ref[1]]
            return L.starts(ref[2] + np.arange(ref[3])), np.full(ref[3], L.row_len)
        ids, idx = ref[1], ref[2]
        starts, lens = np.zeros(len(ids), np.int64), np.zeros(len(ids), np.int64)
        for load_id in set(ids.tolist()) - {-1}:
            m = ids == load_id
            starts[m], lens[m] = self.loads[load_id].starts(idx[m]), self.loads[load_id].row_len
        return starts, lens

    def _key(self, ref: tuple) -> tuple:
        """What a ref reads, as a key: refs that read the same bytes (a reload of the same tile) are equal.
        Within a stage, the same bytes hold the same values (a changed byte would have opened a new stage
        or failed the carry check)."""
        if ref[0] == "run":
            L = self.loads[ref[1]]
            return ("run", L.ext, L.rows, L.ext_stride, L.block_stride, L.row_len, ref[2], ref[3])
        starts, lens = self._starts(ref)
        return ("rows", starts.tobytes(), lens.tobytes())

    def _lanes(self, ref: tuple, width: int) -> np.ndarray:
        """Byte address of each element [entries, width] of a ref (the zero byte past memory where the
        LOAD zero-filled)."""
        starts, lens = self._starts(ref)
        lane = np.arange(width)
        return np.where(lane < lens[:, None], starts[:, None] + lane, self.zero)

    def _lanes_of(self, refs: list[tuple], width: int) -> np.ndarray:
        """`_lanes` of refs of the same length, stacked [refs, entries, width]; the single-LOAD refs at once."""
        n = refs[0][3]
        out = np.empty((len(refs), n, width), np.int64)
        run = [k for k, r in enumerate(refs) if r[0] == "run"]
        if run:
            loads = [self.loads[refs[k][1]] for k in run]
            ext, rows, es, bs, row_len = (np.array([getattr(L, f) for L in loads])[:, None]
                                          for f in ("ext", "rows", "ext_stride", "block_stride", "row_len"))
            e = np.array([refs[k][2] for k in run])[:, None] + np.arange(n)
            starts = ext + (e // rows) * bs + (e % rows) * es
            lane = np.arange(width)
            out[run] = np.where(lane < row_len[:, :, None], starts[:, :, None] + lane, self.zero)
        for k, r in enumerate(refs):
            if r[0] != "run":
                out[k] = self._lanes(r, width)
        return out

    def _finish(self, stage: _Stage) -> None:
        """Turn the stage's views into product groups and its STOREs into one scatter."""
        self._products(stage)
        self._scatter(stage)

    def _products(self, stage: _Stage) -> None:
        R, C = self.cfg.rows, self.cfg.cols
        groups: dict[tuple, list[int]] = {}
        for v in stage.views:
            chain_id, n = self.views[v]
            chain = self.chains[chain_id]
            terms = chain.terms[:n]
            if chain.base is None and all(k != "max" for k, _, _ in terms):
                key = (chain.rows, tuple(self._key(a) for _, a, _ in terms))
                groups.setdefault(key, []).append(v)
            else:
                stage.singles.append((v, [(k, _Operand.of(self._lanes(a, R), self.zero),
                                           _Operand.of(self._lanes(w, C), self.zero)) for k, a, w in terms]))
        # the largest |partial sum| of a float32 product of `chunk` lanes is exact; the chunks add in int64
        chunk = max(1, _EXACT32 // (self.max_a * self.max_w))
        by_weights: dict[bytes, list] = {}
        readers = self._readers(stage)
        for views in groups.values():
            terms = self.chains[self.views[views[0]][0]].terms[:self.views[views[0]][1]]
            a_idx = self._lanes_of([a for _, a, _ in terms], R)                           # [terms, T, R]
            a_idx = a_idx.transpose(1, 0, 2).reshape(a_idx.shape[1], -1)                   # [T, terms * R]
            keep = (a_idx != self.zero).any(axis=0)          # lanes every row zero-fills add nothing
            w_all = []
            for v in views:
                vt = self.chains[self.views[v][0]].terms[:self.views[v][1]]
                w_all.append(self._lanes_of([w for _, _, w in vt], C).reshape(-1, C)[keep])   # [K, C]
            w_idx = np.concatenate(w_all, axis=1)
            posts = self._whole_posts(readers, views)
            key = (w_idx.shape, w_idx.tobytes(), None if posts is None else (posts[1], posts[2].tobytes()))
            by_weights.setdefault(key, []).append((views, a_idx[:, keep], w_idx, posts))
        # products with the same weights and POSTs that requantize alike stack their rows: fewer, taller
        # products (a layer's spatial tiles)
        taken = set()
        for (_, _, post_key), parts in by_weights.items():
            blocks = [(a_idx.shape[0], views, None if posts is None else posts[0]) for views, a_idx, _, posts in parts]
            group = _Group(blocks, _Operand.of(np.concatenate([p[1] for p in parts]), self.zero),
                           _Operand.of(parts[0][2], self.zero), chunk)
            if post_key is not None:
                group.param, group.post = _index(parts[0][3][2]), self.posts[parts[0][3][0][0]].instr
                taken.update(p for _, _, posts in blocks for p in posts)
            stage.groups.append(group)
        stage.posts = [p for p in stage.posts if p not in taken]

    def _scatter(self, stage: _Stage) -> None:
        """Every STORE's bytes in program order as one scatter, the last write of a byte winning."""
        C = self.cfg.cols
        pool = sorted({int(p) for posts, _, _ in stage.stores for p in posts.tolist()} - {-1})
        offset, total = {}, 0
        for p in pool:
            offset[p] = total
            total += self.posts[p].instr.rows * C
        srcs, dsts = [], []
        for posts, rows, dst in stage.stores:
            base = np.array([offset.get(p, -1) for p in posts.tolist()], np.int64)
            col = np.arange(dst.shape[1])
            src = np.where(base[:, None] >= 0, base[:, None] + rows[:, None] * C + col, total)
            srcs.append(src.reshape(-1))
            dsts.append(dst.reshape(-1))
        if dsts:
            dst, src = np.concatenate(dsts), np.concatenate(srcs)
            last = dst.size - 1 - np.unique(dst[::-1], return_index=True)[1]
            stage.pool, stage.dst, stage.src = pool, _index(dst[last]), _index(src[last])

    def _readers(self, stage: _Stage) -> dict[int, list[int]]:
        """The POSTs of the stage that read each view: the POST's id if it reads the view whole, else -1."""
        readers: dict[int, list[int]] = {}
        for p in stage.posts:
            src = self.posts[p].src
            for v in ((src[0],) if len(src) == 1 else set(src[0].tolist())):
                readers.setdefault(int(v), []).append(p if len(src) == 1 else -1)
        return readers

    def _whole_posts(self, readers: dict[int, list[int]], views: list[int]
                     ) -> tuple[list[int], tuple, np.ndarray] | None:
        """(the POST reading each view, their rounding and clamp, their PARAM bytes side by side) if one POST
        of the stage reads each view whole and they all round and clamp alike, else None."""
        posts = [readers.get(v, [-1]) for v in views]
        if any(len(r) != 1 or r[0] < 0 for r in posts):
            return None
        posts = [r[0] for r in posts]
        if any(self.posts[p].table is not None for p in posts):
            return None
        scalars = {tuple(self.posts[p].instr.fields[f] for f in ("shift", "zero_point", "clamp_lo", "clamp_hi"))
                   for p in posts}
        if len(scalars) != 1:
            return None
        width = self.cfg.cols * PARAM_BYTES
        param = np.full((len(posts), width), self.zero, np.int64)     # zero records past each row_len
        for k, p in enumerate(posts):
            if self.posts[p].param is not None:
                param[k, :self.posts[p].param.size] = self.posts[p].param
        return posts, scalars.pop(), param.reshape(-1)

    def finish(self) -> None:
        self._finish(self.stages[-1])


def _index(a: np.ndarray) -> np.ndarray:
    """Addresses as int32 where they fit: half the memory, and faster to gather with."""
    return a.astype(np.int32) if a.size and a.max() < (1 << 31) else a.astype(np.int64)


def _nest(v: np.ndarray) -> list[tuple[int, int]] | None:
    """(count, stride) per dimension, outermost first, with v[i] - v[0] the sum of index x stride over the
    dimensions of i in C order; None if `v` has no such form."""
    v = v - v[0]
    dims = []
    while v.size > 1:
        d = np.diff(v)
        change = np.flatnonzero(d != d[0])
        run = int(change[0]) + 1 if change.size else v.size
        if v.size % run:
            return None
        m = v.reshape(-1, run)
        if not (m - m[:, :1] == m[0]).all():
            return None
        dims.append((run, int(d[0])))
        v = m[:, 0]
    return dims[::-1]


@dataclasses.dataclass
class _Operand:
    """A matrix of memory bytes: a strided view where its addresses are a row part plus a column part, each
    nested strides (a convolution's activations: output rows and columns by taps and channels; weight
    tiles side by side), which copies without reading an index per element; else an address per element."""
    shape: tuple[int, int]
    view: tuple | None = None          # (first byte, counts, byte strides)
    index: np.ndarray | None = None

    @staticmethod
    def of(idx: np.ndarray, zero: int) -> "_Operand":
        rows, cols = idx[:, 0] - idx[0, 0], idx[0]
        if idx.size > 64 and not (idx == zero).any() and (idx == rows[:, None] + cols[None, :]).all():
            r, c = _nest(rows), _nest(cols)
            if r is not None and c is not None:
                dims = r + c
                return _Operand(idx.shape, (int(idx[0, 0]), tuple(n for n, _ in dims), tuple(s for _, s in dims)))
        return _Operand(idx.shape, index=_index(idx))

    def values(self, mem: np.ndarray, lut: np.ndarray | None) -> np.ndarray:
        """The matrix as float32: each byte of `mem` through `lut`, or (None) `mem`'s own values."""
        if self.view is None:
            raw = mem.take(self.index)
        else:
            first, counts, strides = self.view
            raw = np.lib.stride_tricks.as_strided(mem[first:], counts, strides, writeable=False)
        if lut is not None:
            return lut.take(raw).reshape(self.shape)
        out = np.empty(raw.shape, np.float32)
        np.copyto(out, raw, casting="unsafe")     # one pass from the strided bytes
        return out.reshape(self.shape)


@functools.lru_cache(maxsize=4)     # a plan is large; a run repeats one program over many chunks
def _cached_plan(blobs: tuple[bytes, ...], segments: tuple[tuple[int, int], ...], cfg: AccelConfig,
                 mem_size: int, watchdog: int) -> Plan | None:
    """The plan, or None where the run is Unsupported: kept too, so that a run stepped once is not traced
    again for every chunk."""
    try:
        return plan(blobs, segments, cfg, mem_size, watchdog)
    except Unsupported:
        return None


def plan(blobs: tuple[bytes, ...], segments: tuple[tuple[int, int], ...], cfg: AccelConfig, mem_size: int,
         watchdog: int = 0) -> Plan:
    """The plan of running `segments` [(prog_addr, prog_len)] whose programs are `blobs` (the HardwareFault
    where the program check faults) on a memory of `mem_size` bytes. Raises Unsupported."""
    b = _Builder(cfg, mem_size)
    results, fault, traced = [], None, [0]
    with heartbeat("golden: tracing the program's data flow, once per program and process",
                   detail=lambda: f"{traced[0]:,} instructions so far"):
        for index in range(len(segments)):
            fault = _plan_segment(b, index, segments, blobs, cfg, mem_size, watchdog, results, traced)
            if fault:
                break
        b.finish()
    return Plan(b.stages, b.views, b.chains, b.posts, results, fault)


def _plan_segment(b: _Builder, index: int, segments, blobs, cfg: AccelConfig, mem_size: int, watchdog: int,
                  results: list, traced: list) -> tuple | None:
    """Follow segment `index`'s trace into the builder; the (segment, fault) that ends the run, if any."""
    (prog_addr, _), blob = segments[index], blobs[index]
    b.later_programs[:] = False
    for (addr, _), later in zip(segments[index + 1:], blobs[index + 1:]):
        if not isinstance(later, HardwareFault):      # a program that faults its check is never read
            b.later_programs[addr:addr + len(later)] = True
    if isinstance(blob, HardwareFault):
        return index, blob
    for item in trace(blob, prog_addr, cfg, mem_size, watchdog):
        if isinstance(item, tuple):
            b.step(*item)
            traced[0] += 1
        elif isinstance(item, HardwareFault):
            return index, item
        else:
            results.append(item)
    return None


def program_blobs(mem: np.ndarray, segments, cfg: AccelConfig) -> tuple[bytes | HardwareFault, ...]:
    """Each segment's program words, or the HardwareFault its program check raises (`plan`'s `blobs`)."""
    out = []
    for prog_addr, prog_len in segments:
        try:
            out.append(program_blob(mem, prog_addr, prog_len, cfg))
        except HardwareFault as f:
            out.append(f)
    return tuple(out)


class _Run:
    """One execution of a plan on a memory image."""

    def __init__(self, p: Plan, cfg: AccelConfig, mem: np.ndarray):
        self.p, self.cfg = p, cfg
        self.mem = np.zeros(mem.size + 1, np.uint8)     # one zero byte past the end: zero-filled lanes read it
        self.mem[:-1] = mem
        self.signed = self.mem.view(np.int8)
        # the value each byte loads as into ACT (0) and WGT (1): the signed byte itself at 8 bits
        self.luts = [None if bits == 8 else numerics.loaded(np.arange(256).astype(np.uint8).view(np.int8), bits,
                                                             weight=weight).astype(np.float32)
                     for bits, weight in ((cfg.act_bits, False), (cfg.weight_bits, True))]
        self.vals: dict[int, np.ndarray] = {}
        self.outs: dict[int, np.ndarray] = {}

    def values(self, op: "_Operand", which: int) -> np.ndarray:
        lut = self.luts[which]
        return op.values(self.signed if lut is None else self.mem, lut)

    def product(self, a: "_Operand", w: "_Operand", chunk: int = 1 << 30) -> np.ndarray:
        """wrap(A @ W) to acc_bits, from float32 products of at most `chunk` reduction lanes each."""
        av, wv = self.values(a, 0), self.values(w, 1)
        acc = None
        for k in range(0, max(1, av.shape[1]), chunk):
            part = (av[:, k:k + chunk] @ wv[k:k + chunk]).astype(np.int64)
            acc = part if acc is None else acc + part
        return numerics.wrap(acc, self.cfg.acc_bits)

    def rows_of(self, src: tuple) -> np.ndarray:
        """ACC rows [T, C] from (view ids, rows), a zero where the id is -1."""
        ids, rows = src
        out = np.zeros((len(ids), self.cfg.cols), np.int64)
        for v in set(ids.tolist()) - {-1}:
            m = ids == v
            out[m] = self.vals[v][rows[m]]
        return out

    def requantize(self, acc: np.ndarray, param: np.ndarray | None, i: Instr, table: np.ndarray | None = None
                   ) -> np.ndarray:
        """The POST datapath on ACC rows [T, n * C], the n PARAM records at byte addresses `param`; then the
        lookup in the TABLE elements at byte addresses `table` [depth, C] (n = 1)."""
        bias = np.zeros(acc.shape[1], np.int64)
        mult = np.zeros(acc.shape[1], np.int64)
        if param is not None:
            rec = self.mem.take(param).view(PARAM_DTYPE)
            bias[:rec.size], mult[:rec.size] = rec["bias"], rec["mult"]
        y = numerics.requantize(acc, bias, mult, i.shift, i.zero_point, i.clamp_lo, i.clamp_hi)
        y = numerics.wrap(y, self.cfg.act_bits)
        if table is None:
            return y
        values = numerics.loaded(self.signed.take(table), self.cfg.act_bits, weight=False)
        return numerics.look_up(y, values, self.cfg.act_bits)

    def stage(self, st: _Stage) -> None:
        C, acc_bits = self.cfg.cols, self.cfg.acc_bits
        for g in st.groups:
            acc = self.product(g.a, g.w, g.chunk)
            y = None if g.post is None else self.requantize(acc, g.param, g.post)
            first = 0
            for rows, views, posts in g.blocks:
                for k, v in enumerate(views):
                    self.vals[v] = acc[first:first + rows, k * C:(k + 1) * C]
                    if y is not None:
                        self.outs[posts[k]] = y[first:first + rows, k * C:(k + 1) * C]
                first += rows
        for v, terms in st.singles:
            chain = self.p.chains[self.p.views[v][0]]
            acc = np.zeros((chain.rows, C), np.int64) if chain.base is None else self.rows_of(chain.base)
            for kind, a, w in terms:
                prod = self.product(a, w)
                acc = prod if kind == "set" else np.maximum(prod, acc) if kind == "max" else numerics.wrap(
                    prod + acc, acc_bits)
            self.vals[v] = acc
        for post_id in st.posts:
            post = self.p.posts[post_id]
            acc = self.vals[post.src[0]] if len(post.src) == 1 else self.rows_of(post.src)
            self.outs[post_id] = self.requantize(acc, post.param, post.instr, post.table)
        if st.dst is not None:
            pool = np.concatenate([self.outs[p].reshape(-1) for p in st.pool] + [np.zeros(1, np.int64)])
            self.mem[st.dst] = pool.take(st.src).astype(np.int8).view(np.uint8)


def run_dataflow(cfg: AccelConfig, memory: np.ndarray, segments: list[tuple[int, int]], *, watchdog: int = 0
                 ) -> RunResult:
    """Run `segments` like `Golden(cfg, memory).run_segments`, with the same effect on `memory`, the same
    result and the same fault, through the run's plan; step by step where no plan expresses the run."""
    key = tuple((int(a), int(n)) for a, n in segments)
    p = _cached_plan(program_blobs(memory, key, cfg), key, cfg, memory.size, watchdog)
    if p is None:
        return Golden(cfg, memory).run_segments(segments, watchdog=watchdog)
    run = _Run(p, cfg, memory)
    for st in p.stages:
        run.stage(st)
    memory[:] = run.mem[:-1]
    if p.fault is not None:
        index, fault = p.fault
        raise program_fault(segments, index, fault)
    return sum_segments(p.results)
