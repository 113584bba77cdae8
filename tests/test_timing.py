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
