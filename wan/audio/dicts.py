"""ComfyUI's AUDIO type: ``{"waveform": float tensor [batch, channels, samples], "sample_rate": int}``."""

from __future__ import annotations

import torch

from ..errors import WanInputError


def to_audio_dict(waveform: torch.Tensor, sample_rate: int) -> dict:
    """AUDIO from a waveform [channels, samples] (one clip) or [batch, channels, samples]."""
    if waveform.ndim == 2:
        waveform = waveform.unsqueeze(0)
    return {"waveform": waveform, "sample_rate": int(sample_rate)}


def from_audio_dict(audio, name: str = "audio") -> tuple[torch.Tensor, int]:
    """(waveform [batch, channels, samples] float, sample rate) of an AUDIO value, checked."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise WanInputError(f"{name} must be ComfyUI's AUDIO (a dict with waveform and sample_rate), "
                            f"got {type(audio).__name__}")
    waveform, rate = audio["waveform"], audio["sample_rate"]
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3 or 0 in waveform.shape:
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise WanInputError(f"{name}: waveform must be a tensor [batch, channels, samples], got {shape}")
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise WanInputError(f"{name}: sample_rate must be a positive integer, got {rate!r}")
    if not waveform.is_floating_point():
        raise WanInputError(f"{name}: waveform must be float samples, got {waveform.dtype}")
    return waveform, rate


def mono(waveform: torch.Tensor) -> torch.Tensor:
    """The channel mean [batch, 1, samples]: how ComfyUI's audio encoders mix to one channel."""
    return waveform.mean(dim=1, keepdim=True)
