"""Phantom (subject to video): the subject images' latent frames joined after the video's along
the time axis before the patch embedding, as ComfyUI's WanModel takes ``time_dim_concat``. They get
their own rotary frame positions (after the video's) and attend with the video; the DiT's output
keeps the video's frames only (``WanDiT.finish`` cuts to the input size recorded before the join).

Phantom-Wan is a Wan2.1 T2V finetune with no weight of its own: any T2V-shaped DiT takes the
frames; a model with image conditioning channels (I2V) cannot (ComfyUI would fail the same way).
"""

from __future__ import annotations

import torch

from ...errors import WanInputError


def join_subject(x: torch.Tensor, subject: torch.Tensor, variant: str) -> torch.Tensor:
    """x [B, C, F, H, W] with the subject frames [1 or B, C, S, H, W] appended on dim 2."""
    if subject.ndim != 5 or subject.shape[0] not in (1, x.shape[0]):
        raise WanInputError(f"subject latent of shape {tuple(subject.shape)}: expected [B, C, S, H, W]")
    if subject.shape[1] != x.shape[1]:
        raise WanInputError(f"{variant}: subject frames (Phantom) need a text-to-video model taking "
                            f"{subject.shape[1]}-channel latents; this one takes {x.shape[1]} channels "
                            "(an image-to-video model?)")
    if subject.shape[3:] != x.shape[3:]:
        raise WanInputError(f"subject latent grid {tuple(subject.shape[3:])} differs from the latent's "
                            f"{tuple(x.shape[3:])}")
    subject = subject.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1, -1, -1, -1)
    return torch.cat([x, subject], dim=2)
