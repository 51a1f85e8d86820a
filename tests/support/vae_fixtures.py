"""Helpers for the VAE tests: seeded random weights and tiny configurations (no tests here)."""

from __future__ import annotations

import torch

from wan.models.vae.layers import VAEConfig

TINY21 = VAEConfig(dim=8, z_dim=16, num_res_blocks=1)
TINY22 = VAEConfig(dim=8, dec_dim=16, z_dim=48, num_res_blocks=1)


def random_weights(template: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random tensors with the template's names and shapes, scaled so activations stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(template):
        shape = template[name].shape
        t = torch.randn(shape, generator=g)
        if name.endswith("gamma"):
            t = 1.0 + 0.1 * t
        elif len(shape) > 1:
            t = t / (shape[1:].numel() ** 0.5)
        else:
            t = 0.1 * t
        out[name] = t
    return out


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max|ours - ref| / max|ref|."""
    return ((ours.float() - ref.float()).abs().max() / ref.float().abs().max()).item()
