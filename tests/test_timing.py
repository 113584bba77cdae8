from hypothesis import given, strategies as st

from emu.contract import timing


@given(addr=st.integers(0, 1 << 20), nbytes=st.integers(1, 20000), bus_bytes=st.sampled_from([4, 8, 16]))
def test_bursts_cover_the_bytes_without_crossing_4k(addr, nbytes, bus_bytes):
    bursts = timing.bursts(addr, nbytes, bus_bytes)
    assert bursts[0][0] <= addr
    end = bursts[-1][0] + bursts[-1][1] * bus_bytes
    assert addr + nbytes <= end < addr + nbytes + bus_bytes
    for (start, beats), nxt in zip(bursts, bursts[1:] + [None]):
        assert start % bus_bytes == 0 and 1 <= beats <= timing.AXI_MAX_BURST_BEATS
        assert start // timing.AXI_BOUNDARY == (start + beats * bus_bytes - 1) // timing.AXI_BOUNDARY
        if nxt:
            assert nxt[0] == start + beats * bus_bytes


@given(op=st.sampled_from(["LOAD", "STORE"]), buf=st.sampled_from([0, 1, 2]), rows=st.integers(1, 40),
       blocks=st.integers(1, 5), row_len=st.integers(1, 64), addr=st.integers(0, 1 << 16),
       stride=st.integers(0, 5000), block_stride=st.integers(0, 20000), bus_bits=st.sampled_from([32, 64, 128]))
def test_dma_cycles_equal_the_sum_over_every_burst(op, buf, rows, blocks, row_len, addr, stride, block_stride,
                                                   bus_bits):
    """dma_cycles counts rows moved one span each in one go; it equals charging every burst of dma_spans."""
    from emu.contract.config import AccelConfig
    from emu.contract.isa import Opcode, make
    cfg = AccelConfig(rows=64, cols=64, bus_bits=bus_bits)
    instr = make(Opcode[op], buf=3 if op == "STORE" else buf, rows=rows, row_len=row_len, buf_addr=0,
                 ext_addr=addr, ext_stride=stride, blocks=blocks, block_stride=block_stride)
    load = op == "LOAD"
    expected = timing.DMA_LOAD_SETUP + timing.DMA_LOAD_DRAIN if load else timing.DMA_STORE_SETUP
    latency = timing.DMA_READ_LATENCY if load else timing.DMA_WRITE_LATENCY
    for span_addr, nbytes in timing.dma_spans(instr, cfg.bus_bytes):
        expected += sum(latency + beats for _, beats in timing.bursts(span_addr, nbytes, cfg.bus_bytes))
    assert timing.dma_cycles(instr, cfg) == expected
