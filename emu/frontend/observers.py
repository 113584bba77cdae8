"""PT2E observers for Systola's calibration choices: min/max, percentile and MSE-optimal clipping.

Each is a torchao `UniformQuantizationObserverBase`, so it works as a `QuantizationSpec`'s
``observer_or_fake_quant_ctr`` (PTQ), as the observer inside `FakeQuantize` (QAT) and as the initialiser
of `LearnableFakeQuantize` (QAT with learned scales). All choose a clipping range ``[lo, hi]`` (always
containing 0) and hand it to the base class, which turns it into a scale and zero point exactly as torch's
`MinMaxObserver` does.

* ``"minmax"``: torch's own `MinMaxObserver` / `PerChannelMinMaxObserver`: the range is the observed
  minimum and maximum; nothing is clipped.
* ``"percentile"`` (activations): the range is the ``100 - p`` and ``p`` percentiles of every value seen
  (``p = PERCENTILE``), so a few outliers no longer stretch the scale.
* ``"mse"`` (activations and per-channel weights): the range is the observed one shrunk by the factor
  ``alpha`` in ``MSE_GRID`` that minimises the mean squared error between the values and their quantized
  (fake-quantized) version. This is the empirical form of ACIQ's analytical clipping (Banner, Nahshan &
  Soudry, 2019): at few bits the optimum clips well below the maximum of a heavy-tailed distribution.

Activation observers keep a deterministic subsample of what they saw (at most `MAX_SAMPLES` values: every
value until full, then every second, fourth, ... one) and decide the range in `calculate_qparams`. They
are meant for calibration: inside a QAT fake-quantizer calibrate first, then freeze them
(`disable_observer`) or hand over to learned scales. Weight observers look only at the latest weight.
"""
from __future__ import annotations

import abc

import torch
from torchao.quantization.pt2e.observer import UniformQuantizationObserverBase

__all__ = ["PercentileObserver", "MSEObserver", "PerChannelMSEObserver", "PERCENTILE", "MSE_GRID",
           "MAX_SAMPLES", "CALIBRATIONS"]

#: Calibration choices by name (see the module docstring).
CALIBRATIONS = ("minmax", "percentile", "mse")
#: Upper percentile kept by `PercentileObserver` (the lower one is ``100 - PERCENTILE``).
PERCENTILE = 99.99
#: Candidate shrink factors of the observed range for the MSE search, smallest first.
MSE_GRID = torch.linspace(0.01, 1.0, 100, dtype=torch.float64)
#: Most values an activation observer keeps.
MAX_SAMPLES = 1 << 16


