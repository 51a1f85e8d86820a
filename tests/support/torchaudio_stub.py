"""A stand-in ``torchaudio`` for importing ComfyUI's audio modules in-process (no tests here).

torchaudio cannot be installed beside our torch. ComfyUI's audio encoders call only
``torchaudio.functional.resample`` and ``torchaudio.transforms.MelSpectrogram``; this stub gives
them: the resample only for equal rates (parity tests feed 16 kHz, and raising otherwise keeps a
test from comparing against a made-up resampler), the mel spectrogram from torch.stft and
transformers' own ``mel_filter_bank`` (not our code), so whisper's reference input is independent.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types

import torch
from torch import nn


def _resample(waveform, orig_freq, new_freq, **_):
    if orig_freq != new_freq:
        raise NotImplementedError("the torchaudio stub resamples only between equal rates")
    return waveform


class _Spectrogram(nn.Module):
    def __init__(self, n_fft):
        super().__init__()
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)


class MelSpectrogram(nn.Module):
    """torchaudio's defaults that ComfyUI relies on: power 2, centred, reflect padding, periodic
    Hann window; Slaney filters (norm and scale) as its arguments ask."""

    def __init__(self, sample_rate, n_fft, hop_length, n_mels, f_min, f_max, norm, mel_scale):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        assert norm == "slaney" and mel_scale == "slaney"
        self.n_fft, self.hop = n_fft, hop_length
        self.spectrogram = _Spectrogram(n_fft)
        fb = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=float(f_min),
                             max_frequency=float(f_max), sampling_rate=sample_rate, norm=norm, mel_scale=mel_scale)
        self.register_buffer("fb", torch.from_numpy(fb).float(), persistent=False)

    def forward(self, audio):
        spec = torch.stft(audio, self.n_fft, self.hop, window=self.spectrogram.window, center=True,
                          pad_mode="reflect", return_complex=True).abs() ** 2
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


def install() -> types.ModuleType:
    """Put the stub in ``sys.modules`` (kept: ComfyUI's modules hold the reference once imported)."""
    if "torchaudio" in sys.modules:
        return sys.modules["torchaudio"]
    module = types.ModuleType("torchaudio")
    # importlib.util.find_spec (transformers' optional-package probe) needs a spec on a module
    # found in sys.modules; with no distribution metadata transformers still reports it absent
    module.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
    module.functional = types.SimpleNamespace(resample=_resample)
    module.transforms = types.SimpleNamespace(MelSpectrogram=MelSpectrogram)
    module.__wan_test_stub__ = True
    sys.modules["torchaudio"] = module
    return module
