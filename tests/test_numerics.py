import numpy as np
import pytest
from hypothesis import given, strategies as st

from emu.contract import numerics


@pytest.mark.parametrize("p, shift, want", [
    (5, 1, 3), (-5, 1, -2), (4, 1, 2), (-3, 1, -1), (6, 2, 2), (-6, 2, -1), (7, 0, 7), (-(1 << 40), 40, -1),
])
def test_round_shift_is_round_half_up(p, shift, want):
    assert numerics.round_shift(np.int64(p), shift) == want


@given(st.integers(-(1 << 62), (1 << 62) - 1), st.integers(0, 63))
def test_round_shift_matches_exact_rational_rounding(p, shift):
    # floor(p / 2**shift + 1/2), computed in Python's unbounded integers
    want = (2 * p + (1 << shift)) // (2 << shift) if shift else p
    assert int(numerics.round_shift(np.int64(p), shift)) == want


@pytest.mark.parametrize("bits", [2, 4, 8, 16, 32])
def test_wrap(bits):
    x = np.array([0, 1, -1, (1 << (bits - 1)), -(1 << (bits - 1)) - 1, 3 << bits])
    got = numerics.wrap(x, bits)
    assert np.all(got >= -(1 << (bits - 1))) and np.all(got < 1 << (bits - 1))
    assert np.all((got - x) % (1 << bits) == 0)


@given(st.lists(st.floats(1e-7, 10.0), min_size=1, max_size=16))
def test_requant_params_approximate_the_scales(scales):
    s = np.array(scales)
    mult, shift = numerics.requant_params(s)
    assert 0 <= shift <= numerics.SHIFT_MAX
    assert np.all(mult < 1 << numerics.MULT_BITS) and np.all(mult >= 0)
    assert mult.max() >= 1 << (numerics.MULT_BITS - 1) or shift == numerics.SHIFT_MAX
    np.testing.assert_allclose(mult / 2.0 ** shift, s, rtol=0, atol=2.0 ** -shift)


def test_post_bias_keeps_the_fraction():
    """A bias of 0.4 accumulator steps at multiplier 3 * 2**29 is 0.6 * 2**30 POST units: not rounded to 0."""
    assert numerics.post_bias(np.array([0.4, -2.0]), np.array([3 << 29, 1 << 30])).tolist() == \
        [round(0.4 * (3 << 29)), -(2 << 30)]


def test_requant_params_refuses_bad_scales():
    with pytest.raises(ValueError, match="positive and finite"):
        numerics.requant_params(np.array([1.0, 0.0]))


def test_requantize_clamps_and_adds_zero_point():
    y = numerics.requantize(np.array([[100, -100, 0]]), np.array([0, 0, 1 << 30]), np.array([1 << 30] * 3), 31,
                            zero_point=-5, clamp_lo=-8, clamp_hi=40)
    # multiplier 2**30 >> 31 halves: 50 - 5 = 45 -> 40; -50 - 5 -> -8; bias 2**30 / 2**31 = 0.5 rounds up: 1 - 5 = -4
    assert y.tolist() == [[40, -8, -4]]
