"""Calibration observers: each does what its name says on synthetic data."""
import pytest
import torch

import emu.frontend  # noqa: F401  (imports torchao quietly)
from emu.frontend.observers import MSEObserver, PercentileObserver, PerChannelMSEObserver, MAX_SAMPLES
from emu.frontend.quantizer import act_range, weight_range
from torchao.quantization.pt2e import MinMaxObserver, PerChannelMinMaxObserver


def _act(cls, bits):
    lo, hi = act_range(bits)
    return cls(dtype=torch.int8, qscheme=torch.per_tensor_affine, quant_min=lo, quant_max=hi)


def _mse(x, scale, zero_point, bits):
    lo, hi = act_range(bits)
    return float((torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero_point), lo, hi) - x).square().mean())


def _laplace(n=20000, seed=0):
    """Laplace(0, 1) samples: a random sign times an exponential."""
    g = torch.Generator().manual_seed(seed)
    magnitude = torch.empty(n).exponential_(generator=g)
    return magnitude * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)


def test_percentile_clips_an_outlier():
    x = torch.rand(10000, generator=torch.Generator().manual_seed(0))
    x[123] = 100.0
    minmax, pct = _act(MinMaxObserver, 8), _act(PercentileObserver, 8)
    minmax(x), pct(x)
    s_minmax, _ = minmax.calculate_qparams()
    s_pct, zp = pct.calculate_qparams()
    assert float(s_minmax) == pytest.approx(100.0 / 255)
    assert float(s_pct) == pytest.approx(1.0 / 255, rel=0.01)   # the range is [0, ~1], not [0, 100]
    assert int(zp) == -128


@pytest.mark.parametrize("bits", [2, 4])
def test_mse_clips_heavy_tails_and_beats_minmax(bits):
    x = _laplace()
    minmax, mse = _act(MinMaxObserver, bits), _act(MSEObserver, bits)
    minmax(x), mse(x)
    s_minmax, z_minmax = minmax.calculate_qparams()
    s_mse, z_mse = mse.calculate_qparams()
    assert float(s_mse) < 0.6 * float(s_minmax)                    # clips well below the maximum
    assert _mse(x, s_mse, z_mse, bits) < 0.7 * _mse(x, s_minmax, z_minmax, bits)


def test_mse_keeps_full_range_of_uniform_data_at_8_bits():
    x = torch.rand(10000, generator=torch.Generator().manual_seed(0))
    mse = _act(MSEObserver, 8)
    mse(x)
    assert float(mse.calculate_qparams()[0]) > 0.95 / 255


def test_samples_bounded_and_batches_pooled():
    obs = _act(PercentileObserver, 8)
    for i in range(4):
        obs(torch.full((MAX_SAMPLES,), float(i)))
    assert obs._samples.numel() <= MAX_SAMPLES
    assert set(obs._samples.tolist()) == {0.0, 1.0, 2.0, 3.0}      # every batch still represented
    assert float(obs.min_val) == 0.0 and float(obs.max_val) == 3.0


def test_per_channel_mse_weights():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 64, generator=g)
    lo, hi = weight_range(2)
    kw = dict(ch_axis=0, dtype=torch.int8, qscheme=torch.per_channel_symmetric, quant_min=lo, quant_max=hi)
    minmax, mse = PerChannelMinMaxObserver(**kw), PerChannelMSEObserver(**kw)
    minmax(w), mse(w)
    (s_minmax, _), (s_mse, z_mse) = minmax.calculate_qparams(), mse.calculate_qparams()
    assert s_mse.shape == (8,) and int(z_mse.abs().max()) == 0
    assert (s_mse < 0.7 * s_minmax).all()                         # ternary: clip well inside max|w|

    def err(scale):
        return (torch.fake_quantize_per_channel_affine(w, scale, z_mse.int(), 0, lo, hi) - w).square().sum(1)
    assert (err(s_mse) <= err(s_minmax)).all()


def test_observers_refuse_other_schemes():
    with pytest.raises(ValueError, match="per tensor, affine"):
        MSEObserver(qscheme=torch.per_tensor_symmetric)
    with pytest.raises(ValueError, match="per channel, symmetric"):
        PerChannelMSEObserver(qscheme=torch.per_channel_affine)
