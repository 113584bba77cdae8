"""A small Python model of the DMA's machines (hdl/dma/) for their block tests: a transfer, its span
constants (span.SpanSetup's outputs), its spans and bursts (emu.contract.timing) and its beats, one
beat_signature record each (lanes.LaneSequencer's outputs), plus helpers to drive a signature from a dict."""
from __future__ import annotations

from dataclasses import dataclass

from emu.contract import timing

LIM_BITS = 13     # hdl.dma.signatures.LIM_BITS: the burst-fit compare window


@dataclass(frozen=True)
class Transfer:
    """One LOAD/STORE as the DMA's argument registers hold it (byte counts, not elements)."""
    bus_bytes: int
    rows: int
    blocks: int
    row_bytes: int
    buf_addr: int
    ext_addr: int
    ext_stride: int
    block_stride: int
    store: int = 0
    target: int = 0

    @property
    def merged(self) -> bool:
        return self.ext_stride == self.row_bytes >= self.bus_bytes

    def spans(self) -> list[tuple[int, int]]:
        """(address, bytes) of each span, in order (emu.contract.timing.dma_spans, from bytes)."""
        out = []
        for b in range(self.blocks):
            base = self.ext_addr + b * self.block_stride
            if self.merged:
                out.append((base, self.rows * self.row_bytes))
            else:
                out += [(base + r * self.ext_stride, self.row_bytes) for r in range(self.rows)]
        return out

    def bursts(self) -> list[tuple[int, int]]:
        """(aligned address, beats) of each burst, in order."""
        return [b for a, n in self.spans() for b in timing.bursts(a, n, self.bus_bytes)]

    def xfer(self) -> dict:
        """The transfer_signature members but `go`."""
        return dict(store=self.store, target=self.target, rows=self.rows, blocks=self.blocks,
                    row_bytes=self.row_bytes, buf_addr=self.buf_addr, ext_addr=self.ext_addr,
                    ext_stride=self.ext_stride, block_stride=self.block_stride)

    def span_constants(self) -> dict:
        """The span_signature members but `go_span`, as SpanSetup holds them from go_span."""
        B, rb, rows = self.bus_bytes, self.row_bytes, self.rows
        lg_b = B.bit_length() - 1
        span = rows * rb if self.merged else rb
        return dict(
            merged=int(self.merged), span_now=span, span_now_m1=(span - 1) % (1 << LIM_BITS),
            span_bytes=span, span_bytes_m1=(span - 1) % (1 << LIM_BITS),
            block_spans=0 if self.merged else rows - 1, more_spans_0=int(not self.merged and rows != 1),
            rb_m1=(rb - 1) % (1 << LIM_BITS), rows_m1=rows - 1, blocks_m1=self.blocks - 1,
            multi_rows=int(rows != 1), multi_blocks=int(self.blocks != 1), b_mrb=B - rb,
            stride_lane=self.ext_stride % B, bstride_lane=self.block_stride % B,
            prod_hi=(rows * rb) >> lg_b, prod_hi_p1=((rows * rb) >> lg_b) + 1, prod_hi_p2=((rows * rb) >> lg_b) + 2,
            rb_hi_p1=(rb >> lg_b) + 1, rb_hi_p2=(rb >> lg_b) + 2,
            hi0=int(span // B == 0), hi1=int(span // B == 1), hi2=int(span // B == 2),
        )

    def row_mask(self, entry_bytes: int) -> int:
        """SpanSetup's rb_mask: the bytes below row_bytes of an entry padded to whole bus words."""
        width = -(-entry_bytes // self.bus_bytes) * self.bus_bytes
        return (1 << min(self.row_bytes, width)) - 1

    def beats(self) -> list[list[dict]]:
        """Per span, its beats as beat_signature records (but `in_beat`): the bus lanes [skip, skip + n) of
        each, and where its first byte lands, counting the transfer's bytes on from buf_addr's first byte."""
        B, rb = self.bus_bytes, self.row_bytes
        out, k = [], 0
        for addr, nbytes in self.spans():
            lane0, beats = addr % B, []
            for i in range(-(-(lane0 + nbytes) // B)):
                skip = lane0 if i == 0 else 0
                end = min(B, lane0 + nbytes - i * B)
                n, pos, entry = end - skip, k % rb, self.buf_addr + k // rb
                s = pos + n - rb
                beats.append(dict(lanes=((1 << end) - 1) & ~((1 << skip) - 1), n=n, skip=skip,
                                  skip_rb=(skip + rb) % B, pos=pos, entry=entry, entry_p1=entry + 1, s=s,
                                  complete=int(s >= 0)))
                k += n
            out.append(beats)
        return out


def random_transfer(rng, bus_bytes: int, *, store: int = 0, long: bool = False) -> Transfer:
    """A transfer of random geometry: rows merged or not, unaligned, often near a 4 KiB boundary; `long`:
    also spans of thousands of bytes (256-beat cuts). Entries stay below 2**16, addresses below 2**32."""
    B = bus_bytes
    rows = int(rng.choice([1, 2, 3, int(rng.integers(1, 9))] + ([int(rng.integers(20, 60))] if long else [])))
    blocks = int(rng.choice([1, 2, int(rng.integers(1, 5))]))
    row_bytes = int(rng.choice([1, B - 1, B, B + 1, 2 * B - 1, int(rng.integers(1, 3 * B + 1)),
                                int(rng.integers(1, 769 if long else 97))]))
    row_bytes = max(1, row_bytes)
    ext_stride = row_bytes if rng.random() < 0.5 else int(rng.integers(0, 2 * row_bytes + 2 * B))
    block_stride = int(rng.integers(0, rows * max(ext_stride, row_bytes) + 300))
    ext_addr = int(rng.choice([0, 4096, 1 << 20])) + int(rng.integers(-200, 200)) + 4096
    return Transfer(bus_bytes=B, rows=rows, blocks=blocks, row_bytes=row_bytes, buf_addr=int(rng.integers(0, 300)),
                    ext_addr=ext_addr, ext_stride=ext_stride, block_stride=block_stride, store=store)


def drive(ctx, iface, values: dict) -> None:
    """ctx.set each member of `values` on the interface object `iface`."""
    for name, value in values.items():
        ctx.set(getattr(iface, name), value)


def read(ctx, iface, names) -> dict:
    """The members `names` of the interface object `iface`, as a dict."""
    return {name: ctx.get(getattr(iface, name)) for name in names}
