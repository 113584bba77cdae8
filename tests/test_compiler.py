"""The compiled program on the golden emulator equals the integer reference on every element."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from emu.compiler.codegen import CompileError, compile_graph
from emu.compiler.profile import cycle_profile
from emu.contract.config import AccelConfig
from graphs import NetBuilder, assert_matches_reference, random_input, random_mlp
from rtlcheck import SMALL


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(1, 9), cols=st.integers(1, 9), bits=st.sampled_from([(2, 2), (4, 4), (8, 8), (4, 8), (8, 3)]),
       dims=st.lists(st.integers(1, 40), min_size=2, max_size=4), batch=st.integers(1, 20),
       n=st.integers(1, 45), relu=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_golden_equals_reference(rows, cols, bits, dims, batch, n, relu, seed):
    act_bits, weight_bits = bits
    rng = np.random.default_rng(seed)
    g = random_mlp(rng, dims, act_bits=act_bits, weight_bits=weight_bits, relu=relu)
    cfg = AccelConfig(rows=rows, cols=cols, act_bits=act_bits, weight_bits=weight_bits, instr_depth=1 << 16)
    assert_matches_reference(g, cfg, random_input(rng, g, n), batch)


def test_small_buffers_split_the_batch():
    rng = np.random.default_rng(3)
    g = random_mlp(rng, [30, 17, 5])
    cfg = AccelConfig(rows=4, cols=3, act_depth=40, acc_depth=9, out_depth=12)
    program, out = assert_matches_reference(g, cfg, random_input(rng, g, 50), 25)
    assert out.runs == 2


def test_mixed_precision_on_wider_hardware():
    rng = np.random.default_rng(4)
    g = random_mlp(rng, [12, 7], act_bits=4, weight_bits=2)
    assert_matches_reference(g, AccelConfig(rows=5, cols=2), random_input(rng, g, 9), 4)


def test_accumulator_overflow_is_refused():
    rng = np.random.default_rng(5)
    g = random_mlp(rng, [3000, 4])
    g.nodes[0].weight[:] = 127
    with pytest.raises(CompileError, match=r"layer fc1: accumulators can reach \d+ \(K=3000\), which does not "
                                           r"fit acc_bits=20"):
        compile_graph(g, AccelConfig(acc_bits=20), batch=1)


def test_too_many_bits_for_the_hardware_are_refused():
    g = random_mlp(np.random.default_rng(6), [8, 4])
    with pytest.raises(CompileError, match="8-bit activations, but the accelerator is built for act_bits=4"):
        compile_graph(g, AccelConfig(act_bits=4), batch=1)
    with pytest.raises(CompileError, match="batch=0 is not accepted"):
        compile_graph(g, AccelConfig(), batch=0)


def test_a_reduction_longer_than_one_run_goes_on_in_the_next():
    """One output tile's 8 K-tiles need 38 instructions; with instr_depth=16 the segments cut it after SYNCs and
    the accumulators carry over from run to run."""
    rng = np.random.default_rng(7)
    g = random_mlp(rng, [64, 64])
    program, _ = assert_matches_reference(g, AccelConfig(instr_depth=16), random_input(rng, g, 3), batch=1)
    assert len(program.segments) > 3


def test_long_program_is_split_into_segments():
    rng = np.random.default_rng(9)
    g = random_mlp(rng, [40, 48, 30, 10])
    cfg = AccelConfig(rows=3, cols=5, **SMALL)
    program, _ = assert_matches_reference(g, cfg, random_input(rng, g, 5), batch=None)
    assert program.batch == 1 and len(program.segments) > 1
    ends = [pc for pc, i in enumerate(program.instructions) if i.op.name == "END"]
    assert ends == [first + n - 1 for first, n in program.segments]
    assert max(n for _, n in program.segments) <= cfg.instr_depth


def test_maps_larger_than_the_buffers_run_in_bands():
    rng = np.random.default_rng(10)
    b = NetBuilder(rng, (19, 13, 3))
    b.conv(6, padding=(1, 1, 1, 1))
    b.conv(7, stride=(2, 2), padding=(1, 1, 1, 1))
    b.pool("max")
    cfg = AccelConfig(rows=3, cols=5, **SMALL)       # 19 x 13 = 247 output pixels, the buffers hold 32
    program, _ = assert_matches_reference(b.graph(), cfg, random_input(rng, b.graph(), 2), batch=2)
    assert len(program.segments) > 1


def test_activation_loads_hide_behind_the_matmuls():
    """A 3x3 conv of 64 channels at 28x28 (ResNet's middle stages): each K-tile's activations are 8 bytes
    of every 64-byte pixel, one bus beat and its latency each, three times a MATMUL's cycle per entry. The
    schedule loads them in parts beside the N-tiles' MATMULs and cuts the map in bands small enough that
    enough N-tiles run at once, so the array, not the DMA, bounds the layer (48 % before either)."""
    conv = _conv3x3_profile(11, (28, 28, 64))
    assert conv.array_busy > conv.dma_busy
    assert conv.utilization(64) > 0.75


def _conv3x3_profile(seed: int, hwc: tuple[int, int, int]):
    """The cycle profile of one padded 3x3 conv keeping its channels, on 8x8, after checking golden against
    the reference."""
    rng = np.random.default_rng(seed)
    b = NetBuilder(rng, hwc)
    b.conv(hwc[2], padding=(1, 1, 1, 1))
    program, _ = assert_matches_reference(b.graph(), AccelConfig(rows=8, cols=8), random_input(rng, b.graph(), 1),
                                          batch=1)
    (conv,) = cycle_profile(program)
    return conv


def test_window_rows_share_one_activation_load():
    """A 3x3 conv of 16 channels at 32x32 (CIFAR ResNet-20's first stage): each K-tile's rows are 8 bytes of
    every 16-byte pixel and only 2 N-tiles share them, so loading each window row's K-tiles apart left the
    layer DMA-bound (1.74x the array). The lower window rows read the top row's load, three rows longer
    (KTile.lead), and the array bounds the layer; golden still equals the reference."""
    conv = _conv3x3_profile(12, (32, 32, 16))
    assert conv.array_busy > conv.dma_busy and conv.utilization(64) > 0.7


def test_save_load_round_trip(tmp_path):
    from emu.compiler.program import Program
    g = random_mlp(np.random.default_rng(8), [10, 6])
    p = compile_graph(g, AccelConfig(rows=3, cols=5), batch=4)
    p.save(tmp_path / "out")
    q = Program.load(tmp_path / "out")
    assert q.cfg == p.cfg and np.array_equal(q.image, p.image) and q.layers == p.layers
    assert [str(i) for i in q.instructions] == [str(i) for i in p.instructions]
