"""Whisper's log-mel input features in torch, as ComfyUI's ``WhisperFeatureExtractor`` computes them.

30 s windows at 16 kHz (cut or zero-padded), a 400-point periodic-Hann STFT every 160 samples
(centred, reflect-padded), the power spectrum through 128 Slaney-normalised triangular filters on
the Slaney mel scale from 0 to 8 kHz, the last frame dropped, log10 clamped at 1e-10, floored 8
below the maximum and scaled as (x + 4) / 4. Like ComfyUI (and unlike transformers' per-clip
extractor) the floor uses the maximum over the whole batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
CHUNK_SAMPLES = 30 * SAMPLE_RATE
F_MAX = 8000.0

# Slaney's mel scale: linear below 1 kHz, logarithmic above
_LINEAR_STEP = 200.0 / 3
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _LINEAR_STEP
_LOG_STEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    log_part = _BREAK_MEL + torch.log(hz.clamp(min=_BREAK_HZ) / _BREAK_HZ) / _LOG_STEP
    return torch.where(hz >= _BREAK_HZ, log_part, hz / _LINEAR_STEP)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    log_part = _BREAK_HZ * torch.exp(_LOG_STEP * (mel - _BREAK_MEL))
    return torch.where(mel >= _BREAK_MEL, log_part, mel * _LINEAR_STEP)


def mel_filters(n_mels: int, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE, f_max: float = F_MAX) -> torch.Tensor:
    """Triangular filters [n_fft // 2 + 1, n_mels], each scaled to unit area (Slaney)."""
    bins = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = _mel_to_hz(torch.linspace(0.0, float(_hz_to_mel(torch.tensor(f_max, dtype=torch.float64))),
                                      n_mels + 2, dtype=torch.float64))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    tri = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return tri * (2.0 / (upper - lower))


def log_mel(audio: torch.Tensor, n_mels: int = 128) -> torch.Tensor:
    """``audio`` [batch, channels, samples] at 16 kHz -> float32 features [batch, n_mels, 3000]."""
    audio = audio.float().mean(dim=1)
    if audio.shape[-1] >= CHUNK_SAMPLES:
        audio = audio[..., :CHUNK_SAMPLES]
    else:
        audio = F.pad(audio, (0, CHUNK_SAMPLES - audio.shape[-1]))
    window = torch.hann_window(N_FFT, periodic=True, device=audio.device)
    spec = torch.stft(audio, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spec.real ** 2 + spec.imag ** 2
    filters = mel_filters(n_mels).to(device=audio.device, dtype=torch.float32)
    mel = torch.einsum("fm,bft->bmt", filters, power)[..., :-1]
    logs = mel.clamp(min=1e-10).log10()
    logs = torch.maximum(logs, logs.max() - 8.0)
    return (logs + 4.0) / 4.0