class _SampleObserver(UniformQuantizationObserverBase):
    """Per-tensor affine observer that keeps a strided subsample of every tensor it sees."""

    def __init__(self, dtype=torch.int8, qscheme=torch.per_tensor_affine, quant_min=None, quant_max=None,
                 eps=torch.finfo(torch.float32).eps, is_dynamic=False, **kwargs):
        if qscheme != torch.per_tensor_affine:
            raise ValueError(f"qscheme={qscheme!r} is not accepted: {type(self).__name__} is per tensor, affine")
        super().__init__(dtype=dtype, qscheme=qscheme, quant_min=quant_min, quant_max=quant_max, eps=eps,
                         is_dynamic=is_dynamic, **kwargs)
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))
        self._samples = torch.empty(0)
        self._stride = 1

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        if x_orig.numel() == 0:
            return x_orig
        x = x_orig.detach().flatten().to(torch.float32)
        self.min_val.copy_(torch.minimum(self.min_val, x.min()))
        self.max_val.copy_(torch.maximum(self.max_val, x.max()))
        samples = torch.cat([self._samples, x[::self._stride]])
        while samples.numel() > MAX_SAMPLES:
            samples = samples[::2]
            self._stride *= 2
        self._samples = samples
        return x_orig

    @abc.abstractmethod
    def _clip(self, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo, hi) clipping range chosen from the retained samples."""

    @torch.jit.export
    def calculate_qparams(self):
        if self._samples.numel() == 0:
            return self._calculate_qparams(self.min_val, self.max_val)  # torch's warning and default (1, 0)
        lo, hi = self._clip(self._samples)
        return self._calculate_qparams(lo.to(torch.float32), hi.to(torch.float32))

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}, samples={self._samples.numel()}"


class PercentileObserver(_SampleObserver):
    """Clips to the ``[100 - PERCENTILE, PERCENTILE]`` percentiles of the observed values."""

    def __init__(self, *args, percentile: float = PERCENTILE, **kwargs):
        super().__init__(*args, **kwargs)
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile={percentile!r} is not accepted: expected a number in (50, 100]")
        self.percentile = float(percentile)

    def _clip(self, samples):
        q = torch.tensor([1.0 - self.percentile / 100.0, self.percentile / 100.0], dtype=torch.float64)
        lo, hi = torch.quantile(samples.to(torch.float64), q)
        return lo, hi


class MSEObserver(_SampleObserver):
    """Clips to ``alpha * [min, max]`` with the ``alpha`` in `MSE_GRID` of least quantization MSE."""

    def _clip(self, samples):
        lo, hi = self.min_val, self.max_val
        best, best_err = (lo, hi), None
        for alpha in MSE_GRID.tolist():
            c_lo, c_hi = lo * alpha, hi * alpha
            scale, zero_point = self._calculate_qparams(c_lo, c_hi)
            q = torch.fake_quantize_per_tensor_affine(samples, float(scale), int(zero_point),
                                                      self.quant_min, self.quant_max)
            err = float((q - samples).double().square().sum())
            if best_err is None or err < best_err:  # the smallest alpha wins ties
                best, best_err = (c_lo, c_hi), err
        return best


class PerChannelMSEObserver(UniformQuantizationObserverBase):
    """Symmetric per-channel weights clipped to ``alpha * max|w|``, ``alpha`` in `MSE_GRID` per channel.

    The name holds "PerChannel" so that torchao's prepare passes it ``ch_axis``. Only the latest tensor
    counts (weights are one tensor, not a distribution over batches).
    """

    def __init__(self, ch_axis=0, dtype=torch.int8, qscheme=torch.per_channel_symmetric, quant_min=None,
                 quant_max=None, eps=torch.finfo(torch.float32).eps, is_dynamic=False, **kwargs):
        if qscheme != torch.per_channel_symmetric:
            raise ValueError(f"qscheme={qscheme!r} is not accepted: PerChannelMSEObserver is per channel, "
                             "symmetric")
        super().__init__(dtype=dtype, qscheme=qscheme, quant_min=quant_min, quant_max=quant_max, eps=eps,
                         is_dynamic=is_dynamic, **kwargs)
        self.ch_axis = ch_axis
        self.register_buffer("min_val", torch.tensor([]))
        self.register_buffer("max_val", torch.tensor([]))

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        if x_orig.numel() == 0:
            return x_orig
        w = x_orig.detach().to(torch.float32).transpose(0, self.ch_axis).flatten(1)   # [C, K]
        amax = w.abs().amax(1)                                                          # [C]
        qmax = (self.quant_max - self.quant_min) / 2  # the base class's symmetric scale divisor
        clips = amax[None, :, None] * MSE_GRID.to(torch.float32)[:, None, None]         # [G, C, 1]
        scale = torch.clamp(clips / qmax, min=float(self.eps))
        q = torch.clamp(torch.round(w[None] / scale), self.quant_min, self.quant_max) * scale
        err = (q - w[None]).double().square().sum(2)                                    # [G, C]
        clip = clips[err.argmin(0), torch.arange(w.shape[0]), 0]  # argmin: the first (smallest) of ties
        self.min_val.resize_(clip.shape).copy_(-clip)
        self.max_val.resize_(clip.shape).copy_(clip)
        return x_orig

    @torch.jit.export
    def calculate_qparams(self):
        return self._calculate_qparams(self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"ch_axis={self.ch_axis}, max_val={self.max_val}"
