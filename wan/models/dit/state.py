"""What one denoising forward of the Wan DiT carries between ``embed`` and ``finish``, and its timestep
embedding."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """[N] timesteps (1000 scale) -> [N, dim] as cat(cos, sin), computed in float64 like the official code."""
    half = dim // 2
    t = t.to(torch.float64)
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = torch.outer(t, freqs)
    return torch.cat([angles.cos(), angles.sin()], dim=1).float()


@dataclass
class DiTState:
    """Everything the blocks need between ``embed`` and ``finish`` (one denoising forward).

    x: [B, L, C] residual stream (``WanDiT.residual_dtype``); e: [B, T, C] fp32 time embedding (head); e0: [B, T, 6, C]
    fp32 time projection (blocks); context: [B, Lc, C] compute dtype, CLIP tokens first;
    rope: rotary table; grid: token grid (f, h, w); size: unpadded latent (F, H, W).
    VACE only: x0 (embedded video), vace (one stream per VACE context), vace_strength.
    Animate only: face [B, f, 5, C] face tokens per latent frame (None: no face video).
    prefix: tokens in front of the video's (a Fun reference image), dropped by ``finish``.
    S2V only: audio (the injector's inputs); HuMo only: humo_audio [B, F * 16, 1536] audio tokens.
    suffix: tokens behind the video's (S2V reference and motion, HuMo reference), dropped by ``finish``.
    """

    x: torch.Tensor
    e: torch.Tensor
    e0: torch.Tensor
    context: torch.Tensor
    context_img_len: int
    rope: torch.Tensor
    grid: tuple[int, int, int]
    size: tuple[int, int, int]
    x0: torch.Tensor | None = None
    vace: list[torch.Tensor] | None = None
    vace_strength: tuple[float, ...] = ()
    face: torch.Tensor | None = None
    prefix: int = 0
    audio: tuple | None = None  # S2V: (audio tokens, global audio vectors, video tokens) for the injector
    humo_audio: torch.Tensor | None = None  # HuMo: every frame's audio tokens, for the blocks' audio attention
    suffix: int = 0  # tokens after the video's (S2V reference and motion, HuMo reference), dropped by ``finish``


__all__ = ["DiTState", "sinusoidal_embedding"]
