"""Per operator: the compiled program on golden equals the integer reference on every element."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from emu.compiler.codegen import CompileError, compile_graph
from emu.contract.config import AccelConfig
from graphs import NetBuilder, assert_matches_reference, random_input

CFG = AccelConfig(rows=3, cols=5, instr_depth=1 << 14)


def check(build, shape=(7, 6, 5), cfg=CFG, n=3, seed=0, **bits):
    rng = np.random.default_rng(seed)
    b = NetBuilder(rng, shape, **bits)
    build(b)
    g = b.graph()
    return assert_matches_reference(g, cfg, random_input(rng, g, n))


def test_conv_3x3_padded():
    check(lambda b: b.conv(7, padding=(1, 1, 1, 1)))


def test_conv_stride_2_uneven_padding():
    check(lambda b: b.conv(4, kernel=(3, 2), stride=(2, 2), padding=(1, 0, 2, 1)))


def test_conv_dilated():
    check(lambda b: b.conv(6, kernel=(2, 3), dilation=(2, 2), padding=(2, 2, 2, 2)))


def test_conv_1x1_many_channels():
    check(lambda b: b.conv(11, kernel=(1, 1), relu=False), shape=(4, 3, 13))


def test_conv1d_and_pool1d_as_maps_of_height_1():
    check(lambda b: (b.conv(6, kernel=(1, 5), stride=(1, 3), padding=(0, 2, 0, 2)),
                     b.pool("max", kernel=(1, 4), stride=(1, 4))), shape=(1, 40, 3))


def test_max_pool_padded():
    check(lambda b: b.pool("max", kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1)))


def test_avg_pool():
    check(lambda b: b.pool("avg", kernel=(2, 3), stride=(1, 2)))


def test_global_avg_pool_then_dense():
    check(lambda b: (b.pool("avg", kernel=(7, 6), stride=(1, 1)), b.dense(4)))


def test_concat_read_whole_with_padding_and_part_by_part():
    """Each part's layer writes its channels of the concatenation; a padded conv reads the whole, another
    padded conv and a max pool read parts (views: one pixel is the whole's channels apart)."""
    def build(b):
        a = b.conv(3, padding=(1, 1, 1, 1))
        part = b.conv(4, kernel=(1, 1), src="x")
        b.conv(6, padding=(1, 1, 1, 1), src=b.concat(a, part))
        b.conv(2, padding=(1, 1, 1, 1), src=part)
        b.pool("max", src=a)
    check(build)


def test_dense_reads_a_part_of_a_concat():
    check(lambda b: (b.concat(b.conv(3, kernel=(1, 1)), b.conv(2, kernel=(1, 1), src="x")),
                     b.pool("avg", kernel=(2, 2)), b.dense(4, src="t1")), shape=(3, 2, 5))


@pytest.mark.parametrize("same_scale", [True, False])
def test_residual_add(same_scale):
    def build(b):
        x = b.conv(5, padding=(1, 1, 1, 1))
        y = b.conv(5, padding=(1, 1, 1, 1), relu=False)
        b.add(x, y, same_scale=same_scale)
    check(build)


def test_activation_tables():
    """A table after a conv (clamped, ReLU-style), an average pool, an add and a dense layer; one alone on the
    model input; 4-bit activations on 8-bit hardware (their table fills part of the hardware's)."""
    check(lambda b: (b.conv(7, padding=(1, 1, 1, 1)), b.activate(), b.pool("avg"), b.activate()))
    check(lambda b: (b.lookup("x"), b.add(b.conv(5, padding=(1, 1, 1, 1)), b.conv(5, padding=(1, 1, 1, 1), src="x")),
                     b.activate(), b.dense(4), b.activate()))
    check(lambda b: (b.conv(4, padding=(1, 1, 1, 1)), b.activate(), b.lookup()), act_bits=4, weight_bits=4)


def test_flattened_map_into_dense():
    check(lambda b: (b.conv(4, stride=(2, 2)), b.dense(6)))


def test_mixed_precision_on_8_bit_hardware():
    check(lambda b: (b.conv(4, padding=(1, 1, 1, 1)), b.pool("max")), act_bits=4, weight_bits=2,
          cfg=AccelConfig(rows=4, cols=4, instr_depth=1 << 14))


def test_small_buffers_split_batch_and_output_channels():
    cfg = AccelConfig(rows=2, cols=2, act_depth=64, acc_depth=32, out_depth=64, instr_depth=1 << 15)
    _, out = check(lambda b: b.conv(5, kernel=(2, 2)), shape=(5, 5, 3), cfg=cfg, n=5)
    assert out.runs == 1


def test_padding_conflict_is_refused():
    rng = np.random.default_rng(1)
    b = NetBuilder(rng, (6, 6, 2))
    x = b.conv(2, padding=(1, 1, 1, 1))
    b.conv(2, padding=(1, 1, 1, 1), src=x)
    b.pool("max", kernel=(3, 3), stride=(1, 1), padding=(1, 1, 1, 1), src=x)
    with pytest.raises(CompileError, match="need different padding values"):
        compile_graph(b.graph(), CFG, batch=1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hw=st.tuples(st.integers(1, 9), st.integers(1, 9)), cin=st.integers(1, 10), cout=st.integers(1, 10),
       kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       pad=st.tuples(*[st.integers(0, 2)] * 4), dilation=st.sampled_from([(1, 1), (2, 1), (1, 2)]),
       bits=st.sampled_from([(8, 8), (4, 4), (2, 2), (8, 2), (3, 6)]), array=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       seed=st.integers(0, 2**32 - 1))
def test_conv_shapes_and_bits(hw, cin, cout, kernel, stride, pad, dilation, bits, array, seed):
    (kh, kw), (dh, dw) = kernel, dilation
    eff_h, eff_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if hw[0] + pad[0] + pad[2] < eff_h or hw[1] + pad[1] + pad[3] < eff_w:
        return  # the window does not fit the padded map: torch refuses it too
    act_bits, weight_bits = bits
    cfg = AccelConfig(rows=array[0], cols=array[1], act_bits=8, weight_bits=8, instr_depth=1 << 16)
    check(lambda b: b.conv(cout, kernel, stride, pad, dilation), shape=hw + (cin,), cfg=cfg, n=2, seed=seed,
          act_bits=act_bits, weight_bits=weight_bits)
