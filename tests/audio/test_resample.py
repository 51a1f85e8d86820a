"""The windowed-sinc resampler against analytic signals and scipy's polyphase resampler."""

import math

import numpy as np
import pytest
import torch

from wan.audio import resample
from wan.errors import WanInputError

EDGE = 0.05  # seconds left out at each end: the filter reads zeros past the clip there


def _tones(rate: int, seconds: float = 1.0, tones=((440.0, 1.0, 0.0), (3000.0, 0.5, 0.3))) -> torch.Tensor:
    t = torch.arange(round(rate * seconds), dtype=torch.float64) / rate
    return sum(a * torch.sin(2 * math.pi * f * t + p) for f, a, p in tones)


@pytest.mark.parametrize("rate", [44100, 48000, 22050, 32000, 24000])
def test_sine_resampled_to_16k_is_the_sine_sampled_at_16k(rate):
    out = resample(_tones(rate)[None], rate, 16000)[0]
    assert out.shape[0] == math.ceil(16000 * round(rate * 1.0) / rate)
    expected = _tones(16000, out.shape[0] / 16000)
    cut = int(EDGE * 16000)
    # 0.99 of the lower Nyquist with 6 zero crossings: tones under 3 kHz pass within 1e-3
    assert (out - expected)[cut:-cut].abs().max() < 1e-3


def test_upsampling_a_tone_from_8k():
    tones = ((440.0, 1.0, 0.0), (1000.0, 0.3, 1.0))
    out = resample(_tones(8000, tones=tones)[None], 8000, 16000)[0]
    cut = int(EDGE * 16000)
    assert (out - _tones(16000, out.shape[0] / 16000, tones))[cut:-cut].abs().max() < 1e-3


def test_tone_above_the_new_nyquist_is_removed():
    out = resample(_tones(48000, tones=((11000.0, 1.0, 0.0),))[None], 48000, 16000)[0]
    cut = int(EDGE * 16000)
    # 11 kHz would alias to 5 kHz at full amplitude without the low-pass; the short Hann-windowed
    # sinc stops it by about 50 dB
    assert out[cut:-cut].abs().max() < 1e-2


def test_matches_scipy_polyphase_on_noise():
    signal = pytest.importorskip("scipy.signal")
    x = torch.randn(44100, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # band-limit first (both filters differ only near their cutoffs)
    lowpassed = torch.from_numpy(signal.sosfiltfilt(signal.butter(8, 5000, fs=44100, output="sos"), x.numpy()).copy())
    ours = resample(lowpassed[None], 44100, 16000)[0]
    ref = torch.from_numpy(signal.resample_poly(lowpassed.numpy(), 160, 441))[: ours.shape[0]]
    cut = int(EDGE * 16000)
    rms = ref[cut:-cut].pow(2).mean().sqrt()
    assert ((ours - ref)[cut:-cut].abs().max() / rms) < 1e-2


def test_shapes_dtype_and_identity():
    x = torch.randn(2, 3, 1000)
    assert resample(x, 16000, 16000) is x
    y = resample(x, 48000, 16000)
    assert y.shape == (2, 3, 334) and y.dtype == torch.float32
    # channels are resampled independently
    assert torch.allclose(y[1, 2], resample(x[1, 2], 48000, 16000), atol=1e-6)


@pytest.mark.parametrize("bad", [0, -16000, 16000.5, True])
def test_bad_rates_are_input_errors(bad):
    with pytest.raises(WanInputError, match="rate"):
        resample(torch.zeros(1, 10), bad, 16000)
