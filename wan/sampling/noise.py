"""Seeded noise that is the same on every device.

CUDA, MPS and CPU generators produce different streams for one seed, so a seed alone would not name
a video. All noise here is drawn by a CPU ``torch.Generator`` in float32 and only then moved and cast:
the same seed gives the same latent noise on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import WanInputError


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (any int; reduced to the 64-bit range torch accepts)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise WanInputError(f"seed must be an integer, got {seed!r}")
    return torch.Generator(device="cpu").manual_seed(seed % (1 << 64))


def randn_like_cpu(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise drawn on the CPU in float32 (from ``generator``, else torch's global CPU
    stream), then moved to ``device`` and cast to ``dtype``."""
    if generator is not None and generator.device.type != "cpu":
        raise WanInputError(
            f"noise generators must live on the CPU so seeds reproduce across devices, got one on "
            f"{generator.device}"
        )
    noise = torch.randn(tuple(shape), generator=generator, dtype=torch.float32, device="cpu")
    return noise.to(device=device, dtype=dtype)


def make_noise(
    shape: Sequence[int],
    seed: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Initial latent noise for ``seed``: shape ``shape`` (e.g. [B, C, F, H, W]) on ``device``."""
    return randn_like_cpu(shape, make_generator(seed), device, dtype)


def noise_latents(latents: torch.Tensor, noise: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """The flow-matching forward process x_s = (1 - s) * x0 + s * noise, used to start part-way
    (video-to-video, ``denoise`` < 1) from ``get_sigmas(...)[0]``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    out = (1.0 - sigma) * latents.float() + sigma * noise.to(latents.device).float()
    return out.to(latents.dtype)
